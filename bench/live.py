"""Live volumes: backups of an attached volume that a machine keeps writing. `make bench` runs it
after bench/run.py and writes bench/RESULTS-live.md.

A 64 GiB volume holding 2 GiB of the standard workload's data (bench/workload.py live_image:
its /usr and random bytes in runs of 1-32 MiB, each at a Random(64) 32 MiB slot, the rest holes)
is imported and attached. Then:

1. FULL backup.
2. (a) 20 MiB written through the attach URI as scattered 4 KiB writes (Random(7), distinct
   4 KiB blocks anywhere in the volume); INCREMENTAL.
3. (b) 20 MiB written as 256 KiB runs at random 4 KiB-aligned offsets (Random(11)); INCREMENTAL.
4. Correctness: detach; export the volume (raw); restore the (b) backup into a new volume and
   export it (raw); the two exports must have the same sha256.
5. Copy-before-write cost: attach again; a writer process does 4 KiB random writes into the
   data at queue depth 1, first with nothing else running, then during a FULL backup.
6. The standard 2 GiB workload's incr-B against restic and borg, from bench/run.py's last run
   (bench/work/last-run.json), when that run was a standard one.
7. What a user sees: steps 1-3 again on a fresh import of the same image, through `bootvault
   serve` alone as `make run` starts it (its in-process worker, every setting at its default),
   beside the figures of the separate worker above.

Wall times run from the CreateBootVolumeBackup call to the first GET that shows AVAILABLE
(polled every --poll-ms, 50 ms by default); bytes read are the worker's (its log line
"backup <id> read <N> bytes", field bytes_read); dirty bytes are counted from the writes at the
bitmap's 64 KiB granularity.

    .venv/bin/python bench/live.py              # the standard run (about 3 minutes)
    .venv/bin/python bench/live.py --quick      # 8 GiB volume, 256 MiB data, 4 MiB changes
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import results
import workload
from bvrig import BootvaultRig, source_origin
from measure import BenchError, Sample, fmt_mib, machine_busy_cpu, proc_cpu, wait_quiet
from nbdwrite import apply_writes, connect

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
MIB = workload.MIB
GRANULARITY = 64 << 10  # the dirty bitmaps' granularity: the engine's default block size
READ_LIMIT = 2.0  # an incremental reads at most 2x the dirty bytes
WALL_LIMIT_S = 1.0  # and takes at most 1 s
STANDARD_LIMIT = 0.1  # the standard incr-B takes at most 0.1x the best of restic and borg
STANDARD = {"volume_gib": 64, "data_mib": 2048, "change_mib": 20, "run_kib": 256}
QUICK = {"volume_gib": 8, "data_mib": 256, "change_mib": 4, "run_kib": 256}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="small sizes for development (8 GiB / 256 MiB / 4 MiB)"
    )
    p.add_argument("--volume-gib", type=int, help="volume size (default 64)")
    p.add_argument("--data-mib", type=int, help="data in the volume (default 2048)")
    p.add_argument("--change-mib", type=int, help="bytes changed before each incremental (default 20)")
    p.add_argument("--run-kib", type=int, help="length of the clustered writes (default 256)")
    p.add_argument("--writer-seconds", type=float, default=3.0, help="idle writer phase (default 3)")
    p.add_argument("--poll-ms", type=float, default=50, help="GET poll interval, at most 100 (default 50)")
    p.add_argument("--quiet-wait", type=float, default=15, help="max seconds to wait for a quiet machine")
    p.add_argument("--note", default="", help="a paragraph put at the top of the results file")
    p.add_argument("--out", type=Path, help="results file (default bench/RESULTS-live.md for a standard run)")
    p.add_argument("--keep", action="store_true", help="keep bench/work/live (volumes, store, logs)")
    args = p.parse_args()
    base = QUICK if args.quick else STANDARD
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not 0 < args.poll_ms <= 100:
        p.error("--poll-ms must be in (0, 100]")
    args.standard = {k: getattr(args, k) for k in STANDARD} == STANDARD
    return args


@dataclass
class Step:
    """One measured backup and what preceded it."""

    name: str
    what: str
    sample: Sample
    raw_written: int = 0
    dirty: int = 0
    write_s: float = 0.0
    job_s: float | None = None  # worker: claim -> finish (its log)
    pickup_s: float | None = None  # Create call -> worker claim
    busy: bool = False  # started while the machine was still busy with other work
    other_cpu: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes_read(self) -> int | None:
        v = self.sample.extra.get("bytes_read")
        return None if v is None else int(v)


@dataclass
class WriterRun:
    phase: str
    window_s: float
    latencies_ns: list[int]
    qsd_cpu_s: float
    backup: Step | None = None

    @property
    def iops(self) -> float:
        return len(self.latencies_ns) / self.window_s if self.window_s else 0.0

    def pct_us(self, q: float) -> float:
        lat = sorted(self.latencies_ns)
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(q * len(lat)))] / 1000


def _log_time(line: dict[str, Any]) -> float:
    return datetime.fromisoformat(line["time"]).timestamp()


def job_times(rig: BootvaultRig, backup_id: str) -> tuple[float, float] | None:
    """(claimed, finished) wall-clock times of the backup's job, from the worker's log."""
    claimed = job = None
    for raw in rig.worker_log.read_text(errors="replace").splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        msg = str(line.get("message", ""))
        if line.get("resource") == backup_id and msg.startswith("claimed job"):
            claimed, job = _log_time(line), line.get("job")
        elif job is not None and msg == f"job {job} finished" and claimed is not None:
            return claimed, _log_time(line)
    return None


class Live:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = BENCH / "work" / "live"
        self.size = args.volume_gib << 30
        self.change = args.change_mib * MIB
        self.facts: dict[str, str] = {}
        self.steps: list[Step] = []
        self.writers: list[WriterRun] = []
        self.verify: dict[str, Any] = {}
        self.probe: dict[str, float] = {}
        self.noisy: list[str] = []
        self.waited = 0.0
        self.rig: BootvaultRig | None = None
        self.uri = ""
        self.layout: list[tuple[int, str, int]] = []
        self.correct: bool | None = None  # the restore equals the detached volume
        self.serve_steps: list[Step] = []  # steps 1-3 through `serve` with its in-process worker

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    # -- setup -------------------------------------------------------------------------------
    def prepare(self) -> None:
        a = self.args
        start = time.perf_counter()
        image, meta = workload.live_image(BENCH / "work" / "cache", a.volume_gib, a.data_mib)
        took = time.perf_counter() - start
        self.log(f"volume image {image.name} ({'cached' if meta['cached'] else f'built in {took:.1f} s'})")
        self.layout = workload.live_layout(a.volume_gib, a.data_mib)
        self.facts["volume image"] = (
            f"{a.volume_gib} GiB raw, sparse, {a.data_mib} MiB of data in {len(self.layout)} runs of "
            f"1-32 MiB (MiB by kind {meta['mib']}: /usr bytes and Random(4242) bytes as in the standard "
            f"workload), each at the start of a 32 MiB slot picked by Random(64); allocated "
            f"{fmt_mib(int(str(meta['allocated'])))} MiB"
        )
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        rig = BootvaultRig(
            self.work, ROOT / "src" / "bootvault", 0.05, block_size=None, poll_s=a.poll_ms / 1000
        )
        self.rig = rig
        self.facts["bootvault code"] = f"src/bootvault ({source_origin()}), digest {rig.source_digest}"
        rig.start()
        _, took = rig.import_volume(image)
        self.facts["import"] = f"{took:.2f} s (`bootvault volume import`, raw to qcow2; not measured further)"
        self.uri = rig.attach()
        self.facts["attach"] = f"`bootvault volume attach` -> `{self.uri.split('?')[0]}?socket=…`"

    def data_ranges(self) -> list[tuple[int, int]]:
        return [(off, off + n * MIB) for off, _, n in self.layout]

    # -- measured backups --------------------------------------------------------------------
    def quiet(self, what: str) -> bool:
        if self.args.quiet_wait <= 0:
            return False
        waited, quiet = wait_quiet(self.args.quiet_wait)
        self.waited += waited
        if not quiet:
            self.noisy.append(what)
            self.log(f"machine still busy after {waited:.0f} s; measuring {what} anyway")
        return not quiet

    def backup(self, name: str, kind: str, what: str, wait: bool = True) -> Step:
        assert self.rig is not None
        busy = self.quiet(name) if wait else False
        cpu0 = machine_busy_cpu()
        sample = self.rig.backup(name, kind)
        step = Step(name, what, sample, busy=busy)
        step.other_cpu = max(0.0, machine_busy_cpu() - cpu0 - sample.cpu)
        self.log(
            f"{name:18} wall {sample.wall:6.3f} s  read {fmt_mib(step.bytes_read)} MiB  "
            f"cpu {sample.cpu:.2f} s  stored {fmt_mib(sample.stored)} MiB"
        )
        return step

    def incremental(self, name: str, what: str, writes: list[workload.Write]) -> Step:
        start = time.perf_counter()
        written = apply_writes(self.uri, writes)
        write_s = time.perf_counter() - start
        step = self.backup(name, "INCREMENTAL", what)
        step.raw_written, step.dirty, step.write_s = (
            written,
            workload.dirty_bytes(writes, GRANULARITY),
            write_s,
        )
        units = sorted(
            {u for off, d in writes for u in range(off // GRANULARITY, (off + len(d) - 1) // GRANULARITY + 1)}
        )
        step.extra["units"] = units
        step.extra["floor_s"] = self.read_floor(units)
        return step

    def read_floor(self, units: list[int]) -> float:
        """Seconds to pread just these 64 KiB units through the attach URI on one connection
        (merged, in order): the NBD part of what an incremental must read."""
        h = connect(self.uri)
        try:
            start = time.perf_counter()
            for a, b in merge_units(units):
                for pos in range(a * GRANULARITY, b * GRANULARITY, 4 * MIB):
                    h.pread(min(4 * MIB, b * GRANULARITY - pos), pos)
            return time.perf_counter() - start
        finally:
            h.shutdown()

    def probe_sequential(self) -> None:
        """NBD read throughput of the attached export: 4 MiB preads over the data, 1 connection."""
        h = connect(self.uri)
        total, start = 0, time.perf_counter()
        try:
            for a, b in self.data_ranges():
                for pos in range(a, b, 4 * MIB):
                    total += len(h.pread(min(4 * MIB, b - pos), pos))
                if total >= 1 << 30:
                    break
        finally:
            h.shutdown()
        took = time.perf_counter() - start
        self.probe["seq_bytes"], self.probe["seq_s"] = total, took
        self.log(f"NBD probe: {fmt_mib(total)} MiB in {took:.2f} s ({total / 1e6 / took:,.0f} MB/s)")

    # -- correctness -------------------------------------------------------------------------
    def check_restore(self) -> None:
        assert self.rig is not None
        rig = self.rig
        rig.detach()
        vol_raw, restored_raw = self.work / "volume.raw", self.work / "restored.raw"
        exp = rig.export(rig.volume_id, vol_raw, "export-detached")
        sample, _ = rig.restore("restore-b", "incr-b", restored_raw)
        start = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:  # hashlib releases the GIL: one core each
            a, b = pool.map(workload.sparse_sha256, [vol_raw, restored_raw])
        self.verify = {
            "volume_export_s": exp.wall,
            "restore_s": float(sample.extra["restore_wall_s"]),
            "restore_export_s": float(sample.extra["export_wall_s"]),
            "sha_volume": a,
            "sha_restored": b,
            "hash_s": time.perf_counter() - start,
            "alloc_volume": workload.allocated(vol_raw),
            "alloc_restored": workload.allocated(restored_raw),
        }
        self.correct = a == b
        self.log(
            f"restore of incr-b {'equals' if a == b else 'DIFFERS FROM'} the detached volume ({a[:16]}…)"
        )
        vol_raw.unlink()
        restored_raw.unlink()
        self.uri = rig.attach()

    # -- copy-before-write -------------------------------------------------------------------
    def writer(self, phase: str, during_backup: bool) -> WriterRun:
        assert self.rig is not None
        stop, out = self.work / f"writer-{phase}.stop", self.work / f"writer-{phase}.txt"
        stop.unlink(missing_ok=True)
        ranges = ",".join(f"{a}:{b}" for a, b in self.data_ranges())
        cmd = [sys.executable, str(BENCH / "nbdwrite.py"), self.uri, "--ranges", ranges]
        cmd += ["--seed", str(99 if during_backup else 98), "--stop", str(stop), "--out", str(out)]
        if not during_backup:
            self.quiet(f"writer {phase}")
        qsd = self.rig.qsd_pid()
        proc = subprocess.Popen(cmd)
        step = None
        try:
            time.sleep(0.5)  # connected and writing
            qsd0, t0 = proc_cpu(qsd) if qsd else 0.0, time.monotonic_ns()
            if during_backup:
                step = self.backup("full-under-writes", "FULL", "a writer doing QD1 4 KiB writes", wait=False)
            else:
                time.sleep(self.args.writer_seconds)
            t1, qsd1 = time.monotonic_ns(), proc_cpu(qsd) if qsd else 0.0
            stop.touch()
            if proc.wait(timeout=60) != 0:
                raise BenchError(f"the writer exited {proc.returncode}")
        finally:
            if proc.poll() is None:
                proc.kill()
        lat = []
        for line in out.read_text().splitlines():
            s, ns = line.split()
            if t0 <= int(s) <= t1:
                lat.append(int(ns))
        run = WriterRun(phase, (t1 - t0) / 1e9, lat, qsd1 - qsd0, step)
        self.log(
            f"writer {phase:15} {run.iops:8,.0f} writes/s  p50 {run.pct_us(0.5):7.0f} us  "
            f"p99 {run.pct_us(0.99):7.0f} us  ({len(lat)} writes in {run.window_s:.2f} s)"
        )
        return run

    # -- the run -----------------------------------------------------------------------------
    def run(self) -> None:
        a = self.args
        self.prepare()
        self.steps.append(self.backup("full", "FULL", "- (imported image)"))
        self.probe_sequential()
        scattered = workload.scattered_writes(self.size, self.change, seed=7)
        what_a = f"(a) {len(scattered)} scattered 4 KiB writes"
        self.steps.append(self.incremental("incr-a", what_a, scattered))
        clustered = workload.clustered_writes(self.size, self.change, a.run_kib << 10, seed=11)
        what_b = f"(b) {len(clustered)} runs of {a.run_kib} KiB"
        self.steps.append(self.incremental("incr-b", what_b, clustered))
        self.check_restore()
        self.writers.append(self.writer("idle", during_backup=False))
        self.writers.append(self.writer("during FULL", during_backup=True))
        self.fill_job_times([*self.steps, *[w.backup for w in self.writers if w.backup is not None]])
        assert self.rig is not None
        self.rig.stop()
        self.serve_steps = self.as_a_user()
        self.facts["other load"] = (
            f"waited {self.waited:.0f} s in total for the machine to be quiet (< 0.25 CPU busy); "
            f"started while still busy: {', '.join(self.noisy) or 'none'}"
        )

    def fill_job_times(self, steps: list[Step]) -> None:
        assert self.rig is not None
        for st in steps:
            times = None
            for _ in range(100):  # the job ends after AVAILABLE (view teardown): wait for its line
                times = job_times(self.rig, str(st.sample.extra["backup_id"]))
                if times is not None:
                    break
                time.sleep(0.1)
            if times is not None:
                st.pickup_s, st.job_s = times[0] - float(st.sample.extra["created_at"]), times[1] - times[0]

    def as_a_user(self) -> list[Step]:
        """FULL, (a) and (b) again through `serve` alone with default settings (`make run`)."""
        a, first = self.args, self.rig
        src, poll_s = ROOT / "src" / "bootvault", a.poll_ms / 1000
        rig = BootvaultRig(self.work / "serve", src, None, None, poll_s=poll_s, in_process=True)
        self.rig = rig
        try:
            rig.start()
            image, _ = workload.live_image(BENCH / "work" / "cache", a.volume_gib, a.data_mib)
            rig.import_volume(image)
            self.uri = rig.attach()
            steps = [self.backup("serve full", "FULL", "- (imported image)")]
            scattered = workload.scattered_writes(self.size, self.change, seed=7)
            steps.append(self.incremental("serve incr-a", "(a)", scattered))
            clustered = workload.clustered_writes(self.size, self.change, a.run_kib << 10, seed=11)
            steps.append(self.incremental("serve incr-b", "(b)", clustered))
            self.fill_job_times(steps)
            return steps
        finally:
            rig.stop()
            self.rig = first


# -- the standard workload, from bench/run.py ---------------------------------------------------
def standard_incremental() -> dict[str, Any] | None:
    """bench/run.py's last run: bootvault's incr-B and the best peer's, if it was a standard run."""
    path = BENCH / "work" / "last-run.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    samples = [s for s in data["samples"] if s["step"] == "incr-B" and s["error"] is None]
    bv = next((s for s in samples if s["tool"] == "bootvault"), None)
    peers = [s for s in samples if s["tool"] != "bootvault"]
    if bv is None or not peers:
        return {"data": data, "bv": None, "peer": None}
    return {"data": data, "bv": bv, "peer": min(peers, key=lambda s: s["wall"]), "peers": peers}


