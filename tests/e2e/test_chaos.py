"""A short seeded chaos soak (bench/chaos.py's engine): a mixed workload through the oci SDK and
the admin CLI while API processes, workers and volume daemons are SIGKILLed at random instants,
then every invariant of bench/chaoscheck.py: nothing acknowledged lost or doubled, nothing
stuck, every backup restores to its volume's bytes at its timeCreated, no acknowledged write of
the attached volume lost, locked and held backups kept, GC and verify clean, no 5xx but 503.

The faults go on for SECONDS (BOOTVAULT_CHAOS_SECONDS, default 60) and then until MIN_FAULTS
were made: a fault comes every 1-4 s, so about a minute on a quiet machine, and longer on a
loaded one (3.4 s between faults in the loaded 20-minute runs of bench/RESULTS-chaos.md). It
was a fixed 90 s until the suite had to be quicker; the test still asks for at least 20 faults,
on every kind of target, and for every invariant."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow(5.5)

BENCH = Path(__file__).resolve().parents[2] / "bench"
SECONDS = float(os.environ.get("BOOTVAULT_CHAOS_SECONDS", "60"))
MIN_FAULTS = 24

CHECKED = [
    "api-5xx",
    "live-writes",
    "backup-bytes",
    "acknowledged-creates",
    "acknowledged-deletes",
    "scheduled-exactly-once",
    "gc-and-verify",
    "pool-files",
]


def _run(tmp_path: Path, seed: int, backend: str):  # type: ignore[no-untyped-def]
    if str(BENCH) not in sys.path:
        sys.path.append(str(BENCH))  # appended: bench's module names never shadow anything
    from chaos import Config, run

    return run(Config(seed=seed, seconds=SECONDS, backend=backend, root=tmp_path, min_faults=MIN_FAULTS))


def _assert_held(report) -> None:  # type: ignore[no-untyped-def]
    assert len(report.faults) >= 20, report.faults
    assert {"api", "worker", "qsd"} <= set(report.faults_by_target), report.faults_by_target
    for name in CHECKED:
        assert report.invariants.get(name, 0) > 0, (name, report.invariants)
    assert report.settle_after_last >= 0
    assert report.violations == [], "\n".join(report.violations)


@pytest.mark.timeout(900)
def test_chaos_sqlite(tmp_path: Path) -> None:
    _assert_held(_run(tmp_path, seed=18, backend="sqlite"))


@pytest.mark.timeout(900)
def test_chaos_pg_s3(tmp_path: Path) -> None:
    """Two API processes and two workers on PostgreSQL and SeaweedFS, with S3 and PostgreSQL
    backends killed too. Opt-in (BOOTVAULT_CHAOS_PG=1): the suite's time on 2 cores does not
    allow a second soak; `make chaos BACKEND=pg` runs it at any length."""
    if os.environ.get("BOOTVAULT_CHAOS_PG") != "1":
        pytest.skip("the PostgreSQL + S3 soak is opt-in: BOOTVAULT_CHAOS_PG=1 (or make chaos BACKEND=pg)")
    from tests.dbs import require_pg
    from tests.s3server import require_weed

    require_pg()
    require_weed()
    _assert_held(_run(tmp_path, seed=18, backend="pg"))
