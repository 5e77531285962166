"""API speed: wrk against `bootvault serve` on embedded defaults (SQLite, local store), next to a
bare Starlette app on uvicorn (bench/bareapp.py) in the same run; `make bench` runs it and writes
bench/RESULTS-api.md.

Requests are signed once by the oci SDK's own signer and replayed by wrk for the length of one
run (a signature is valid for the five-minute date skew; every run signs afresh). wrk runs with
one thread on the same 2-core machine as the server, so the two share the cores.

Phases:
1. the bare app: GET of one document at 1, 10 and 50 connections, and a list of 25 at 50;
2. bootvault (`serve`, one process, one in-process worker) with 1,000 backups in one compartment
   (rows inserted through the store's table, not the API): a backup created on the idle service,
   from the create response to the job's claim; GetBootVolumeBackup at 1, 10 and 50 connections;
   ListBootVolumeBackups of 25 at 50; list pages with filters and both sorts; 1,000 hostile
   requests; the server's RSS throughout;
3. the same compartment grown to 100,000 backups: the same list pages again;
4. `serve --processes N` for N = 1, 2, 4: GetBootVolumeBackup at 50 connections.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import oci
from bvrig import SRC_REV_ENV, snapshot_source, source_origin
from measure import BenchError, machine_busy_cpu, proc_cpu, stop_process
from oci._vendor import requests as oci_requests
from oci.core.models import CreateBootVolumeBackupDetails

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


_DONE = """
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
    return "\n".join(lines) + "\n" + _DONE


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


# -- phases --------------------------------------------------------------------------------------


@dataclass
class Report:
    started: str = ""
    facts: dict[str, str] = field(default_factory=dict)
    bare: list[WrkResult] = field(default_factory=list)
    get: list[WrkResult] = field(default_factory=list)
    list25: list[WrkResult] = field(default_factory=list)
    pages: dict[int, list[WrkResult]] = field(default_factory=dict)
    processes: list[tuple[int, WrkResult, WrkResult, int]] = field(default_factory=list)  # n, get, list
    start_ms: list[tuple[float, float]] = field(default_factory=list)  # (from response, from request)
    fresh_ms: list[float] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)
    rss_load_kib: int = 0
    rss_hostile_kib: int = 0
    rss_idle_kib: int = 0
    hostile: dict[str, int] = field(default_factory=dict)
    insert_s: dict[int, float] = field(default_factory=dict)


def bare_phase(work: Path, rep: Report, seconds: float, conns: list[int]) -> None:
    print("bare Starlette app", flush=True)
    port = free_port()
    log = work / "logs" / "bare.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, str(BENCH / "bareapp.py"), str(port)], stdout=out, stderr=out
        )
    try:
        wait_port(port, proc, log)
        script = _DONE
        for c in conns:
            rep.bare.append(
                run_wrk(
                    "bare GET /item", f"http://127.0.0.1:{port}/item", script, c, seconds, work, pid=proc.pid
                )
            )
        rep.bare.append(
            run_wrk(
                "bare GET /list (25)",
                f"http://127.0.0.1:{port}/list",
                script,
                50,
                seconds,
                work,
                pid=proc.pid,
            )
        )
    finally:
        stop_process(proc)


def fresh_latency(dep: Deployment, path: str, count: int) -> list[float]:
    """Milliseconds per request when every request has a signature of its own, as from a real
    client (wrk replays one, which the server's verified-signature cache then recognises).
    One keep-alive connection; signing happens before the clock starts."""
    out = []
    with oci_requests.Session() as session:
        for _ in range(count):
            req = sign(dep.config, dep.endpoint, "GET", API + path)
            t0 = time.perf_counter()
            resp = session.get(dep.endpoint + req.path, headers=req.headers, timeout=30)
            out.append((time.perf_counter() - t0) * 1000)
            if resp.status_code != 200:
                raise BenchError(f"fresh GET {path}: {resp.status_code} {resp.text[:300]}")
            time.sleep(0.002)  # a client's pace, not a flood
    return out


