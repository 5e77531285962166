"""bootvault end to end: `serve --workers 0` (API) plus a separate `bootvault worker`, driven by the oci SDK;
or, with in_process=True, `serve` alone as `make run` starts it (its in-process worker, default settings).

Times run from the Create call until a GET (polled every 100 ms unless asked otherwise) shows
AVAILABLE. CPU is the utime+stime delta of the worker and API processes (/proc/PID/stat) plus
that of the volume's qemu-storage-daemon (QSD, which serves the volume over NBD: its pid file is
in the run directory); peak RSS is the worker's VmHWM, reset before each step via
/proc/PID/clear_refs. The bytes a backup read are taken from the worker's log line
"backup <id> read <N> bytes" (field bytes_read).

Volumes are qcow2 files served by QSD: changes go through the URI `attach` returns, and their
content is read back through `bootvault volume export --format raw`, never from the pool file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import oci
from measure import (
    BenchError,
    Sample,
    Timed,
    du_bytes,
    peak_rss_kib,
    proc_cpu,
    reset_peak_rss,
    stop_process,
    sync,
    timed,
)
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

BIN = Path(sys.executable).parent
POLL_S = 0.1  # the SDK itself waits >= 1 s; 20 ms polls cost the API (and the cores) ~1 CPU-s per step
STEP_TIMEOUT_S = 1800


SRC_REV_ENV = "BENCH_SRC_REV"


def source_origin() -> str:
    """Where the bootvault code of a run comes from: the working tree, or $BENCH_SRC_REV."""
    rev = os.environ.get(SRC_REV_ENV)
    if not rev:
        return "working tree"
    full = subprocess.run(
        ["git", "rev-parse", "--short", f"{rev}^{{commit}}"], capture_output=True, text=True, check=True
    )
    return f"git {full.stdout.strip()} (${SRC_REV_ENV}={rev})"


def snapshot_source(src: Path, dest: Path) -> str:
    """Copy the bootvault package to dest (imported via PYTHONPATH); return a digest of the copy.

    Every bootvault process of a run then uses the same code even if src/ is edited meanwhile.
    With $BENCH_SRC_REV set (a git revision), the package is taken from that commit instead of
    the working tree: other people's unfinished edits stay out of the run.
    """
    shutil.rmtree(dest, ignore_errors=True)
    rev = os.environ.get(SRC_REV_ENV)
    if rev:
        dest.mkdir(parents=True)
        rel = src.resolve().relative_to(src.resolve().parents[1])  # src/bootvault
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev, str(rel)],
            cwd=src.resolve().parents[1],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        shutil.move(dest / rel, dest / "bootvault")
        shutil.rmtree(dest / rel.parts[0])
    else:
        shutil.copytree(src, dest / "bootvault", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha256()
    for path in sorted((dest / "bootvault").rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BootvaultRig:
    name = "bootvault"

    def __init__(
        self,
        work: Path,
        src: Path,
        poll_seconds: float | None,
        block_size: int | None,
        poll_s: float = POLL_S,
        in_process: bool = False,
    ) -> None:
        """poll_seconds: the worker's BOOTVAULT_POLL_SECONDS (None: its default). in_process: one
        `serve` process runs the API and the job worker (`make run`), instead of two processes."""
        self.work = work
        self.poll_s = poll_s
        self.data_dir = work / "bv"
        self.logs = work / "logs"
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.source_digest = snapshot_source(src, work / "bv-src")
        pythonpath = os.pathsep.join(p for p in (str(work / "bv-src"), os.environ.get("PYTHONPATH")) if p)
        self.in_process = in_process
        env = dict(os.environ)
        if in_process:  # default settings, whatever this shell has set
            env = {k: v for k, v in env.items() if not k.startswith("BOOTVAULT_")}
        self.env = {**env, "PYTHONPATH": pythonpath, "BOOTVAULT_DATA_DIR": str(self.data_dir)}
        if poll_seconds is not None:
            self.env["BOOTVAULT_POLL_SECONDS"] = str(poll_seconds)
        if block_size:
            self.env["BOOTVAULT_BLOCK_SIZE"] = str(block_size)
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.client: oci.core.BlockstorageClient | None = None
        self.tenancy_id = ""
        self.volume_id = ""
        self.backups: dict[str, str] = {}  # step -> backup OCID
        self.attached: set[str] = set()

    # -- processes ---------------------------------------------------------------------------
    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [str(BIN / "bootvault"), *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            raise BenchError(f"bootvault {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc.stdout

    def _spawn(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        out = open(self.logs / log, "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen([str(BIN / "bootvault"), *args], env=self.env, stdout=out, stderr=out)

    def start(self) -> None:
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.data_dir.mkdir(parents=True)
        self.logs.mkdir(parents=True, exist_ok=True)
        self.cli("migrate")
        config = self.data_dir / "oci" / "config"
        self.tenancy_id = self.cli("tenancy", "create", "--name", "bench", "--oci-config", str(config))
        self.tenancy_id = self.tenancy_id.strip().splitlines()[-1]
        if self.in_process:
            self.api = self._spawn(["serve", "--port", str(self.port)], self.worker_log_name)
        else:
            self.api = self._spawn(["serve", "--port", str(self.port), "--workers", "0"], "bootvault-api.log")
            self.worker = self._spawn(["worker"], self.worker_log_name)
        deadline = time.monotonic() + 60
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            self._check_alive()
            if time.monotonic() > deadline:
                raise BenchError("bootvault serve did not open its port within 60 s")
            time.sleep(0.1)
        self.client = oci.core.BlockstorageClient(
            oci.config.from_file(str(config)), service_endpoint=self.endpoint
        )

    @property
    def worker_log_name(self) -> str:
        """The log file holding the worker's lines: the serve process's own when in process."""
        return "bootvault-serve.log" if self.in_process else "bootvault-worker.log"

    @property
    def worker_log(self) -> Path:
        return self.logs / self.worker_log_name

    @property
    def worker_pid(self) -> int:
        """The process that runs the jobs."""
        proc = self.api if self.in_process else self.worker
        assert proc is not None
        return proc.pid

    def _check_alive(self) -> None:
        api_log = self.worker_log_name if self.in_process else "bootvault-api.log"
        for proc, log in ((self.api, api_log), (self.worker, "bootvault-worker.log")):
            if proc is not None and proc.poll() is not None:
                tail = (self.logs / log).read_text(errors="replace")[-3000:]
                raise BenchError(f"{log[:-4]} exited with {proc.returncode}:\n{tail}")

    def log_tail(self, log: str, lines: int = 25) -> str:
        path = self.logs / log
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        """Stop the worker and the API, then every QSD of this rig's run directory (they
        daemonize, so they outlive both): detach what is attached, SIGTERM what is left."""
        for volume_id in sorted(self.attached):
            try:
                self.detach(volume_id)
            except BenchError as exc:
                print(f"detach {volume_id} at stop failed: {exc}", file=sys.stderr)
        self._stop_processes()
        for pidfile in sorted((self.data_dir / "run").glob("*/qsd.pid")):
            try:
                pid = int(pidfile.read_text().strip())
                if b"qemu-storage-daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue

    def _stop_processes(self) -> None:
        for proc in (self.worker, self.api):
            stop_process(proc)

    # -- volume pool -------------------------------------------------------------------------
    def import_volume(self, image: Path) -> tuple[str, float]:
        """Import a raw image as a volume (the rig's volume); returns its OCID and the time taken."""
        start = time.perf_counter()
        out = self.cli(
            "volume", "import", "--compartment", self.tenancy_id, "--display-name", "bench", str(image)
        )
        took = time.perf_counter() - start
        self.volume_id = out.strip().splitlines()[-1]
        return self.volume_id, took

    def volume_path(self, volume_id: str) -> Path:
        """The volume's qcow2 file in the pool: to stat it, never to read or write its bytes."""
        return Path(self.cli("volume", "path", volume_id).strip())

    def attach(self, volume_id: str | None = None) -> str:
        """Serve the volume read-write over NBD; returns the URI (the last line printed)."""
        volume_id = volume_id or self.volume_id
        uri = self.cli("volume", "attach", volume_id).strip().splitlines()[-1]
        self.attached.add(volume_id)
        return uri

    def detach(self, volume_id: str | None = None) -> None:
        volume_id = volume_id or self.volume_id
        self.cli("volume", "detach", volume_id)
        self.attached.discard(volume_id)

    def export(self, volume_id: str, dest: Path, log: str = "export") -> Timed:
        """`bootvault volume export VOLUME DEST --format raw --force`, timed."""
        return timed(
            [str(BIN / "bootvault"), "volume", "export", volume_id, str(dest), "--format", "raw", "--force"],
            self.logs / f"bootvault.{log}.log",
            env=self.env,
        )

    def runtime_dir(self, volume_id: str) -> Path:
        """The volume's runtime directory (pool/daemon.py: run dir / sha256(volume id)[:16])."""
        return self.data_dir / "run" / hashlib.sha256(volume_id.encode()).hexdigest()[:16]

    def qsd_pid(self, volume_id: str | None = None) -> int | None:
        """The pid of the QSD serving the volume now, if one is running."""
        try:
            pid = int((self.runtime_dir(volume_id or self.volume_id) / "qsd.pid").read_text().strip())
            proc_cpu(pid)
        except (OSError, ValueError):
            return None
        return pid

    def worker_bytes_read(self, backup_id: str) -> int | None:
        """bytes_read of the worker's log line for this backup (the last one, if it retried)."""
        found = None
        for line in self.worker_log.read_text(errors="replace").splitlines():
            if backup_id not in line or '"bytes_read"' not in line:
                continue
            try:
                found = int(json.loads(line)["bytes_read"])
            except (ValueError, KeyError):
                continue
        return found

    # -- measured steps ----------------------------------------------------------------------
    def _counters(self) -> tuple[float, float]:
        """CPU seconds of (worker, API); in process, both are the serve process's, counted as the worker's."""
        assert self.api is not None
        if self.in_process:
            return proc_cpu(self.api.pid), 0.0
        return proc_cpu(self.worker_pid), proc_cpu(self.api.pid)

    def _begin(self) -> tuple[float, float, bool]:
        assert self.api is not None
        self._check_alive()
        reset = reset_peak_rss(self.worker_pid) and reset_peak_rss(self.api.pid)
        sync()
        return *self._counters(), reset

    def _wait(self, getter: str, ident: str, start: float, meter: QsdMeter | None = None) -> Any:
        assert self.client is not None
        while True:
            if meter is not None:
                meter.sample()
            data = getattr(self.client, getter)(ident).data
            state = data.lifecycle_state
            if state == "AVAILABLE":
                return data
            if state in ("FAULTY", "TERMINATED", "TERMINATING"):
                raise BenchError(
                    f"{ident} went {state}: lifecycleDetails={getattr(data, 'lifecycle_details', None)!r} "
                    f"systemTags={data.system_tags!r}"
                )
            self._check_alive()
            if time.perf_counter() - start > STEP_TIMEOUT_S:
                raise BenchError(f"{ident} still {state} after {STEP_TIMEOUT_S} s")
            time.sleep(self.poll_s)

    def _fill(self, sample: Sample, begin: tuple[float, float, bool]) -> None:
        assert self.api is not None
        worker_cpu, api_cpu = self._counters()
        sample.extra["worker_cpu_s"] = round(worker_cpu - begin[0], 3)
        sample.extra["api_cpu_s"] = round(api_cpu - begin[1], 3)
        sample.cpu += worker_cpu - begin[0] + api_cpu - begin[1]
        sample.rss_kib = max(sample.rss_kib, peak_rss_kib(self.worker_pid))
        sample.extra["api_peak_rss_kib"] = peak_rss_kib(self.api.pid)
        if not begin[2]:
            sample.extra["rss_note"] = "clear_refs refused: peak RSS is since process start"

    def backup(self, step: str, kind: str) -> Sample:
        """CreateBootVolumeBackup until AVAILABLE. CPU includes the volume's QSD (reading the
        qcow2 and serving NBD is part of the backup's cost)."""
        assert self.client is not None
        store = self.data_dir / "store"
        before = du_bytes(store)
        begin = self._begin()
        meter = QsdMeter(lambda: self.qsd_pid(self.volume_id))
        created_at, start = time.time(), time.perf_counter()
        details = CreateBootVolumeBackupDetails(boot_volume_id=self.volume_id, type=kind, display_name=step)
        backup_id = self.client.create_boot_volume_backup(details).data.id
        data = self._wait("get_boot_volume_backup", backup_id, start, meter)
        sample = Sample(self.name, step, wall=time.perf_counter() - start)
        meter.sample()
        self._fill(sample, begin)
        sample.cpu += meter.cpu
        sample.extra["qsd_cpu_s"] = round(meter.cpu, 3)
        bytes_read = self.worker_bytes_read(backup_id)
        if bytes_read is not None:
            sample.extra["bytes_read"] = bytes_read
        sample.extra["backup_id"] = backup_id
        sample.extra["created_at"] = created_at
        after = du_bytes(store)
        sample.stored, sample.repo_total = after - before, after
        tags = (data.system_tags or {}).get("bootvault", {})
        sample.extra["unique_size_bytes"] = int(tags.get("uniqueSizeBytes", -1))
        self.backups[step] = backup_id
        return sample

    def restore(self, step: str, of_step: str, dest: Path) -> tuple[Sample, Path]:
        """Restore the backup taken at of_step into a new volume, then export it to dest."""
        assert self.client is not None
        begin = self._begin()
        start = time.perf_counter()
        details = CreateBootVolumeDetails(
            compartment_id=self.tenancy_id,
            availability_domain="bootvault:AD-1",
            display_name=f"restore-{of_step}",
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=self.backups[of_step]),
        )
        volume_id = self.client.create_boot_volume(details).data.id
        # The job fills the new volume through a QSD of its own (pool/volume.py: runtime
        # "fill:<volume id>"), which lives only while the job runs: sampled at every poll.
        meter = QsdMeter(lambda: self.qsd_pid(f"fill:{volume_id}"))
        self._wait("get_boot_volume", volume_id, start, meter)
        restore_wall = time.perf_counter() - start
        sample = Sample(self.name, step, wall=restore_wall)
        self._fill(sample, begin)
        sample.cpu += meter.cpu
        sample.extra["qsd_cpu_s"] = round(meter.cpu, 3)
        dest.unlink(missing_ok=True)
        sync()
        exp = self.export(volume_id, dest, f"{step}.export")
        sample.wall += exp.wall
        sample.cpu += exp.cpu
        sample.rss_kib = max(sample.rss_kib, exp.rss_kib)
        pool_file = self.volume_path(volume_id)
        sample.extra.update(
            restore_wall_s=round(restore_wall, 3),
            export_wall_s=round(exp.wall, 3),
            export_cpu_s=round(exp.cpu, 3),
            export_rss_kib=exp.rss_kib,
            pool_file_allocated=os.stat(pool_file).st_blocks * 512,
        )
        sample.extra["volume_id"] = volume_id
        return sample, pool_file


class QsdMeter:
    """CPU seconds spent by the volume's QSD during a step. An attached volume's daemon lives
    on (its CPU is a delta); a detached volume gets a daemon for the job only, sampled at every
    poll (the last poll interval of a daemon that exits before the step ends is not seen)."""

    def __init__(self, find_pid: Callable[[], int | None]) -> None:
        self.find_pid = find_pid
        self.seen: dict[int, list[float]] = {}  # pid -> [cpu at first sight, latest cpu]
        pid = find_pid()
        if pid is not None:
            self.seen[pid] = [proc_cpu(pid)] * 2

    def sample(self) -> None:
        pid = self.find_pid()
        if pid is None:
            return
        try:
            cpu = proc_cpu(pid)
        except OSError:
            return
        self.seen.setdefault(pid, [0.0, 0.0])[1] = cpu  # a new daemon: all its CPU is this step's

    @property
    def cpu(self) -> float:
        return sum(last - first for first, last in self.seen.values())
