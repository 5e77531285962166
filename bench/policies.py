"""Backup policies at scale: one hourly policy assigned to N boot volumes (default 10,000). How
soon after its due time is every backup queued, on SQLite and on PostgreSQL, with two
`bootvault worker` processes (each runs the scheduler), the one queueing being SIGKILLed and
restarted in the middle of the burst, and does any backup go missing or come twice? `make bench` runs it.

    .venv/bin/python bench/policies.py [--volumes 10000] [--db sqlite,postgresql] [--lead 60]

The volumes are rows only (inserted through the store, no qcow2 file: "empty volumes"), and the
workers serve an availability domain no volume is in, so they run the scheduler but never the
backups: what is measured is the queueing (backup row, job row and due-time row committed),
which does not depend on a volume's size. Every queued backup is a real job any worker of the
volume's domain would run. PostgreSQL is the server at 127.0.0.1:5432 (database `test`, a
throwaway schema), skipped when unreachable. Results: bench/RESULTS-policies.md (a run with
--volumes other than 10000 writes bench/work/RESULTS-policies-<N>.md).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "src"))
sys.path.insert(0, str(BENCH.parent))
from bvproc import BIN  # noqa: E402
from bvsource import snapshot_source  # noqa: E402
from sqlalchemy import text  # noqa: E402

from bootvault.config import Settings  # noqa: E402
from bootvault.domain import ocid  # noqa: E402
from bootvault.domain.models import BackupType, BootVolume, VolumeState  # noqa: E402
from bootvault.domain.policies import Period, Schedule  # noqa: E402
from bootvault.service import policies  # noqa: E402
from bootvault.service.context import Caller, Context  # noqa: E402
from bootvault.store import identity, volumes  # noqa: E402
from bootvault.store.common import new_etag  # noqa: E402
from tests.dbs import pg_available, pg_schema_url  # noqa: E402

RETENTION = 86400
SCHEDULER_INTERVAL = 5.0  # the default of scheduler_interval_seconds


@contextlib.contextmanager
def database(kind: str, work: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{work / 'bv' / 'bootvault.db'}"
    else:
        with pg_schema_url() as url:
            yield url


def _env(work: Path, url: str, pythonpath: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (str(pythonpath), os.environ.get("PYTHONPATH")) if p),
        "BOOTVAULT_DATA_DIR": str(work / "bv"),
        "BOOTVAULT_DATABASE_URL": url,
        "BOOTVAULT_WORKER_AVAILABILITY_DOMAINS": '["bench:no-such-ad"]',  # schedule, never run backups
        "BOOTVAULT_SCHEDULER_INTERVAL_SECONDS": str(SCHEDULER_INTERVAL),
        "BOOTVAULT_GC_INTERVAL_SECONDS": "0",
        "BOOTVAULT_VERIFY_INTERVAL_SECONDS": "0",
        "BOOTVAULT_QUOTA_BACKUPS": "1000000",
        "BOOTVAULT_LEASE_SECONDS": "10",
    }


def setup(ctx: Context, n: int, due: datetime) -> tuple[str, float]:
    """A tenancy, n volume rows and an hourly policy due at `due`, assigned to every volume."""
    tenancy = ocid.mint("tenancy")
    caller = Caller(tenancy, ocid.mint("user"))
    started = time.perf_counter()
    ts = datetime.now(UTC)
    with ctx.db.write() as conn:
        identity.create_tenancy(conn, tenancy, "bench")
    ids = [ocid.mint("bootvolume", ctx.settings.region) for _ in range(n)]
    for chunk in range(0, n, 1000):
        with ctx.db.write() as conn:
            for vid in ids[chunk : chunk + 1000]:
                vol = BootVolume(
                    vid, tenancy, tenancy, "bench:AD-1", vid[-8:], VolumeState.AVAILABLE, 1, ts, new_etag()
                )
                volumes.insert_volume(conn, vol)
    offset = due.minute * 60 + due.second
    hourly = Schedule(BackupType.INCREMENTAL, Period.ONE_HOUR, RETENTION, offset_seconds=offset)
    policy = policies.create_policy(
        ctx, caller, policies.CreatePolicy(tenancy, "bench-hourly", [hourly]), None
    )
    for chunk in range(0, n, 1000):  # the API's create_assignment, 1000 per transaction
        with ctx.db.write() as conn:
            for vol in volumes.get_volumes(conn, ids[chunk : chunk + 1000]).values():
                policies.assign(ctx, conn, vol, policy)
    return tenancy, time.perf_counter() - started


class Workers:
    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env, self.logs = env, logs
        self.procs = [self._spawn(i) for i in range(2)]

    def _spawn(self, i: int) -> subprocess.Popen[bytes]:
        out = open(self.logs / f"worker{i}.log", "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen([str(BIN / "bootvault"), "worker"], env=self.env, stdout=out, stderr=out)

    def busiest(self) -> int:
        """The worker whose scheduler has queued the most batches so far (the active one)."""
        counts = [(self.logs / f"worker{i}.log").read_text().count("scheduler queued") for i in range(2)]
        return counts.index(max(counts))

    def restart(self, i: int) -> None:
        os.kill(self.procs[i].pid, signal.SIGKILL)
        self.procs[i].wait()
        time.sleep(1.0)
        self.procs[i] = self._spawn(i)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def _queued(ctx: Context) -> int:
    with ctx.db.read() as conn:
        return int(conn.execute(text("SELECT count(*) FROM scheduled_runs")).scalar() or 0)


def run_one(kind: str, n: int, lead: float, work: Path) -> dict[str, Any]:
    shutil.rmtree(work, ignore_errors=True)
    (work / "bv").mkdir(parents=True)
    (work / "logs").mkdir()
    snapshot_source(BENCH.parent / "src" / "bootvault", work / "bv-src")
    with database(kind, work) as url:
        env = _env(work, url, work / "bv-src")
        subprocess.run([str(BIN / "bootvault"), "migrate"], env=env, check=True, capture_output=True)
        ctx = Context.open(Settings(data_dir=work / "bv", database_url=url))
        due = (datetime.now(UTC) + timedelta(seconds=lead)).replace(microsecond=0)
        _, setup_s = setup(ctx, n, due)
        if datetime.now(UTC) > due - timedelta(seconds=10):
            raise SystemExit(f"setup took {setup_s:.0f} s, too close to the due time: raise --lead")
        workers = Workers(env, work / "logs")
        try:
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()))
            restarted = None
            deadline = time.monotonic() + 180
            while _queued(ctx) < n and time.monotonic() < deadline:
                done = _queued(ctx)
                if restarted is None and done > 0:  # the burst has begun: kill the scheduler at work
                    workers.restart(workers.busiest())
                    restarted = (done, datetime.now(UTC))
                time.sleep(0.2)
        finally:
            workers.stop()
        result = measure(ctx, n, due)
        result.update(db=kind, volumes=n, setup_s=setup_s, restart_after=restarted[0] if restarted else None)
        ctx.close()
    return result


def measure(ctx: Context, n: int, due: datetime) -> dict[str, Any]:
    with ctx.db.read() as conn:
        rows = list(conn.execute(text("SELECT time_queued, due_time, backup_id FROM scheduled_runs")))
        backups = conn.execute(
            text(
                "SELECT count(*), count(DISTINCT boot_volume_id) FROM boot_volume_backups "
                "WHERE source_type = 'SCHEDULED'"
            )
        ).one()
        jobs = int(conn.execute(text("SELECT count(*) FROM jobs WHERE kind = 'BACKUP'")).scalar() or 0)
    lags = sorted((_aware(r.time_queued) - due).total_seconds() for r in rows)
    return {
        "runs": len(rows),
        "backups": int(backups[0]),
        "distinct_volumes": int(backups[1]),
        "jobs": jobs,
        "lost": n - int(backups[1]),
        "doubled": int(backups[0]) - int(backups[1]),
        "first_s": lags[0] if lags else None,
        "p50_s": statistics.median(lags) if lags else None,
        "p99_s": lags[int(len(lags) * 0.99) - 1] if lags else None,
        "last_s": lags[-1] if lags else None,
    }


def _aware(ts: Any) -> datetime:
    if isinstance(ts, str):
        ts = datetime.fromisoformat(ts)
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def report(results: list[dict[str, Any]], out: Path) -> None:
    lines = [
        "# Backup policies at scale: one hourly policy on many volumes",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `.venv/bin/python bench/policies.py` "
        "(part of `make bench`).",
        f"Two `bootvault worker` processes run the scheduler (tick every {SCHEDULER_INTERVAL:g} s, the",
        "default); the one that is queueing is SIGKILLed as soon as the first backups are queued,",
        "and restarted a second later. Volumes are rows only and the workers never run the backups",
        "(see the script's docstring): the figures are for queueing a backup (its row, its job and",
        "its due-time row in one transaction). Seconds are after the due time. Load average at the",
        f"end: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (the 2-core machine is shared).",
        "",
        "| database | volumes | queued | lost | doubled | jobs | first s | median s | p99 s | last s "
        "| queued/s | killed after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['db']} | {r['volumes']} | {r['backups']} | {r['lost']} | {r['doubled']} | {r['jobs']} | "
            f"{r['first_s']:.1f} | {r['p50_s']:.1f} | {r['p99_s']:.1f} | {r['last_s']:.1f} | "
            f"{r['backups'] / max(r['last_s'] - r['first_s'], 0.001):.0f} | {r['restart_after']} queued |"
        )
    lines += [
        "",
        "The target: every due backup queued within 60 s of its due time, none lost or doubled",
        "across the restart. `first` includes up to one scheduler tick of waiting; `queued/s` is",
        "the backups over the time from the first to the last, the kill and the restart included.",
    ]
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--volumes", type=int, default=10000)
    p.add_argument("--db", default="sqlite,postgresql")
    p.add_argument("--lead", type=float, default=60.0, help="seconds from setup start to the due time")
    args = p.parse_args()
    results = []
    for kind in args.db.split(","):
        if kind == "postgresql" and not pg_available():
            print("PostgreSQL is not reachable at 127.0.0.1:5432: skipping it")
            continue
        results.append(run_one(kind, args.volumes, args.lead, BENCH / "work" / "policies" / kind))
    out = (
        BENCH / "RESULTS-policies.md"
        if args.volumes == 10000
        else BENCH / "work" / f"RESULTS-policies-{args.volumes}.md"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    report(results, out)
    return 0 if all(r["lost"] == 0 and r["doubled"] == 0 and r["last_s"] <= 60 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
