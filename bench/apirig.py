"""The pieces of bench/api.py that drive a server: a bootvault deployment (`serve` on embedded
defaults, backups inserted through the store's table), requests signed by the oci SDK's signer and
replayed by wrk, and the RSS and CPU of the server while it runs."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import oci
from measure import BenchError, machine_busy_cpu, proc_cpu, stop_process
from oci._vendor import requests as oci_requests

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BIN = Path(sys.executable).parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"
API = "/20160918"
SMALL, LARGE = 1_000, 100_000
VOLUMES = 100  # the listed backups belong to this many (fake) volumes, round robin
MIB = 1 << 20

# Targets of issue 8 ("Must show").
GET_RATIO, GET_P99_MS, LIST_RATIO, LIST_P99_MS, START_MS, RSS_MIB = 0.5, 20.0, 0.3, 20.0, 50.0, 150.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise BenchError(f"{proc.args} exited {proc.returncode}: {log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise BenchError(f"{proc.args} did not open port {port}")


def status_kib(pid: int, field_name: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class RssWatch:
    """Peak RSS of a process (and, for `--processes N`, of each of its children), sampled every
    20 ms and taken from VmHWM, which catches peaks between samples."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _pids(self) -> list[int]:
        return [self.pid, *children(self.pid)]

    def sample(self) -> int:
        return max(max(status_kib(p, "VmRSS"), status_kib(p, "VmHWM")) for p in self._pids())

    def __enter__(self) -> RssWatch:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_kib = max(self.peak_kib, self.sample())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        self.peak_kib = max(self.peak_kib, self.sample())


# -- signing and wrk -----------------------------------------------------------------------------


@dataclass
class Signed:
    method: str
    path: str  # path and query, exactly as signed
    headers: dict[str, str]
    body: bytes = b""


def sign(config: dict[str, Any], endpoint: str, method: str, path: str, body: bytes | None = None) -> Signed:
    """Headers the oci SDK's signer makes for this request (valid for the five-minute skew)."""
    signer = oci.signer.Signer(config["tenancy"], config["user"], config["fingerprint"], config["key_file"])
    headers = {"accept": "application/json"}
    if body is not None:
        headers["content-type"] = "application/json"
    prepared = oci_requests.Request(method, endpoint + path, data=body, headers=headers).prepare()
    signer(prepared)
    return Signed(method, path, {k.lower(): str(v) for k, v in prepared.headers.items()}, body or b"")