# -- report ------------------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def _cell(v: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(live: Live, args: argparse.Namespace, command: str, took: float) -> str:
    info = results.machine()
    lines = ["# bootvault live-volume benchmark", ""]
    if args.note:
        lines += [f"**{args.note}**", ""]
    lines += [
        f"Produced by `bench/live.py`; rerun with `{command}`"
        f"{'' if command == 'make bench' else ' (also part of `make bench`)'}. Whole run: {took:.0f} s.",
        "",
        "## Machine and versions",
        "",
        *[f"- **{k}**: {v}" for k, v in info.items() if k not in ("restic", "borg")],
        "",
        "## Method",
        "",
        f"- {live.facts.get('volume image', '')}",
        "- bootvault: `serve --workers 0` plus one `bootvault worker` (BOOTVAULT_POLL_SECONDS=0.05, "
        "engine defaults: 64 KiB blocks, 3 threads); the volume is imported, then attached "
        "(`bootvault volume attach`): its qemu-storage-daemon (QSD) serves it read-write over NBD, "
        "and every change below is a libnbd pwrite through that URI (then a flush)",
        f"- wall = CreateBootVolumeBackup call (oci SDK) until a GetBootVolumeBackup, polled every "
        f"{args.poll_ms:g} ms, shows AVAILABLE: the measured wall overstates the real one by up to one "
        "poll interval; job = the worker's claim of the job to its end (its log; the end comes after "
        "AVAILABLE is committed, as the job then tears the point-in-time view down and drops the "
        "parent's bitmaps); pickup = Create call to the worker's claim (its job poll is 50 ms)",
        "- bytes read = the worker's log line `backup <id> read <N> bytes` (field bytes_read); "
        "dirty = the 64 KiB units the writes touch (the bitmaps' granularity) × 64 KiB; raw = bytes "
        "written",
        "- CPU = worker + API + QSD (/proc/PID/stat deltas); other CPU = machine busy time not "
        "spent by these (other load)",
        f"- (a): {fmt_mib(live.change)} MiB as 4 KiB writes at distinct Random(7) 4 KiB blocks of "
        f"the whole volume; (b): {fmt_mib(live.change)} MiB as {args.run_kib} KiB runs at Random(11) "
        "4 KiB-aligned offsets (as mutation B of the standard workload); both random bytes",
        "- writer: a separate process (bench/nbdwrite.py) doing 4 KiB pwrites at random 4 KiB-aligned "
        "offsets of the volume's data runs through the attach URI, one at a time (queue depth 1, no "
        f"flush until it stops); idle = {args.writer_seconds:g} s with nothing else running; during "
        "FULL = the writes that started between the Create call and AVAILABLE of a FULL backup "
        "(every first write to a 64 KiB cluster after the backup's instant copies the old cluster "
        "to the point-in-time overlay first: copy-before-write); the backup and the writer share "
        "the 2 cores",
        "- what a user sees: FULL, (a) and (b) again, in that order, on a fresh data directory and import "
        "of the same image, through `bootvault serve` alone as `make run` starts it: its in-process "
        "job worker, every setting at its default (no BOOTVAULT_ variable but the data directory); "
        "the same SDK calls and GET polls",
        "- correctness: after (b)'s incremental the volume is detached and exported "
        "(`bootvault volume export --format raw`); the (b) backup is restored into a new volume "
        "(CreateBootVolume from the backup) and that volume is exported too; the sha256 of the two "
        "raw exports (all of their bytes, holes hashed as the zeros they read as) must be equal",
        *[f"- {k}: {v}" for k, v in live.facts.items() if k != "volume image"],
        "",
        "## Results",
        "",
        "**Backups of the attached volume**",
        "",
        "| step | changed before it | raw written MiB | dirty (64 KiB) MiB | read MiB | read / dirty | "
        "read / raw | wall s | job s | pickup s | CPU s (worker+api+qsd) | stored Δ MiB | other CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    all_steps = [*live.steps, *[w.backup for w in live.writers if w.backup is not None]]
    for st in all_steps:
        x = st.sample.extra
        cpu = f"{st.sample.cpu:.2f} ({x.get('worker_cpu_s')}+{x.get('api_cpu_s')}+{x.get('qsd_cpu_s')})"
        lines.append(
            f"| {st.name}{' (busy)' if st.busy else ''} | {st.what} | "
            f"{fmt_mib(st.raw_written or None)} | {fmt_mib(st.dirty or None)} | "
            f"{fmt_mib(st.bytes_read)} | {_ratio(st.bytes_read, st.dirty)} | "
            f"{_ratio(st.bytes_read, st.raw_written)} | {st.sample.wall:.3f} | {_cell(st.job_s)} | "
            f"{_cell(st.pickup_s)} | {cpu} | {fmt_mib(st.sample.stored)} | {st.other_cpu:.2f} |"
        )
    lines += user_view(live)
    lines += ["", "**Writer at queue depth 1 (4 KiB random writes through the attach URI)**", ""]
    lines += [
        "| phase | window s | writes | writes/s | MB/s | p50 µs | p99 µs | max ms | QSD CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in live.writers:
        lines.append(
            f"| {w.phase} | {w.window_s:.2f} | {len(w.latencies_ns)} | {w.iops:,.0f} | "
            f"{w.iops * 4096 / 1e6:.1f} | {w.pct_us(0.5):.0f} | {w.pct_us(0.99):.0f} | "
            f"{max(w.latencies_ns, default=0) / 1e6:.1f} | {w.qsd_cpu_s:.2f} |"
        )
    if len(live.writers) == 2 and live.writers[0].iops:
        idle, busy = live.writers
        lines += [
            "",
            f"During the FULL backup the writer kept {busy.iops / idle.iops:.0%} of its idle throughput; "
            f"its p99 latency went from {idle.pct_us(0.99):.0f} µs to {busy.pct_us(0.99):.0f} µs "
            f"({busy.pct_us(0.99) / idle.pct_us(0.99):.1f}x).",
        ]
    v = live.verify
    if v:
        same = v["sha_volume"] == v["sha_restored"]
        lines += [
            "",
            "**Correctness**",
            "",
            "| what | sha256 of the raw export | allocated MiB | s |",
            "|---|---|---|---|",
            f"| the detached volume after (b) | `{v['sha_volume']}` | {fmt_mib(v['alloc_volume'])} | "
            f"{v['volume_export_s']:.2f} (export) |",
            f"| restore of incr-b into a new volume | `{v['sha_restored']}` | "
            f"{fmt_mib(v['alloc_restored'])} | {v['restore_s']:.2f} (restore) + "
            f"{v['restore_export_s']:.2f} (export) |",
            "",
            f"Equal: **{'yes' if same else 'NO'}** (hashing both took {v['hash_s']:.1f} s).",
        ]
    lines += ["", "**Targets**", "", "| target | value | limit | result |", "|---|---|---|---|"]

    def target(name: str, value: float | None, limit: float, unit: str = "") -> None:
        if value is None:
            lines.append(f"| {name} | - | <= {limit:g}{unit} | n/a |")
            return
        ok = value <= limit
        lines.append(f"| {name} | {value:.3f}{unit} | <= {limit:g}{unit} | {'PASS' if ok else 'FAIL'} |")

    for st in live.steps[1:]:
        read = st.bytes_read
        target(f"{st.name}: bytes read / dirty bytes (64 KiB)", read / st.dirty if read else None, READ_LIMIT)
        target(
            f"{st.name}: bytes read / raw bytes written", read / st.raw_written if read else None, READ_LIMIT
        )
        target(f"{st.name}: wall (Create → AVAILABLE)", st.sample.wall, WALL_LIMIT_S, " s")
    for st in live.serve_steps[1:]:
        target(f"{st.name} (defaults): wall (Create → AVAILABLE)", st.sample.wall, WALL_LIMIT_S, " s")
    std = standard_incremental()
    std_line = "bench/work/last-run.json not found: run bench/run.py (the standard run) first"
    if std is not None:
        data = std["data"]
        if not data.get("standard"):
            std_line = f"bench/run.py's last run was not a standard run ({data.get('command')})"
            target("standard workload incr-B: wall / best peer", None, STANDARD_LIMIT)
        elif std["bv"] is None or std["peer"] is None:
            std_line = "bench/run.py's last run has no bootvault or no peer incr-B"
            target("standard workload incr-B: wall / best peer", None, STANDARD_LIMIT)
        else:
            bv, peer = std["bv"], std["peer"]
            target("standard workload incr-B: wall / best peer", bv["wall"] / peer["wall"], STANDARD_LIMIT)
            others = ", ".join(f"{p['tool']} {p['wall']:.2f} s" for p in std["peers"])
            std_line = (
                f"from bench/run.py's run finished {data['finished']} (`{data['command']}`, "
                f"{data['results_file']}): bootvault incr-B {bv['wall']:.2f} s (read "
                f"{fmt_mib(bv['extra'].get('bytes_read'))} MiB), best peer {peer['tool']} "
                f"{peer['wall']:.2f} s ({others}); same durability as documented there (`sync` before "
                "every command; each tool commits its repository durably before it returns)"
            )
    else:
        target("standard workload incr-B: wall / best peer", None, STANDARD_LIMIT)
    if v:
        ok = v["sha_volume"] == v["sha_restored"]
        lines.append(
            f"| restore of incr-b equals the detached volume | - | sha256 equal | "
            f"{'PASS' if ok else 'FAIL'} |"
        )
    lines += ["", f"Standard workload: {std_line}.", ""]
    lines += physical_limits(live)
    return "\n".join(lines) + "\n"


def user_view(live: Live) -> list[str]:
    """The separate worker's walls beside those of `serve` as `make run` starts it."""
    if not live.serve_steps:
        return []
    lines = [
        "",
        "**What a user sees: Create → AVAILABLE through `serve` as `make run` starts it**",
        "",
        "| step | separate worker wall s | `serve` wall s | `serve` job s | `serve` pickup s | "
        "`serve` CPU s (serve+qsd) | `serve` read MiB | other CPU s | "
        "`serve` as the SDK's waiter sees it s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for st, first in zip(live.serve_steps, live.steps, strict=False):
        x = st.sample.extra
        busy = " (busy)" if st.busy else ""
        lines.append(
            f"| {first.name}{busy} | {first.sample.wall:.3f} | {st.sample.wall:.3f} | "
            f"{_cell(st.job_s)} | {_cell(st.pickup_s)} | {st.sample.cpu:.2f} ({x.get('worker_cpu_s')}+"
            f"{x.get('qsd_cpu_s')}) | {fmt_mib(st.bytes_read)} | {st.other_cpu:.2f} | "
            f"{waiter_sees(st.sample.wall)} |"
        )
    lines += [
        "",
        "The last column is computed, not measured: `oci.wait_until` (and the SDK's "
        "`..._and_wait_for_state`) GETs after 1, 2, 4, 8 ... s of sleep, so a backup that takes the "
        "`serve` wall is first seen AVAILABLE at the next of 1, 3, 7, 15 ... s (plus the GETs' own time).",
    ]
    return lines


def waiter_sees(wall: float) -> int:
    """When the SDK's waiter (sleeps of 1, 2, 4 ... s, at most 30) first sees a state reached after wall s."""
    at, sleep = 0, 1
    while at < wall:
        at, sleep = at + sleep, min(2 * sleep, 30)
    return at


def physical_limits(live: Live) -> list[str]:
    """Where the time of each backup goes, next to what this machine can do at all."""
    p = live.probe
    out = ["## What bounds it", ""]
    if p:
        mbs = p["seq_bytes"] / 1e6 / p["seq_s"]
        out.append(
            f"- NBD read of the attached export from Python (libnbd, 4 MiB preads, 1 connection, "
            f"page cache warm): {fmt_mib(p['seq_bytes'])} MiB in {p['seq_s']:.2f} s = {mbs:,.0f} MB/s "
            "(../shared/reference/live-volumes/README.md §2: 2 GiB in 1.6-1.8 s without hashing)."
        )
    full = live.steps[0] if live.steps else None
    if full is not None and full.bytes_read and full.sample.wall:
        x = full.sample.extra
        out.append(
            f"- full: {fmt_mib(full.bytes_read)} MiB read in {full.sample.wall:.2f} s "
            f"({full.bytes_read / 1e6 / full.sample.wall:,.0f} MB/s of the wall); CPU: worker "
            f"{x.get('worker_cpu_s')} s (hash, compress, encrypt, pack), QSD {x.get('qsd_cpu_s')} s "
            f"(reading the qcow2, serving NBD), API {x.get('api_cpu_s')} s. The end-to-end ceiling of "
            "this machine for read, hash, compress and write is 1 000-1 190 MB/s on 2 cores "
            "(machine-limits.md, zstd level 3; the engine uses level 1)."
        )
    for st in live.steps[1:]:
        floor = st.extra.get("floor_s")
        if floor is None:
            continue
        units, extents = st.dirty // GRANULARITY, len(merge_units(st.extra["units"]))
        x = st.sample.extra
        why = (
            f"{floor / max(1, extents) * 1e6:.0f} µs per 64 KiB request: QSD serves NBD requests one "
            "at a time in one thread, so small scattered extents cost round trips, not bandwidth"
            if units < 2 * extents
            else f"{st.dirty / 1e6 / floor:,.0f} MB/s"
        )
        out.append(
            f"- {st.name}: {units} dirty 64 KiB units in {extents} extents. Reading just those through "
            f"the attach URI on one connection takes {floor:.3f} s ({why}). The job took "
            f"{_cell(st.job_s)} s (worker CPU {x.get('worker_cpu_s')} s, QSD "
            f"CPU {x.get('qsd_cpu_s')} s): its fixed part is the job pickup ({_cell(st.pickup_s)} s), "
            "the point-in-time view's setup and teardown over QMP, the manifest and the database "
            "commit; the wall adds up to one GET poll interval."
        )
    out += [
        "- Per 64 KiB dirty unit an incremental reads, hashes (blake3 ~7.8 GB/s per core) and "
        "compresses (zstd level 1: 550-650 MB/s per core on text/binary, several GB/s on zeros and "
        "random) one block (machine-limits.md). 4 KiB scattered writes dirty 16x their size at "
        "this granularity, which is why (a) reads ~16x its raw bytes while (b) reads ~1.2x: the "
        "bitmap cannot tell which 4 KiB of a 64 KiB unit changed.",
        "- Copy-before-write: while a backup's point-in-time view exists, the first write to each "
        "64 KiB cluster first copies the old cluster into the view's overlay (a 64 KiB read and a "
        "64 KiB qcow2 write in QSD) before the 4 KiB write proceeds; later writes to the same "
        "cluster pay nothing extra. QSD runs the writer's requests and the backup's reads in one "
        "thread, and the worker's hashing and compression take the same 2 cores.",
    ]
    return out


def merge_units(units: list[int]) -> list[tuple[int, int]]:
    """Sorted 64 KiB unit numbers merged into [first, end) runs."""
    runs: list[list[int]] = []
    for u in units:
        if runs and runs[-1][1] == u:
            runs[-1][1] = u + 1
        else:
            runs.append([u, u + 1])
    return [(a, b) for a, b in runs]


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    live = Live(args)
    failed = None
    try:
        live.run()
    except Exception as exc:  # noqa: BLE001 - report what was measured, then the error
        failed = exc
        if live.rig is not None:
            print("--- worker log tail ---\n" + live.rig.log_tail(live.rig.worker_log_name), file=sys.stderr)
    finally:
        if live.rig is not None:
            live.rig.stop()
    took = time.perf_counter() - started
    command = results.rerun_command("bench/live.py", sys.argv[1:])
    text = markdown(live, args, command, took)
    if failed is not None:
        text += f"\n## Error\n\n```\n{type(failed).__name__}: {failed}\n```\n"
    out = args.out or (
        BENCH / "RESULTS-live.md" if args.standard else BENCH / "work" / "RESULTS-live-quick.md"
    )
    out.write_text(text)
    print(text)
    print(f"results written to {out} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {took:.0f} s)")
    if not args.keep and failed is None:
        shutil.rmtree(live.work, ignore_errors=True)
    if failed is not None:
        raise failed
    return 0 if live.correct else 1  # a missed target is a result; a wrong restore is an error


if __name__ == "__main__":
    sys.exit(main())
