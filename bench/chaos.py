"""Chaos soak: SIGKILL bootvault's parts at random instants under a mixed workload, then check
that nothing acknowledged was lost and nothing is stuck.

    .venv/bin/python bench/chaos.py --seed 7 --minutes 20 --backend sqlite   # or pg
    make chaos SEED=7 MINUTES=20 BACKEND=pg

A run (`run(Config)`) starts the deployment (bench/chaosrig.py), a tenancy, volumes and a
short-period policy, then for the given time runs workload threads (bench/chaosload.py) and one
chaos thread that, every FAULT_EVERY seconds (from the seed), kills one part: an API process, a
worker, a volume's qemu-storage-daemon, a hydration's nbdkit, and on `pg` the S3 server or every
PostgreSQL backend of the run. Killed processes are restarted by the rig's supervisor. After the
last fault every invariant is checked (`check_all`); the JSON report goes to
bench/work/chaos-<backend>-<seed>.json, and `--results` renders bench/RESULTS-chaos.md from the
reports given.

Settling is measured per fault: the resources and jobs in a transitional state at the fault's
instant, and the time until none of them is any longer (p50, p99 over faults), plus the time
from the run's last fault until everything has settled.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:  # appended: bench's module names never shadow anything
    sys.path.append(str(BENCH))

import oci  # noqa: E402
from chaosapi import Api, Ledger  # noqa: E402
from chaosload import DATA, OPS, SLOTS, LiveWriter, Vol, Workload  # noqa: E402
from chaosrig import Rig  # noqa: E402
from oci.core.models import (  # noqa: E402
    CreateVolumeBackupPolicyAssignmentDetails,
    CreateVolumeBackupPolicyDetails,
    VolumeBackupSchedule,
)
from sqlalchemy import create_engine, text  # noqa: E402

from tests.nbdwriter import BLOCK  # noqa: E402

FAULT_EVERY = (1.0, 4.0)  # seconds between faults
SETTLE_TIMEOUT = 420.0
TRANSITIONAL = """
SELECT id FROM boot_volume_backups WHERE lifecycle_state IN ('REQUEST_RECEIVED','CREATING','TERMINATING')
UNION ALL SELECT id FROM boot_volumes WHERE lifecycle_state IN ('RESTORING','PROVISIONING','TERMINATING')
   OR (lifecycle_state = 'AVAILABLE' AND NOT is_hydrated)