def start_latency(dep: Deployment, count: int) -> list[tuple[float, float]]:
    """Create backups on the idle service one at a time; how long after the create response (and
    after the request was sent) the worker claimed the job (jobs.time_started)."""
    client = oci.core.BlockstorageClient(dep.config, service_endpoint=dep.endpoint)
    db = sqlite3.connect(f"file:{dep.data_dir / 'bootvault.db'}?mode=ro", uri=True)
    out = []
    try:
        for n in range(count):
            time.sleep(1.0)  # idle: the worker is asleep on its wake-up event
            sent = time.time()
            backup = client.create_boot_volume_backup(
                CreateBootVolumeBackupDetails(
                    boot_volume_id=dep.volume_id, display_name=f"start-{n}", type="FULL"
                )
            ).data
            answered = time.time()
            deadline = time.monotonic() + 120
            while True:
                row = db.execute(
                    "SELECT time_started FROM jobs WHERE resource_id = ?", (backup.id,)
                ).fetchone()
                state = client.get_boot_volume_backup(backup.id).data.lifecycle_state
                if state in ("AVAILABLE", "FAULTY"):
                    break
                if time.monotonic() > deadline:
                    raise BenchError(f"backup {backup.id} stayed {state}")
                time.sleep(0.1)
            if state != "AVAILABLE":
                raise BenchError(f"backup {backup.id} went {state}")
            started = datetime.fromisoformat(row[0]).replace(tzinfo=UTC).timestamp()
            out.append(((started - answered) * 1000, (started - sent) * 1000))
            print(
                f"  create {n}: claimed {out[-1][0]:+.1f} ms after the response,"
                f" {out[-1][1]:.1f} ms after sending"
            )
    finally:
        db.close()
    return out


def list_queries(dep: Deployment) -> list[tuple[str, str]]:
    c = f"compartmentId={dep.compartment_id}&limit=25"
    vol = dep.fake_volume(7)
    return [
        ("newest first (TIMECREATED DESC)", c),
        ("by name (DISPLAYNAME ASC)", c + "&sortBy=DISPLAYNAME"),
        ("AVAILABLE, TIMECREATED DESC", c + "&lifecycleState=AVAILABLE"),
        ("AVAILABLE, DISPLAYNAME ASC", c + "&lifecycleState=AVAILABLE&sortBy=DISPLAYNAME"),
        ("one volume, TIMECREATED ASC", c + f"&bootVolumeId={vol}&sortOrder=ASC"),
        (
            "one volume + FAULTY, DISPLAYNAME DESC",
            c + f"&bootVolumeId={vol}&lifecycleState=faulty&sortBy=DISPLAYNAME&sortOrder=DESC",
        ),
        ("displayName = one name", c + "&displayName=@NAME@"),
        ("CREATING (no match), DISPLAYNAME ASC", c + "&lifecycleState=CREATING&sortBy=DISPLAYNAME"),
        ("page 2, TIMECREATED DESC", c + "&page=@TOKEN@"),
        (
            "page 2, AVAILABLE, DISPLAYNAME ASC",
            c + "&lifecycleState=AVAILABLE&sortBy=DISPLAYNAME&page=@TOKEN2@",
        ),
        ("halfway through the listing, TIMECREATED DESC", c + "&page=@DEEP@"),
    ]


