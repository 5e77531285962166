"""bootvault end to end: `serve --workers 0` (API) plus a separate `bootvault worker`, driven by the oci SDK.

Times run from the Create call until a GET (polled every 100 ms) shows AVAILABLE. CPU is the
utime+stime delta of the worker and API processes (/proc/PID/stat); peak RSS is the worker's
VmHWM, reset before each step via /proc/PID/clear_refs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import oci
from measure import BenchError, Sample, du_bytes, peak_rss_kib, proc_cpu, reset_peak_rss, sync, timed
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

BIN = Path(sys.executable).parent
POLL_S = 0.1  # the SDK itself waits >= 1 s; 20 ms polls cost the API (and the cores) ~1 CPU-s per step
STEP_TIMEOUT_S = 1800


def snapshot_source(src: Path, dest: Path) -> str:
    """Copy the bootvault package to dest (imported via PYTHONPATH); return a digest of the copy.

    Every bootvault process of a run then uses the same code even if src/ is edited meanwhile.
    """
    shutil.rmtree(dest, ignore_errors=True)
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

    def __init__(self, work: Path, src: Path, poll_seconds: float, block_size: int | None) -> None:
        self.work = work
        self.data_dir = work / "bv"
        self.logs = work / "logs"
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.source_digest = snapshot_source(src, work / "bv-src")
        pythonpath = os.pathsep.join(p for p in (str(work / "bv-src"), os.environ.get("PYTHONPATH")) if p)
        self.env = {
            **os.environ,
            "PYTHONPATH": pythonpath,
            "BOOTVAULT_DATA_DIR": str(self.data_dir),
            "BOOTVAULT_POLL_SECONDS": str(poll_seconds),
        }
        if block_size:
            self.env["BOOTVAULT_BLOCK_SIZE"] = str(block_size)
        self.api: subprocess.Popen[bytes] | None = None
        self.worker: subprocess.Popen[bytes] | None = None
        self.client: oci.core.BlockstorageClient | None = None
        self.tenancy_id = ""
        self.volume_id = ""
        self.backups: dict[str, str] = {}  # step -> backup OCID

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
        self.api = self._spawn(["serve", "--port", str(self.port), "--workers", "0"], "bootvault-api.log")
        self.worker = self._spawn(["worker"], "bootvault-worker.log")
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

    def _check_alive(self) -> None:
        for proc, log in ((self.api, "bootvault-api.log"), (self.worker, "bootvault-worker.log")):
            if proc is not None and proc.poll() is not None:
                tail = (self.logs / log).read_text(errors="replace")[-3000:]
                raise BenchError(f"{log[:-4]} exited with {proc.returncode}:\n{tail}")

    def log_tail(self, log: str, lines: int = 25) -> str:
        path = self.logs / log
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop(self) -> None:
        for proc in (self.worker, self.api):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    # -- volume pool -------------------------------------------------------------------------
    def import_volume(self, image: Path) -> tuple[Path, float]:
        start = time.perf_counter()
        out = self.cli(
            "volume", "import", "--compartment", self.tenancy_id, "--display-name", "bench", str(image)
        )
        took = time.perf_counter() - start
        self.volume_id = out.strip().splitlines()[-1]
        return self.volume_path(self.volume_id), took

    def volume_path(self, volume_id: str) -> Path:
        return Path(self.cli("volume", "path", volume_id).strip())

    # -- measured steps ----------------------------------------------------------------------
    def _counters(self) -> tuple[float, float]:
        assert self.worker is not None and self.api is not None
        return proc_cpu(self.worker.pid), proc_cpu(self.api.pid)

    def _begin(self) -> tuple[float, float, bool]:
        assert self.worker is not None and self.api is not None
        self._check_alive()
        reset = reset_peak_rss(self.worker.pid) and reset_peak_rss(self.api.pid)
        sync()
        return *self._counters(), reset

    def _wait(self, getter: str, ident: str, start: float) -> Any:
        assert self.client is not None
        while True:
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
            time.sleep(POLL_S)

    def _fill(self, sample: Sample, begin: tuple[float, float, bool]) -> None:
        assert self.worker is not None and self.api is not None
        worker_cpu, api_cpu = self._counters()
        sample.extra["worker_cpu_s"] = round(worker_cpu - begin[0], 3)
        sample.extra["api_cpu_s"] = round(api_cpu - begin[1], 3)
        sample.cpu += worker_cpu - begin[0] + api_cpu - begin[1]
        sample.rss_kib = max(sample.rss_kib, peak_rss_kib(self.worker.pid))
        sample.extra["api_peak_rss_kib"] = peak_rss_kib(self.api.pid)
        if not begin[2]:
            sample.extra["rss_note"] = "clear_refs refused: peak RSS is since process start"

    def backup(self, step: str, kind: str) -> Sample:
        assert self.client is not None
        store = self.data_dir / "store"
        before = du_bytes(store)
        begin = self._begin()
        start = time.perf_counter()
        details = CreateBootVolumeBackupDetails(boot_volume_id=self.volume_id, type=kind, display_name=step)
        backup_id = self.client.create_boot_volume_backup(details).data.id
        data = self._wait("get_boot_volume_backup", backup_id, start)
        sample = Sample(self.name, step, wall=time.perf_counter() - start)
        self._fill(sample, begin)
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
        self._wait("get_boot_volume", volume_id, start)
        restore_wall = time.perf_counter() - start
        sample = Sample(self.name, step, wall=restore_wall)
        self._fill(sample, begin)
        dest.unlink(missing_ok=True)
        sync()
        exp = timed(
            [str(BIN / "bootvault"), "volume", "export", volume_id, str(dest)],
            self.logs / f"bootvault.{step}.export.log",
            env=self.env,
        )
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
        return sample, pool_file