UNION ALL SELECT id FROM jobs WHERE state IN ('QUEUED','RUNNING')
"""


@dataclass
class Config:
    seed: int
    seconds: float
    backend: str = "sqlite"
    root: Path | None = None
    threads: int = 2
    min_faults: int = 0  # the faults go on past `seconds` until this many were made (FaultWindow)


@dataclass
class Report:
    seed: int
    backend: str
    seconds: float
    faults: list[tuple[float, str, str]] = field(default_factory=list)  # (t, target, what)
    settle_after_fault: list[float] = field(default_factory=list)
    settle_after_last: float = -1.0
    invariants: dict[str, int] = field(default_factory=dict)  # name -> things checked
    violations: list[str] = field(default_factory=list)
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def faults_by_target(self) -> dict[str, int]:
        return dict(Counter(t for _, t, _ in self.faults))


class Db:
    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, pool_pre_ping=True)

    def rows(self, query: str) -> list[Any]:
        for attempt in range(30):  # the chaos thread terminates PostgreSQL backends
            try:
                with self.engine.connect() as conn:
                    return list(conn.execute(text(query)))
            except Exception:
                if attempt == 29:
                    raise
                time.sleep(0.5)
        return []

    def transitional(self) -> set[str]:
        return {r[0] for r in self.rows(TRANSITIONAL)}


class SettleMonitor(threading.Thread):
    """For each fault, the time until what was transitional at its instant has settled."""

    def __init__(self, db: Db, report: Report) -> None:
        super().__init__(daemon=True, name="settle-monitor")
        self.db, self.report = db, report
        self.pending: list[tuple[float, set[str]]] = []
        self.lock, self.stop_event = threading.Lock(), threading.Event()

    def fault(self, at: float) -> None:
        ids = self.db.transitional()
        with self.lock:
            self.pending.append((at, ids))

    def run(self) -> None:
        while not self.stop_event.is_set() or self.pending:
            time.sleep(0.5)
            with self.lock:
                if not self.pending:
                    continue
            now_ids = self.db.transitional()
            now = time.monotonic()
            with self.lock:
                still = []
                for at, ids in self.pending:
                    if ids & now_ids:
                        still.append((at, ids))
                    else:
                        self.report.settle_after_fault.append(now - at)
                self.pending = still
            if self.stop_event.is_set() and now - max((a for a, _ in still), default=now) > SETTLE_TIMEOUT:
                return


class FaultWindow:
    """The time in which the workload runs and the chaos thread kills: cfg.seconds, and after
    that until cfg.min_faults faults were made, so a short run on a slow machine still has its
    count (but never more than three times cfg.seconds)."""

    def __init__(self, cfg: Config, report: Report) -> None:
        self.start, self.cfg, self.report = time.monotonic(), cfg, report

    def is_open(self) -> bool:
        elapsed = time.monotonic() - self.start
        if elapsed < self.cfg.seconds:
            return True
        return len(self.report.faults) < self.cfg.min_faults and elapsed < 3 * self.cfg.seconds


def say(what: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {what}", file=sys.stderr, flush=True)


def setup(rig: Rig, rng: random.Random, root: Path) -> Workload:
    config_path = root / "oci" / "config"
    out = rig.cli("tenancy", "create", "--name", "chaos", "--oci-config", str(config_path)).stdout
    tenancy = out.strip().splitlines()[-1]
    api = Api(oci.config.from_file(str(config_path)), rig.endpoints, random.Random(rng.random()))
    w = Workload(rig, api, Ledger(), tenancy)
    for i in range(4):
        base = bytearray(DATA)
        for off in range(0, DATA, 256 << 10):
            if rng.random() < 0.6:
                base[off : off + (256 << 10)] = rng.randbytes(256 << 10)
        live = i == 0
        image = root / f"vol{i}.img"
        image.write_bytes(bytes(base) + (bytes(SLOTS * BLOCK) if live else b""))
        volume_id = w.import_volume(image, "live" if live else f"vol{i}")
        size = api.call("get_boot_volume", volume_id).data.size_in_gbs
        w.vols[volume_id] = Vol(volume_id, bytes(base), size, live=live)
    due = datetime.now(UTC) + timedelta(seconds=8)
    schedule = VolumeBackupSchedule(
        backup_type="INCREMENTAL", period="ONE_HOUR", offset_type="NUMERIC_SECONDS",
        offset_seconds=due.minute * 60 + due.second, retention_seconds=20,
    )  # fmt: skip
    policy = api.call(
        "create_volume_backup_policy",
        CreateVolumeBackupPolicyDetails(compartment_id=tenancy, display_name="chaos", schedules=[schedule]),
        retry_token=True,
    ).data
    w.policy_id = policy.id
    for volume_id in list(w.vols)[:2]:  # the live volume and one written by the workload
        assignment = CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume_id, policy_id=policy.id)
        api.call("create_volume_backup_policy_assignment", assignment)
    live_id = next(v.id for v in w.vols.values() if v.live)
    w.writer = LiveWriter(w.attach(live_id))
    w.writer.start()
    return w


def workload_thread(w: Workload, rng: random.Random, window: FaultWindow, errors: Counter[str]) -> None:
    names, weights = zip(*OPS, strict=True)
    while window.is_open():
        op = rng.choices(names, weights)[0]
        started = time.monotonic()
        try:
            getattr(w, f"op_{op}")(rng)
            w.ledger.count(op)
            w.ledger.ops[f"{op} seconds"] += round(time.monotonic() - started)
            say(f"op {op} {time.monotonic() - started:.1f} s")
        except Exception as exc:  # an op that a fault made impossible: counted, not a violation
            errors[f"{op}: {type(exc).__name__}"] += 1
            w.ledger.count(f"{op} (failed)")
            if isinstance(exc, (AssertionError, KeyError, TypeError, AttributeError)):
                w.problem(f"{op}: {type(exc).__name__}: {exc}")


def chaos_thread(
    rig: Rig, rng: random.Random, window: FaultWindow, report: Report, monitor: SettleMonitor
) -> None:
    """Faults while the window is open; the supervisor's restarts until the rig stops."""
    start = time.monotonic()
    next_fault = start + rng.uniform(*FAULT_EVERY)
    while not rig.stopping:
        rig.supervise()
        if next_fault <= time.monotonic() and window.is_open():
            target = rng.choice(rig.targets())
            what = rig.kill(target, rng)
            if what is None:  # nothing of that kind running now (no hydration, say): another part
                target = rng.choice(rig.targets())
                what = rig.kill(target, rng)
            if what:
                now = time.monotonic()
                report.faults.append((round(now - start, 2), target, what))
                say(f"fault {len(report.faults)}: killed {what}")
                monitor.fault(now)
            next_fault = time.monotonic() + rng.uniform(*FAULT_EVERY)
        time.sleep(0.1)


