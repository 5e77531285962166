"""The steps of a live-volume run (bench/live.py): import and attach, the measured backups, the
writes before each incremental, the restore check, the writer at queue depth 1 and the run again
through `serve` as `make run` starts it. The Live object holds what they measured."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import workload
from bvrig import BootvaultRig
from bvsource import source_origin
from liverecords import BENCH, GRANULARITY, MIB, ROOT, Step, WriterRun, job_times, merge_units
from measure import BenchError, fmt_mib, machine_busy_cpu, proc_cpu, wait_quiet
from nbdwrite import apply_writes, connect


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