def pages_phase(dep: Deployment, rep: Report, size: int, seconds: float, conns: int) -> None:
    pid = dep.proc.pid if dep.proc else None
    print(f"list pages, {size:,} backups in the compartment, {conns} connection(s)", flush=True)
    name = dep.get(f"/bootVolumeBackups?compartmentId={dep.compartment_id}&limit=1").json()[0]["displayName"]
    c = f"compartmentId={dep.compartment_id}&limit=25"
    token = dep.page_token(c)
    token2 = dep.page_token(c + "&lifecycleState=AVAILABLE&sortBy=DISPLAYNAME")
    # Halfway through the listing (a token does not seal the limit, so walk in large pages).
    step = min(1000, size // 40)
    deep = ""
    for _ in range(size // 2 // step):
        deep = dep.page_token(
            f"compartmentId={dep.compartment_id}&limit={step}" + (f"&page={deep}" if deep else "")
        )
    results = []
    for label, query in list_queries(dep):
        query = query.replace("@NAME@", name).replace("@TOKEN2@", token2).replace("@TOKEN@", token)
        script = dep.script(f"/bootVolumeBackups?{query.replace('@DEEP@', deep)}")
        # The median (by p99) of three runs: one stall of a shared machine is not the query's.
        runs = [run_wrk(label, dep.endpoint, script, conns, seconds / 3, dep.work, pid=pid) for _ in range(3)]
        results.append(sorted(runs, key=lambda r: r.p99_ms)[1])
    rep.pages[size] = results


def hostile_requests(port: int, count: int, config: dict[str, Any], endpoint: str) -> dict[str, int]:
    """`count` requests an outsider might send, 20 at a time, over raw sockets; answers by status."""
    fake_auth = (
        'Signature version="1",keyId="ocid1.tenancy.oc1..x/ocid1.user.oc1..y/'
        + ":".join(["ab"] * 16)
        + '",algorithm="rsa-sha256",headers="date (request-target) host",signature="'
        + "A" * 344
        + '"'
    )
    big = b'{"bootVolumeId": "' + b"x" * (8 * MIB) + b'"}'
    signed_big = sign(
        config, endpoint, "POST", API + "/bootVolumeBackups", b'{"displayName": "' + b"y" * 900_000 + b'"}'
    )

    def head(method: str, path: str, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "connection: close"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    kinds: list[tuple[str, Any]] = [
        (
            "unsigned POST, 8 MiB body",
            lambda: head("POST", API + "/bootVolumeBackups", {"content-length": str(len(big))}) + big,
        ),
        (
            "forged signature, declared 50 MiB",
            lambda: (
                head(
                    "POST",
                    API + "/bootVolumeBackups",
                    {"authorization": fake_auth, "date": "x", "content-length": str(50 * MIB)},
                )
                + b"{" * 65536
            ),
        ),
        (
            "garbage header bytes",
            lambda: (
                b"GET / HTTP/1.1\r\n" + bytes(random.randrange(1, 256) for _ in range(4000)) + b"\r\n\r\n"
            ),
        ),
        (
            "40 KiB of headers",
            lambda: head("GET", API + "/bootVolumeBackups", {f"x-h{i}": "v" * 1000 for i in range(40)}),
        ),
        (
            "forged signature, GET",
            lambda: head(
                "GET",
                API + "/bootVolumeBackups/ocid1.x",
                {"authorization": fake_auth, "date": datetime.now(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")},
            ),
        ),
        (
            "signed 0.9 MiB body, bad content",
            lambda: (
                head("POST", signed_big.path, {k: v for k, v in signed_big.headers.items() if k != "host"})
                + signed_big.body
            ),
        ),
        (
            "chunked body, unsigned",
            lambda: (
                head("POST", API + "/bootVolumeBackups", {"transfer-encoding": "chunked"})
                + b"100000\r\n"
                + b"z" * 0x100000
                + b"\r\n0\r\n\r\n"
            ),
        ),
        ("request line of 64 KiB", lambda: b"GET /" + b"a" * 65536 + b" HTTP/1.1\r\n\r\n"),
    ]
    counts: dict[str, int] = {}
    lock = threading.Lock()

    def one(n: int) -> None:
        label, make = kinds[n % len(kinds)]
        payload = make()
        status = "no answer"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
                with contextlib.suppress(OSError):  # answered and closed before the body was sent
                    s.sendall(payload)
                data = b""
                while b"\r\n" not in data:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"HTTP/1.1 "):
                    status = data[9:12].decode()
        except OSError as exc:
            status = type(exc).__name__
        with lock:
            key = f"{label}: {status}"
            counts[key] = counts.get(key, 0) + 1

    with ThreadPoolExecutor(20) as pool:
        list(pool.map(one, range(count)))
    return counts


def bootvault_phase(dep: Deployment, rep: Report, args: argparse.Namespace) -> None:
    s, conns = args.seconds, args.connections
    rep.insert_s[SMALL] = dep.insert_backups(SMALL, 0)
    dep.start(processes=1, workers=1)
    try:
        assert dep.proc is not None
        print("backup start on an idle service", flush=True)
        rep.start_ms = start_latency(dep, args.creates)
        backup_id = dep.first_backup()
        rep.rss_idle_kib = status_kib(dep.proc.pid, "VmRSS")
        print("freshly signed GetBootVolumeBackup, 1 connection", flush=True)
        rep.fresh_ms = fresh_latency(dep, f"/bootVolumeBackups/{backup_id}", args.fresh)
        print(f"  p50 {statistics.median(rep.fresh_ms):.2f} ms, p99 {pct(rep.fresh_ms, 99):.2f} ms")
        print("step costs, in-process", flush=True)
        rep.steps = step_costs(dep, backup_id)
        for name, us in rep.steps:
            print(f"  {us:8.1f} us  {name}")
        print("bootvault serve, 1 process, 1,000 backups", flush=True)
        with RssWatch(dep.proc.pid) as watch:
            for c in conns:
                rep.get.append(
                    run_wrk(
                        "GetBootVolumeBackup",
                        dep.endpoint,
                        dep.script(f"/bootVolumeBackups/{backup_id}"),
                        c,
                        s,
                        dep.work,
                        pid=dep.proc.pid,
                    )
                )
            query = f"/bootVolumeBackups?compartmentId={dep.compartment_id}&limit=25"
            rep.list25.append(
                run_wrk(
                    "ListBootVolumeBackups (25)",
                    dep.endpoint,
                    dep.script(query),
                    50,
                    s,
                    dep.work,
                    pid=dep.proc.pid,
                )
            )
        rep.rss_load_kib = watch.peak_kib
        pages_phase(dep, rep, SMALL, args.page_seconds, args.page_connections)
        print(f"{args.hostile} hostile requests", flush=True)
        with RssWatch(dep.proc.pid) as watch:
            rep.hostile = hostile_requests(dep.port, args.hostile, dep.config, dep.endpoint)
            dep.get(f"/bootVolumeBackups/{backup_id}")  # still serving
        rep.rss_hostile_kib = watch.peak_kib
        for k, v in sorted(rep.hostile.items()):
            print(f"  {v:5d}  {k}")
        print(f"  peak RSS {rep.rss_hostile_kib / 1024:.1f} MiB", flush=True)
        print(f"growing the compartment to {LARGE:,} backups", flush=True)
        rep.insert_s[LARGE] = dep.insert_backups(LARGE - SMALL, SMALL)
        pages_phase(dep, rep, LARGE, args.page_seconds, args.page_connections)
    finally:
        dep.stop()
    for n in args.processes:
        print(f"bootvault serve --processes {n} --workers 0", flush=True)
        dep.start(processes=n, workers=0)
        try:
            assert dep.proc is not None
            query = f"/bootVolumeBackups?compartmentId={dep.compartment_id}&limit=25"
            with RssWatch(dep.proc.pid) as watch:
                get = run_wrk(
                    f"GetBootVolumeBackup, {n} process(es)",
                    dep.endpoint,
                    dep.script(f"/bootVolumeBackups/{backup_id}"),
                    50,
                    s,
                    dep.work,
                    pid=dep.proc.pid,
                )
                list25 = run_wrk(
                    f"ListBootVolumeBackups (25), {n} process(es)",
                    dep.endpoint,
                    dep.script(query),
                    50,
                    s,
                    dep.work,
                    pid=dep.proc.pid,
                )
            rep.processes.append((n, get, list25, watch.peak_kib))
        finally:
            dep.stop()


def baseline_phase(work: Path, rev: str, args: argparse.Namespace) -> Report:
    """GetBootVolumeBackup, the list of 25 and the list pages again, on the code of git revision
    `rev` (the "before"), in a deployment of its own, in the same run."""
    base = Report()
    previous = os.environ.get(SRC_REV_ENV)
    os.environ[SRC_REV_ENV] = rev
    try:
        base.facts["source"] = source_origin()
        snapshot_source(ROOT / "src" / "bootvault", work / "src")
    finally:
        if previous is None:
            del os.environ[SRC_REV_ENV]
        else:
            os.environ[SRC_REV_ENV] = previous
    print(f"baseline: {base.facts['source']}", flush=True)
    dep = Deployment(work / "run", work / "src")
    dep.setup()
    base.insert_s[SMALL] = dep.insert_backups(SMALL, 0)
    dep.start(processes=1, workers=1)
    try:
        path = f"/bootVolumeBackups/{dep.first_backup()}"
        for c in args.connections:
            base.get.append(
                run_wrk(
                    "GetBootVolumeBackup",
                    dep.endpoint,
                    dep.script(path),
                    c,
                    args.seconds,
                    dep.work,
                    pid=dep.proc.pid,
                )
            )
        query = f"/bootVolumeBackups?compartmentId={dep.compartment_id}&limit=25"
        base.list25.append(
            run_wrk(
                "ListBootVolumeBackups (25)",
                dep.endpoint,
                dep.script(query),
                50,
                args.seconds,
                dep.work,
                pid=dep.proc.pid,
            )
        )
        pages_phase(dep, base, SMALL, args.page_seconds, args.page_connections)
        base.insert_s[LARGE] = dep.insert_backups(LARGE - SMALL, SMALL)
        pages_phase(dep, base, LARGE, args.page_seconds, args.page_connections)
    finally:
        dep.stop()
    return base


def render_baseline(base: Report, rep: Report) -> list[str]:
    out = [
        "",
        f"## Before and after, in this run: {base.facts['source']} against this code",
        "",
        "| measurement | before | after |",
        "|---|---|---|",
    ]
    for b, a in zip(base.get + base.list25, rep.get + rep.list25, strict=True):
        out.append(
            f"| {a.label}, {a.connections} connection(s): req/s, p99, server CPU per request"
            f" | {b.rps:,.0f}, {b.p99_ms:.1f} ms, {b.server_us:.0f} µs | {a.rps:,.0f}, {a.p99_ms:.1f} ms,"
            f" {a.server_us:.0f} µs |"
        )
    for size in (SMALL, LARGE):
        for b, a in zip(base.pages[size], rep.pages[size], strict=True):
            out.append(
                f"| list page with {size:,}: {a.label}: p50, p99 | {b.p50_ms:.2f}, {b.p99_ms:.2f} ms"
                f" | {a.p50_ms:.2f}, {a.p99_ms:.2f} ms |"
            )
    return out


def step_costs(dep: Deployment, backup_id: str) -> list[tuple[str, float]]:
    """CPU microseconds of each step of a signed GetBootVolumeBackup (and of a list of 25),
    timed in this process on the deployment's database with the code under test: where a
    request's time goes, without the HTTP server around it."""
    import asyncio
    import contextvars
    import functools
    import logging
    from concurrent.futures import ThreadPoolExecutor

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding
    from starlette.datastructures import Headers

    from bootvault.api import auth, common, errors
    from bootvault.api.shapes import backup_to_wire
    from bootvault.config import Settings
    from bootvault.logs import JsonFormatter
    from bootvault.service import backups as svc
    from bootvault.service import identity
    from bootvault.service.context import Caller, Context

    def timed(fn: Any, n: int) -> float:
        fn()
        t0 = time.process_time()
        for _ in range(n):
            fn()
        return (time.process_time() - t0) * 1e6 / n

    ctx = Context.open(Settings(data_dir=dep.data_dir), migrate=False)
    req = sign(dep.config, dep.endpoint, "GET", f"{API}/bootVolumeBackups/{backup_id}")
    headers = Headers(raw=[(k.encode(), v.encode()) for k, v in req.headers.items()])
    skew = timedelta(seconds=300)
    signed = auth.prepare_request("GET", req.path, headers, None, max_skew=skew)
    kid = signed.key
    found = identity.find_api_key(ctx, kid.tenancy_id, kid.user_id, kid.fingerprint)
    assert found is not None
    key = common._trusted_key(found.public_key_pem)
    assert key is not None
    caller = Caller(kid.tenancy_id, kid.user_id)
    backup = svc.get_backup(ctx, caller, backup_id)
    wire = backup_to_wire(backup)
    page = svc.ListBackups(compartment_id=dep.compartment_id, limit=25)
    items, _ = svc.list_backups(ctx, caller, page)
    record = logging.LogRecord(
        "bootvault.api", logging.INFO, "", 0, "%s %s -> %s", ("GET", req.path, 200), None
    )
    record.__dict__.update(status=200, opcRequestId="X", operation="GetBootVolumeBackup", ms=1.0)
    formatter = JsonFormatter()
    executor = ThreadPoolExecutor(1)

    async def hops(n: int) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(n):
            await loop.run_in_executor(executor, functools.partial(contextvars.copy_context().run, int))

    def hop_cost(n: int = 5000) -> float:
        t0 = time.process_time()
        asyncio.run(hops(n))
        return (time.process_time() - t0) * 1e6 / n

    verify = functools.partial(key.public_key.verify, signed.signature, signed.message)
    steps = [
        (
            "signature: headers, policy, date, signing string (prepare_request)",
            timed(lambda: auth.prepare_request("GET", req.path, headers, None, max_skew=skew), 3000),
        ),
        (
            "signature: RSA verify, when not cached",
            timed(lambda: verify(padding.PKCS1v15(), hashes.SHA256()), 1000),
        ),
        (
            "signature: verified-signature cache hit (check_signature)",
            timed(lambda: auth.check_signature(signed, key), 3000),
        ),
        (
            "API key from the cache",
            timed(lambda: identity.cached_api_key(ctx, kid.tenancy_id, kid.user_id, kid.fingerprint), 3000),
        ),
        (
            "API key from the database",
            timed(lambda: identity.find_api_key(ctx, kid.tenancy_id, kid.user_id, kid.fingerprint), 1000),
        ),
        ("one executor hop (event loop → thread → event loop)", hop_cost()),
        (
            "GetBootVolumeBackup service call (SQLite read, row → record)",
            timed(lambda: svc.get_backup(ctx, caller, backup_id), 2000),
        ),
        ("backup → OCI JSON shape", timed(lambda: backup_to_wire(backup), 3000)),
        ("JSON response (orjson)", timed(lambda: common.json_response(wire, etag="x"), 3000)),
        ("access log line (JSON formatting only)", timed(lambda: formatter.format(record), 3000)),
        ("request id", timed(lambda: errors.request_id(None), 3000)),
        (
            "ListBootVolumeBackups of 25: service call",
            timed(lambda: svc.list_backups(ctx, caller, page), 300),
        ),
        (
            "ListBootVolumeBackups of 25: shapes + JSON",
            timed(lambda: common.json_response([backup_to_wire(b) for b in items]), 300),
        ),
    ]
    executor.shutdown()
    ctx.close()
    return steps


# -- report --------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))]


def verdict(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def render(rep: Report, args: argparse.Namespace, base: Report | None = None) -> str:
    bare_get = next(r for r in rep.bare if r.connections == 50 and "item" in r.label)
    bare_list = next(r for r in rep.bare if "list" in r.label)
    get50 = next(r for r in rep.get if r.connections == 50)
    get1 = next(r for r in rep.get if r.connections == 1)
    list50 = rep.list25[0]
    small, large = rep.pages[SMALL], rep.pages[LARGE]
    small_p99 = max(r.p99_ms for r in small)
    large_p99 = max(r.p99_ms for r in large)
    ratios = [b.p99_ms / max(a.p99_ms, 0.001) for a, b in zip(small, large, strict=True)]
    starts = [a for a, _ in rep.start_ms]
    starts_sent = [b for _, b in rep.start_ms]
    rss_peak = max(rep.rss_load_kib, rep.rss_hostile_kib) / 1024
    cores = os.cpu_count() or 1
    per_core = next(((g, li) for n, g, li, _ in rep.processes if n == cores), (get50, list50))
    get_n, list_n = per_core
    get_ratio, list_ratio = get_n.rps / bare_get.rps, list_n.rps / bare_list.rps
    targets = [
        (
            f"signed GetBootVolumeBackup at 50 connections ≥ {GET_RATIO}x the bare app (one process)",
            f"`--processes {cores}` (one per core): {get_n.rps:,.0f} / {bare_get.rps:,.0f} req/s ="
            f" **{get_ratio:.2f}x**; one process: {get50.rps:,.0f} req/s = {get50.rps / bare_get.rps:.2f}x",
            get_ratio >= GET_RATIO,
        ),
        (
            f"its p99 ≤ {GET_P99_MS:g} ms",
            f"`--processes {cores}`: {get_n.p99_ms:.1f} ms; one process: {get50.p99_ms:.1f} ms",
            get_n.p99_ms <= GET_P99_MS,
        ),
        (
            "no drop in throughput from 1 to 50 connections (one process)",
            f"{get1.rps:,.0f} → {get50.rps:,.0f} req/s",
            get50.rps >= get1.rps,
        ),
        (
            f"signed ListBootVolumeBackups of 25 ≥ {LIST_RATIO}x the bare app's list of 25",
            f"`--processes {cores}`: {list_n.rps:,.0f} / {bare_list.rps:,.0f} req/s = **{list_ratio:.2f}x**"
            f" ({list_n.rps / bare_get.rps:.2f}x the bare app's single item); one process:"
            f" {list50.rps:,.0f} req/s = {list50.rps / bare_list.rps:.2f}x",
            list_ratio >= LIST_RATIO,
        ),
        (
            f"list page p99 with {LARGE:,} backups ≤ {LIST_P99_MS:g} ms (worst of {len(large)} queries)",
            f"{large_p99:.1f} ms",
            large_p99 <= LIST_P99_MS,
        ),
        (
            f"... and no worse than with {SMALL:,} (per query, within the noise: 25 % or 2 ms)",
            f"worst with {SMALL:,}: {small_p99:.1f} ms; p99 ratio {LARGE:,} / {SMALL:,} per query"
            f" {min(ratios):.2f}-{max(ratios):.2f}x",
            all(b.p99_ms <= max(a.p99_ms * 1.25, a.p99_ms + 2.0) for a, b in zip(small, large, strict=True)),
        ),
        (
            f"a backup created on an idle service starts within {START_MS:g} ms",
            f"claimed {statistics.median(starts):+.1f} ms (median), {max(starts):+.1f} ms (max) after"
            f" the create response; at most {max(starts_sent):.1f} ms after the request was sent",
            max(starts) <= START_MS,
        ),
        (
            f"RSS < {RSS_MIB:g} MiB through the 50-connection load and {args.hostile:,} hostile requests",
            f"idle {rep.rss_idle_kib / 1024:.0f} MiB; peak {rep.rss_load_kib / 1024:.0f} MiB under load,"
            f" {rep.rss_hostile_kib / 1024:.0f} MiB through the hostile requests",
            rss_peak < RSS_MIB,
        ),
    ]
    out = [
        "# API speed (`bench/api.py`)",
        "",
        f"Run {rep.started} on a {os.cpu_count()}-vCPU machine; code: {rep.facts['source']}. wrk runs",
        f"{args.seconds:g} s per measurement with one thread on the same machine as the server, so the",
        'two share the 2 cores ("busy" is the whole machine\'s CPU use during a run, out of 2.0).',
        f"{rep.facts['load']}. {rep.facts['quiet']}",
        "",
        "wrk replays one signed request for a whole run (a signature is good for the five-minute",
        "date skew, which is still checked on every request). The server recognises a",
        "(key, signing string, signature) it has verified and skips the RSA arithmetic for it; a real",
        "client signs every request, which the freshly-signed row below measures.",
        "",
        "## Targets (issue 8)",
        "",
        "| target | measured | |",
        "|---|---|---|",
        *[f"| {name} | {value} | {verdict(ok)} |" for name, value, ok in targets],
        "",
        "## Throughput and latency",
        "",
        "| server | request | connections | req/s | p50 ms | p90 ms | p99 ms | max ms | server CPU µs/request"
        " | busy CPUs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for server, rows in (("bare Starlette", rep.bare), ("bootvault", rep.get + rep.list25)):
        for r in rows:
            out.append(
                f"| {server} | {r.label} | {r.connections} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p90_ms:.2f}"
                f" | {r.p99_ms:.2f} | {r.max_ms:.1f} | {r.server_us:.0f} | {r.busy_cpus:.2f} |"
            )
    out += [
        "",
        f"Freshly signed GetBootVolumeBackup, one at a time over one connection ({len(rep.fresh_ms)}"
        f" requests, each with a signature of its own): p50 {statistics.median(rep.fresh_ms):.2f} ms,"
        f" p99 {pct(rep.fresh_ms, 99):.2f} ms, max {max(rep.fresh_ms):.2f} ms.",
        "",
        "## Where a request's CPU goes",
        "",
        "Each step timed on its own in the bench process (CPU time per call in a tight loop, the code"
        " under test, this run's database). A loop keeps the interpreter's caches warm: inside the"
        " server, between all the other steps, the same code costs more, so the server's CPU per"
        " request above is well above the sum of these plus the HTTP server (the bare app's"
        " column).",
        "",
        "| step | µs |",
        "|---|---|",
        *[f"| {name} | {us:.1f} |" for name, us in rep.steps],
        "",
        f"## List pages: {SMALL:,} and {LARGE:,} backups in one compartment",
        "",
        f"limit=25, {args.page_connections} connection(s); each query runs three times for"
        f" {args.page_seconds / 3:.3g} s and the run with the median p99 is shown. The rows"
        f" are inserted through the store's table ({SMALL:,} in {rep.insert_s[SMALL]:.1f} s, then"
        f" {LARGE - SMALL:,} more in {rep.insert_s[LARGE]:.1f} s), spread over {VOLUMES} volumes,"
        " states drawn at random: 80 % AVAILABLE, 10 % TERMINATED, 10 % FAULTY.",
        "",
        f"| query | {SMALL:,}: req/s | p50 ms | p99 ms | {LARGE:,}: req/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b in zip(small, large, strict=True):
        out.append(
            f"| {a.label} | {a.rps:,.0f} | {a.p50_ms:.2f} | {a.p99_ms:.2f}"
            f" | {b.rps:,.0f} | {b.p50_ms:.2f} | {b.p99_ms:.2f} |"
        )
    out += [
        "",
        "## API processes (`serve --processes N --workers 0`), 50 connections",
        "",
        "| processes | request | req/s | p50 ms | p99 ms | server CPU µs/request | busy CPUs"
        " | peak RSS of one process MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, get, list25, rss in rep.processes:
        for r in (get, list25):
            out.append(
                f"| {n} | {r.label.split(',')[0]} | {r.rps:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f}"
                f" | {r.server_us:.0f} | {r.busy_cpus:.2f} | {rss / 1024:.0f} |"
            )
    out += [
        "",
        f"## Backup start on an idle service ({len(rep.start_ms)} creates, 1 s apart)",
        "",
        "Each create waits until the previous backup is AVAILABLE and the worker has slept for a",
        "second. The claim time is the job's `time_started`; negative means the worker claimed the",
        "job before the create response reached the client.",
        "",
        "| | after the response, ms | after sending the request, ms |",
        "|---|---|---|",
        f"| median | {statistics.median(starts):+.1f} | {statistics.median(starts_sent):.1f} |",
        f"| max | {max(starts):+.1f} | {max(starts_sent):.1f} |",
        "",
        f"## Hostile requests ({args.hostile:,}, 20 at a time over raw sockets): answers",
        "",
        "| request: answer | count |",
        "|---|---|",
    ]
    out += [f"| {k} | {v} |" for k, v in sorted(rep.hostile.items())]
    if base is not None:
        out += render_baseline(base, rep)
    out += ["", rep.facts.get("notes", ""), ""]
    return "\n".join(out)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10, help="length of each throughput run")
    p.add_argument("--connections", type=lambda v: [int(x) for x in v.split(",")], default=[1, 10, 50])
    p.add_argument("--page-seconds", type=float, default=6, help="per query, split over 3 runs")
    p.add_argument("--page-connections", type=int, default=1)
    p.add_argument("--processes", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4])
    p.add_argument("--creates", type=int, default=10)
    p.add_argument("--hostile", type=int, default=1000)
    p.add_argument("--fresh", type=int, default=500, help="freshly signed requests, one at a time")
    p.add_argument("--out", type=Path, help="results file (default bench/RESULTS-api.md)")
    p.add_argument("--baseline", metavar="REV", help="also measure the code of this git revision (before)")
    p.add_argument("--quiet-wait", type=float, default=120, help="max seconds to wait for a quiet machine")
    return p.parse_args()


def wait_for_quiet(max_wait: float) -> str:
    """Wait (up to max_wait) until other processes use less than half a CPU over 3 s."""
    start = time.monotonic()
    while True:
        before = machine_busy_cpu()
        time.sleep(3)
        busy = (machine_busy_cpu() - before) / 3
        if busy < 0.5:
            return f"Other load at the start: {busy:.2f} CPUs (waited {time.monotonic() - start:.0f} s)."
        if time.monotonic() - start > max_wait:
            return f"The machine never got quiet: {busy:.2f} CPUs busy at the start after {max_wait:.0f} s."


@contextmanager
def deployment(work: Path) -> Iterator[Deployment]:
    src_digest = snapshot_source(ROOT / "src" / "bootvault", work / "src")
    dep = Deployment(work / "run", work / "src")
    dep.src_digest = src_digest  # type: ignore[attr-defined]
    try:
        yield dep
    finally:
        dep.stop()


def main() -> None:
    args = parse_args()
    if not Path(WRK).exists():
        raise SystemExit("wrk is missing: apt-get install wrk (make system-packages)")
    work = BENCH / "work" / "api"
    rep = Report(started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    rep.facts["quiet"] = wait_for_quiet(args.quiet_wait)
    rep.facts["load"] = "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min)"
    rep.facts["source"] = source_origin()
    print(rep.facts["quiet"], rep.facts["load"], flush=True)
    with deployment(work) as dep:
        (work / "run").mkdir(parents=True, exist_ok=True)
        dep.setup()
        bare_phase(dep.work, rep, args.seconds, args.connections)
        bootvault_phase(dep, rep, args)
    base = baseline_phase(BENCH / "work" / "api-baseline", args.baseline, args) if args.baseline else None
    rep.facts["notes"] = f"Load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}." + (
        f" Code from ${SRC_REV_ENV}." if os.environ.get(SRC_REV_ENV) else ""
    )
    text = render(rep, args, base)
    out = args.out or BENCH / "RESULTS-api.md"
    out.write_text(text)
    (work / "results.json").write_text(
        json.dumps(
            {
                k: v
                for k, v in rep.__dict__.items()
                if k not in ("bare", "get", "list25", "pages", "processes")
            }
            | {"runs": [r.as_dict() for r in rep.bare + rep.get + rep.list25]},
            indent=1,
            default=str,
        )
    )
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