WRK_REPORT_LUA = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRKJSON {\\"requests\\": %d, \\"duration_us\\": %d, \\"non2xx\\": %d, \\"errors\\": %d, "
    .. "\\"p50_us\\": %d, \\"p90_us\\": %d, \\"p99_us\\": %d, \\"max_us\\": %d}\\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def lua_script(req: Signed) -> str:
    """wrk.headers values go in Lua long strings: the Authorization value holds double quotes."""
    lines = [f"wrk.method = [[{req.method}]]", f"wrk.path = [[{req.path}]]"]
    for name, value in req.headers.items():
        if "]]" in value or name in ("connection", "accept-encoding", "user-agent"):
            continue
        key = "Host" if name == "host" else name  # wrk adds its own "Host" unless this one is set
        lines.append(f'wrk.headers["{key}"] = [[{value}]]')
    if req.body:
        lines.append(f"wrk.body = [[{req.body.decode()}]]")
    return "\n".join(lines) + "\n" + WRK_REPORT_LUA


@dataclass
class WrkResult:
    label: str
    connections: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non2xx: int
    errors: int
    busy_cpus: float  # the whole machine's busy CPUs during the run (server + wrk + anything else)
    server_us: float = 0.0  # the server's CPU time per request (all its threads and processes)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def server_cpu(pid: int | None) -> float:
    """CPU seconds of a server process and its children (the API processes of --processes N)."""
    if pid is None:
        return 0.0
    total = 0.0
    for p in (pid, *children(pid)):
        with contextlib.suppress(OSError):  # a child that just exited
            total += proc_cpu(p)
    return total


def run_wrk(
    label: str,
    url: str,
    script: str,
    connections: int,
    seconds: float,
    work: Path,
    threads: int = 1,
    pid: int | None = None,
) -> WrkResult:
    lua = work / "wrk.lua"
    lua.write_text(script)
    cmd = [WRK, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{max(1, round(seconds))}s"]
    cmd += ["--timeout", "5s", "-s", str(lua), url]
    cpu0, t0, own0 = machine_busy_cpu(), time.monotonic(), server_cpu(pid)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    busy = (machine_busy_cpu() - cpu0) / (time.monotonic() - t0)
    own = server_cpu(pid) - own0
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    r = json.loads(line[len("WRKJSON ") :])
    result = WrkResult(
        label=label,
        connections=connections,
        rps=r["requests"] / (r["duration_us"] / 1e6),
        p50_ms=r["p50_us"] / 1000,
        p90_ms=r["p90_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        max_ms=r["max_us"] / 1000,
        requests=r["requests"],
        non2xx=r["non2xx"],
        errors=r["errors"],
        busy_cpus=busy,
        server_us=own * 1e6 / max(1, r["requests"]) if pid else 0.0,
    )
    print(
        f"  {label:<44} c={connections:<3} {result.rps:>8.0f} req/s  p50 {result.p50_ms:6.2f} ms"
        f"  p99 {result.p99_ms:7.2f} ms  non2xx {result.non2xx}  err {result.errors}"
        f"  busy {busy:.2f} CPUs  server {result.server_us:.0f} us/req",
        flush=True,
    )
    if result.non2xx or result.errors:
        raise BenchError(f"{label}: {result.non2xx} non-2xx answers and {result.errors} socket errors")
    return result


# -- the bootvault deployment --------------------------------------------------------------------


class Deployment:
    def __init__(self, work: Path, src_dir: Path) -> None:
        self.work = work
        self.data_dir = work / "data"
        self.logs = work / "logs"
        self.env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (str(src_dir), os.environ.get("PYTHONPATH")) if p),
            "BOOTVAULT_DATA_DIR": str(self.data_dir),
            "BOOTVAULT_QUOTA_BACKUPS": str(LARGE * 2),
            # The inserted rows have no data: a periodic verify would turn them FAULTY (and keep
            # the worker busy), so the periodic jobs are off.
            "BOOTVAULT_VERIFY_INTERVAL_SECONDS": "0",
            "BOOTVAULT_GC_INTERVAL_SECONDS": "0",
        }
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.config: dict[str, Any] = {}
        self.tenancy_id = self.compartment_id = self.volume_id = ""

    def cli(self, *args: str) -> str:
        proc = subprocess.run(
            [str(BIN / "bootvault"), *args], env=self.env, capture_output=True, text=True, timeout=600
        )
        if proc.returncode != 0:
            raise BenchError(f"bootvault {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
        return proc.stdout.strip().splitlines()[-1]

    def setup(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.cli("migrate")
        config = self.work / "oci" / "config"
        self.tenancy_id = self.cli("tenancy", "create", "--name", "bench", "--oci-config", str(config))
        self.config = oci.config.from_file(str(config))
        self.compartment_id = self.cli("compartment", "create", "--parent", self.tenancy_id, "--name", "list")
        image = self.work / "vol.img"
        with open(image, "wb") as fh:  # 64 MiB: 8 MiB of data, the rest a hole
            fh.truncate(64 * MIB)
            fh.write(random.Random(8).randbytes(8 * MIB))
        self.volume_id = self.cli(
            "volume", "import", "--compartment", self.tenancy_id, "--display-name", "bench", str(image)
        )
        image.unlink()

    def start(self, processes: int = 1, workers: int = 1) -> None:
        log = open(self.logs / f"serve-{processes}p.log", "ab")  # noqa: SIM115 - the child keeps it
        args = ["serve", "--port", str(self.port), "--workers", str(workers), "--processes", str(processes)]
        self.proc = subprocess.Popen([str(BIN / "bootvault"), *args], env=self.env, stdout=log, stderr=log)
        wait_port(self.port, self.proc, self.logs / f"serve-{processes}p.log")
        if processes > 1:  # every child answers before the run starts
            deadline = time.monotonic() + 60
            while len(children(self.proc.pid)) < processes and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(2)
        self.get(f"/bootVolumeBackups?compartmentId={self.compartment_id}&limit=1")

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def get(self, path: str) -> Any:
        req = sign(self.config, self.endpoint, "GET", API + path)
        resp = oci_requests.get(self.endpoint + req.path, headers=req.headers, timeout=30)
        if resp.status_code != 200:
            raise BenchError(f"GET {path}: {resp.status_code} {resp.text[:500]}")
        return resp

    def script(self, path: str) -> str:
        return lua_script(sign(self.config, self.endpoint, "GET", API + path))

    def insert_backups(self, count: int, start: int) -> float:
        """`count` AVAILABLE-or-other backups in the list compartment, inserted in one transaction
        through the store's table (no API, no jobs). Returns the seconds it took."""
        sys.path.insert(0, self.env["PYTHONPATH"].split(os.pathsep)[0])
        from bootvault.store.db import Database
        from bootvault.store.tables import boot_volume_backups

        rng = random.Random(start)
        base = datetime(2026, 1, 1, tzinfo=UTC)
        states = ["AVAILABLE"] * 8 + ["TERMINATED", "FAULTY"]  # drawn at random, not by volume
        rows = []
        for i in range(start, start + count):
            ts = base + timedelta(seconds=i * 7 + rng.randrange(5))
            rows.append(
                {
                    "id": f"ocid1.bootvolumebackup.oc1.local-1.bench{i:09d}{rng.getrandbits(64):016x}",
                    "tenancy_id": self.tenancy_id,
                    "compartment_id": self.compartment_id,
                    "boot_volume_id": self.fake_volume(i % VOLUMES),
                    "display_name": f"backup-{rng.randrange(10**8):08d}",
                    "lifecycle_state": rng.choice(states),
                    "type": "INCREMENTAL" if i % 5 else "FULL",
                    "source_type": "MANUAL",
                    "time_request_received": ts,
                    "time_created": ts,
                    "etag": f"{rng.getrandbits(128):032x}",
                    "size_in_gbs": 50,
                    "kms_key_id": None,
                    "image_id": None,
                    "freeform_tags": {"team": "bench", "n": str(i)},
                    "defined_tags": {},
                    "percent_complete": 100,
                    "logical_size_bytes": 50 << 30,
                    "unique_size_bytes": rng.randrange(1 << 30),
                    "lifecycle_details": None,
                    "source_boot_volume_backup_id": None,
                    "expiration_time": None,
                }
            )
        db = Database(f"sqlite:///{self.data_dir / 'bootvault.db'}")
        t0 = time.perf_counter()
        with db.write() as conn:
            conn.execute(boot_volume_backups.insert(), rows)
        took = time.perf_counter() - t0
        with db.write() as conn:
            conn.exec_driver_sql("ANALYZE")
        db.dispose()
        return took

    @staticmethod
    def fake_volume(n: int) -> str:
        return f"ocid1.bootvolume.oc1.local-1.benchvolume{n:04d}"

    def first_backup(self) -> str:
        return self.get(f"/bootVolumeBackups?compartmentId={self.compartment_id}&limit=1").json()[0]["id"]

    def page_token(self, query: str) -> str:
        return self.get(f"/bootVolumeBackups?{query}").headers["opc-next-page"]
