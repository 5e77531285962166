"""The processes of a bootvault bench rig (bench/bvrig.py): `serve --workers 0` plus a separate
`bootvault worker`, or `serve` alone, started on a snapshot of the code; the admin CLI; their
logs (the worker's bytes_read line); the CPU and peak RSS they spend, and QsdMeter for a volume's
qemu-storage-daemon."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import oci
from bvsource import snapshot_source
from measure import BenchError, Sample, peak_rss_kib, proc_cpu, reset_peak_rss, stop_process, sync

BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BootvaultProcesses:
    """The API and worker processes of one data directory (work/bv), their env and logs."""

    def __init__(
        self, work: Path, src: Path, poll_seconds: float | None, block_size: int | None, in_process: bool
    ) -> None:
        self.work = work
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

    def _stop_processes(self) -> None:
        for proc in (self.worker, self.api):
            stop_process(proc)

    # -- the worker's log --------------------------------------------------------------------
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

    # -- CPU and peak RSS of a step ----------------------------------------------------------
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