def run(cfg: Config) -> Report:
    rng = random.Random(cfg.seed)
    report = Report(cfg.seed, cfg.backend, cfg.seconds)
    root = cfg.root or Path(tempfile.mkdtemp(prefix=f"chaos-{cfg.backend}-"))
    root.mkdir(parents=True, exist_ok=True)
    rig = Rig(root, cfg.backend)
    try:
        rig.start()
        w = setup(rig, rng, root)
        db = Db(rig.db_url())
        monitor = SettleMonitor(db, report)
        monitor.start()
        window = FaultWindow(cfg, report)
        errors: Counter[str] = Counter()
        threads = [
            threading.Thread(target=workload_thread, args=(w, random.Random(rng.random()), window, errors))
            for _ in range(cfg.threads)
        ]
        chaos = threading.Thread(target=chaos_thread, args=(rig, rng, window, report, monitor), daemon=True)
        for t in [*threads, chaos]:
            t.start()
        while window.is_open():
            time.sleep(0.2)
        last_fault = time.monotonic()
        report.counts["fault_window_seconds"] = round(last_fault - window.start, 1)
        say("faults stopped; waiting for the workload's last operations")
        for t in threads:
            t.join()
        while not rig.all_up():
            time.sleep(0.2)
        from chaoscheck import check_all

        report.settle_after_last = wait_settled(db, last_fault, report)
        say(f"settled {report.settle_after_last} s after the last fault; checking invariants")
        monitor.stop_event.set()
        check_all(w, db, report)
        monitor.join(timeout=5)
        report.counts["op_errors"] = dict(errors)
        report.counts["ops"] = dict(w.ledger.ops)
        report.counts["statuses"] = dict(w.api.statuses)
        report.counts["unanswered_attempts"] = w.api.unanswered
    finally:
        rig.stop()
    return report


def wait_settled(db: Db, since: float, report: Report) -> float:
    """Seconds from `since` until nothing is transitional; a violation past SETTLE_TIMEOUT."""
    deadline = since + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        stuck = db.transitional()
        if not stuck:
            return round(time.monotonic() - since, 2)
        time.sleep(0.5)
    report.violations.append(f"stuck {SETTLE_TIMEOUT:.0f} s after the last fault: {sorted(stuck)[:10]}")
    return -1.0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def save(report: Report, path: Path) -> None:
    data = asdict(report)
    data["faults_by_target"] = report.faults_by_target
    data["settle_p50"] = percentile(report.settle_after_fault, 50)
    data["settle_p99"] = percentile(report.settle_after_fault, 99)
    data["settle_mean"] = statistics.fmean(report.settle_after_fault) if report.settle_after_fault else None
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=str))


def main() -> int:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: where is it waiting?
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--backend", choices=["sqlite", "pg"], default="sqlite")
    ap.add_argument("--root", type=Path, help="where the deployment lives (default: a new temporary dir)")
    ap.add_argument(
        "--results", nargs="*", type=Path, help="render bench/RESULTS-chaos.md from these reports"
    )
    args = ap.parse_args()
    if args.results:
        from chaosreport import render

        (BENCH / "RESULTS-chaos.md").write_text(render(args.results))
        return 0
    report = run(Config(args.seed, args.minutes * 60, args.backend, args.root))
    out = BENCH / "work" / f"chaos-{args.backend}-{args.seed}.json"
    save(report, out)
    print(
        f"{len(report.faults)} faults {report.faults_by_target}; settled {report.settle_after_last} s"
        f" after the last; {len(report.violations)} violations; report {out}"
    )
    for v in report.violations:
        print("VIOLATION", v)
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
