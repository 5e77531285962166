"""Measurements of bench/api.py beyond wrk's throughput: freshly signed requests one at a time,
backup start latency on an idle service, list pages, hostile requests over raw sockets, and the
cost of each step of a request timed in-process."""

from __future__ import annotations

import contextlib
import random
import socket
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import oci
from apireport import Report
from apirig import API, MIB, Deployment, run_wrk, sign
from measure import BenchError
from oci._vendor import requests as oci_requests
from oci.core.models import CreateBootVolumeBackupDetails


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
