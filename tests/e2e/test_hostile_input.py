"""Hostile input, as an outsider sends it (issue 8): bodies that are never read before the
signature is checked, slow clients, text that cannot be stored, absurd JSON, NUL bytes, forged page
tokens, repeated signed headers, a redirect built from the Host header, sizes at the limits, quotas,
and the admin CLI's files and exit codes. Each answer is a clear 4xx in OCI's error shape, nothing
is stored, and the compartment still lists, on SQLite and on PostgreSQL."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.dbs import pg_schema_url
from tests.helpers import BIN, MIB, Deployment, Tenant, make_image, wait_state
from tests.rawhttp import RawClient, RawResponse

pytestmark = pytest.mark.slow(4.5)

API = "/20160918"
AD = "bootvault:AD-1"


@dataclass
class Live:
    dep: Deployment
    tenant: Tenant
    client: RawClient
    volume: str
    backup: str

    @property
    def compartment(self) -> str:
        return self.tenant.tenancy_id

    def sdk(self) -> oci.core.BlockstorageClient:
        return self.tenant.client(retry_strategy=oci.retry.NoneRetryStrategy())  # a 500 fails at once

    def backups(self) -> list[Any]:
        return oci.pagination.list_call_get_all_results(
            self.sdk().list_boot_volume_backups, compartment_id=self.compartment
        ).data

    def volumes(self) -> list[Any]:
        return oci.pagination.list_call_get_all_results(
            self.sdk().list_boot_volumes, compartment_id=self.compartment
        ).data


@contextmanager
def live(root: Path, kind: str = "sqlite", env: dict[str, str] | None = None) -> Iterator[Live]:
    """A server with a tenant, a 4 MiB volume and one AVAILABLE backup of it."""
    with ExitStack() as stack:
        dep = Deployment(root)
        dep.env.update(env or {})
        if kind == "postgresql":
            dep.env["BOOTVAULT_DATABASE_URL"] = stack.enter_context(pg_schema_url())
        dep.start()
        stack.callback(dep.stop)
        tenant = dep.new_tenant("hostile")
        image = root / "disk.img"
        make_image(image, 4 * MIB)
        volume = dep.import_volume(tenant, image)
        sdk = tenant.client(retry_strategy=oci.retry.NoneRetryStrategy())
        backup = sdk.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume)).data
        wait_state(sdk, "get_boot_volume_backup", backup.id, "AVAILABLE")
        yield Live(dep, tenant, RawClient(tenant), volume, backup.id)
        log = (root / "server.log").read_text(errors="replace").splitlines()
        unhandled = [line for line in log if '"unhandled error"' in line or "Exception in ASGI" in line]
        assert not unhandled, "\n".join(unhandled[:3])[-4000:]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with live(tmp_path_factory.mktemp(f"hostile-{request.param}"), request.param) as srv:
        yield srv


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    """SQLite, with one-second deadlines for headers and bodies."""
    env = {"BOOTVAULT_HEADER_TIMEOUT_SECONDS": "1", "BOOTVAULT_BODY_TIMEOUT_SECONDS": "1"}
    with live(tmp_path_factory.mktemp("hostile-limits"), env=env) as srv:
        yield srv


def assert_error(resp: RawResponse, status: int, code: str | None = None) -> dict[str, Any]:
    assert resp.status == status, (resp.status, resp.body[:500])
    doc = resp.json()
    assert set(doc) == {"code", "message"}, doc
    assert resp.headers["content-type"].startswith("application/json")
    if code is not None:
        assert doc["code"] == code, doc
    return doc


def _vm(pid: int, field: str) -> int:
    """A /proc/<pid>/status memory figure, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def _connect(srv: Live, timeout: float = 15.0) -> socket.socket:
    return socket.create_connection((srv.client.host, srv.client.port), timeout=timeout)


def _read_answer(sock: socket.socket, method: str = "POST") -> RawResponse:
    import http.client

    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())


# --------------------------------------------------------------------------------------------------
# 1. bodies are read only after the headers authenticate, bounded in size and time


def _unsigned_upload(srv: Live, size: int) -> RawResponse:
    """POST `size` bytes without a signature, as fast as the server takes them; the answer is
    read while the body is still going out."""
    sock = _connect(srv)
    head = (
        f"POST {API}/bootVolumeBackups HTTP/1.1\r\nhost: {srv.client.host}:{srv.client.port}\r\n"
        f"content-type: application/json\r\ncontent-length: {size}\r\n\r\n"
    ).encode()
    sent = [0]

    def push() -> None:
        chunk = b"x" * MIB
        try:
            sock.sendall(head)
            while sent[0] < size:
                sock.sendall(chunk)
                sent[0] += len(chunk)
        except OSError:
            pass  # the server closed the connection: what we want

    sender = threading.Thread(target=push)
    sender.start()
    try:
        return _read_answer(sock)
    finally:
        sender.join(timeout=60)
        sock.close()


def test_unsigned_50mib_posts_are_refused_unread(limited: Live) -> None:
    """Four unsigned 50 MiB POSTs at once: each is answered 401 at once, and the server's memory
    does not grow by what they sent (it grew by the body size, and stayed there, when bodies were
    read before the signature was checked)."""
    pid = limited.dep.proc.pid  # type: ignore[union-attr]
    rss, peak = _vm(pid, "VmRSS"), _vm(pid, "VmHWM")
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: _unsigned_upload(limited, 50 * MIB), range(4)))
    grown, peak_grown = _vm(pid, "VmRSS") - rss, _vm(pid, "VmHWM") - peak
    assert grown < 20 * MIB, f"RSS grew by {grown / MIB:.0f} MiB"
    assert peak_grown < 40 * MIB, f"peak RSS grew by {peak_grown / MIB:.0f} MiB for 200 MiB sent"
    for resp in answers:
        assert_error(resp, 401, "NotAuthenticated")
        assert resp.headers.get("connection") == "close"  # the rest of the body is not read
    assert limited.sdk().get_boot_volume(limited.volume).data.id == limited.volume


def test_signed_body_over_the_limit_is_413(limited: Live) -> None:
    big = json.dumps({"bootVolumeId": limited.volume, "displayName": "x" * (2 * MIB)}).encode()
    resp = limited.client.request("POST", f"{API}/bootVolumeBackups", big)
    doc = assert_error(resp, 413, "LimitExceeded")
    assert "larger than" in doc["message"]
    assert all(b.display_name != "x" * (2 * MIB) for b in limited.backups())


def test_headers_and_a_large_body_in_one_segment_are_not_taken_for_large_headers(limited: Live) -> None:
    """A client that writes its headers and a 200 KB body at once is answered on the body's merits
    (the header cap counts only what comes before the end of the headers)."""
    body = json.dumps({"bootVolumeId": limited.volume, "displayName": "y" * 200_000}).encode()
    resp = limited.client.request("POST", f"{API}/bootVolumeBackups", body)
    doc = assert_error(resp, 400, "InvalidParameter")
    assert "displayName" in doc["message"]


@pytest.mark.parametrize("piece", [None, 4096], ids=["one segment", "in pieces"])
@pytest.mark.parametrize("shape", ["one big header", "many headers", "long URL"])
def test_oversized_headers_are_431(limited: Live, piece: int | None, shape: str) -> None:
    """Headers over 32 KiB are refused before any handler runs, however they are cut into
    segments, with or without a body behind them."""
    head = {
        "one big header": b"GET /20160918/bootVolumes HTTP/1.1\r\nx-big: " + b"a" * 40_000 + b"\r\n",
        "many headers": b"GET /20160918/bootVolumes HTTP/1.1\r\n" + b"x-h: aaaaaaaaaa\r\n" * 3000,
        "long URL": b"GET /20160918/bootVolumes?displayName=" + b"a" * 40_000 + b" HTTP/1.1\r\n",
    }[shape]
    raw = head + b"host: x\r\ncontent-length: 2\r\n\r\n{}"
    sock = _connect(limited)
    try:
        for start in range(0, len(raw), piece or len(raw)):
            sock.sendall(raw[start : start + (piece or len(raw))])
    except OSError:
        pass  # refused before we finished sending
    resp = _read_answer(sock, "GET")
    sock.close()
    assert_error(resp, 431, "LimitExceeded")


def _dribble_headers(sock: socket.socket) -> tuple[float, bytes]:
    """Send a request line, then a header one byte every 0.1 s (for at most 8 s), and close the
    socket: the seconds until the server closed the connection or answered, and its answer."""
    started = time.monotonic()
    sock.sendall(f"GET {API}/bootVolumes HTTP/1.1\r\n".encode())
    closed_after = None
    try:
        for byte in b"x-slow: " + b"a" * 100:
            sock.sendall(bytes([byte]))
            time.sleep(0.1)
            if time.monotonic() - started > 8:
                break
    except OSError:
        closed_after = time.monotonic() - started
    sock.settimeout(5)
    try:
        answer = sock.recv(65536)
    except OSError:
        answer = b""
    closed_after = closed_after or time.monotonic() - started
    sock.close()
    return closed_after, answer


def test_slow_headers_are_cut_off(limited: Live) -> None:
    """Headers dribbled out one byte at a time are answered 408 (or the connection is closed)
    within the header deadline of one second."""
    sock = _connect(limited, timeout=10)
    closed_after, answer = _dribble_headers(sock)
    assert closed_after < 4, f"the connection was still open after {closed_after:.1f} s"
    if answer:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
        assert b'"code": "RequestTimeout"' in answer, answer


def test_slow_headers_of_a_later_request_on_the_connection_are_cut_off(limited: Live) -> None:
    """The deadline holds for every request of a kept-alive connection, not only its first."""
    sock = _connect(limited, timeout=10)
    sock.sendall(f"GET {API}/bootVolumes HTTP/1.1\r\nhost: x\r\n\r\n".encode())
    first = sock.recv(65536)
    while b"\r\n\r\n" not in first:
        first += sock.recv(65536)
    length = int(first.lower().split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(first.split(b"\r\n\r\n", 1)[1]) < length:  # the body may come in a later segment
        first += sock.recv(65536)
    assert first.startswith(b"HTTP/1.1 401 ") and b"connection: close" not in first.lower(), first[:300]
    closed_after, answer = _dribble_headers(sock)
    assert closed_after < 4, f"the connection was still open after {closed_after:.1f} s"
    if answer:
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]


def test_slow_body_is_408(limited: Live) -> None:
    body = json.dumps({"bootVolumeId": limited.volume, "displayName": "slow"}).encode()
    target = f"{API}/bootVolumeBackups"
    headers = limited.client.signed_headers("POST", target, body)
    sock = _connect(limited, timeout=10)
    head = f"POST {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    started = time.monotonic()
    sock.sendall(head.encode() + body[:10])  # and the rest never comes
    resp = _read_answer(sock)
    took = time.monotonic() - started
    sock.close()
    assert_error(resp, 408, "RequestTimeout")
    assert took < 4, took
    assert all(b.display_name != "slow" for b in limited.backups())


# --------------------------------------------------------------------------------------------------
# 3. / 4. text that cannot be stored, absurd JSON, NUL bytes, forged page tokens: 400, nothing stored


SURROGATE_BODIES = [
    ("POST", "/bootVolumeBackups", {"freeformTags": {"a": "\ud800"}}),
    ("POST", "/bootVolumeBackups", {"freeformTags": {"\udfff": "a"}}),
    ("POST", "/bootVolumeBackups", {"definedTags": {"ns": {"k": "x\ud83d"}}}),
    ("POST", "/bootVolumeBackups", {"displayName": "name\ud800"}),
    ("PUT", "/bootVolumes/{volume}", {"displayName": "\udfff"}),
    ("PUT", "/bootVolumes/{volume}", {"freeformTags": {"a": "\ud800"}}),
    ("PUT", "/bootVolumeBackups/{backup}", {"displayName": "\ud800"}),
    ("PUT", "/bootVolumeBackups/{backup}", {"definedTags": {"\ud800": {"k": "v"}}}),
    ("POST", "/bootVolumes", {"displayName": "\ud800"}),
    ("POST", "/bootVolumes", {"freeformTags": {"k": "\udfff"}}),
]


def _fill(srv: Live, method: str, path: str, extra: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The request with the fixture's ids in the path and a body that is otherwise valid."""
    path = path.format(volume=srv.volume, backup=srv.backup)
    base: dict[str, Any] = {}
    if (method, path) == ("POST", "/bootVolumeBackups"):
        base = {"bootVolumeId": srv.volume}
    elif (method, path) == ("POST", "/bootVolumes"):
        base = {
            "compartmentId": srv.compartment,
            "availabilityDomain": AD,
            "sourceDetails": {"type": "bootVolumeBackup", "id": srv.backup},
        }
    return path, {**base, **extra}


def _state(srv: Live) -> tuple[list[tuple[str, str, Any]], list[tuple[str, str, Any]]]:
    """What is stored: every backup and volume with its name and tags (read through the SDK)."""
    backups = [(b.id, b.display_name, b.freeform_tags) for b in srv.backups()]
    volumes = [(v.id, v.display_name, v.freeform_tags) for v in srv.volumes()]
    return sorted(backups), sorted(volumes)


@pytest.mark.parametrize(("method", "path", "extra"), SURROGATE_BODIES)
def test_lone_surrogates_are_refused_and_nothing_is_stored(
    server: Live, method: str, path: str, extra: dict[str, Any]
) -> None:
    before = _state(server)
    target, body = _fill(server, method, path, extra)
    doc = assert_error(server.client.call(method, target, body), 400, "InvalidParameter")
    assert "Unicode" in doc["message"]
    assert _state(server) == before  # and both lists still work


def test_a_surrogate_encoded_as_utf8_bytes_is_refused(server: Live) -> None:
    """The same surrogate as the raw bytes ED A0 80 (invalid UTF-8 that Python's JSON decoder
    passes through), in a value and in a key (the message quotes the key without failing)."""
    before = _state(server)
    for raw in (
        b'{"bootVolumeId": "%s", "displayName": "\xed\xa0\x80"}',
        b'{"bootVolumeId": "%s", "definedTags": {"\xed\xa0\x80": {"k": "v"}}}',
    ):
        resp = server.client.request("POST", f"{API}/bootVolumeBackups", raw % server.volume.encode())
        assert resp.status == 400 and resp.json()["code"] in ("InvalidParameter", "CannotParseRequest")
    assert _state(server) == before


@pytest.mark.parametrize(
    "raw",
    [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000],
    ids=["arrays", "objects"],
)
def test_json_nested_10k_deep_is_400(server: Live, raw: bytes) -> None:
    for method, path in (("POST", "/bootVolumeBackups"), ("PUT", f"/bootVolumes/{server.volume}")):
        assert_error(server.client.request(method, API + path, raw), 400, "CannotParseRequest")


def test_integers_over_4300_digits_are_400(server: Live) -> None:
    before = _state(server)
    huge = b"9" * 4301
    for method, path, raw in (
        ("PUT", f"/bootVolumes/{server.volume}", b'{"sizeInGBs": ' + huge + b"}"),
        ("POST", "/bootVolumeBackups", b'{"bootVolumeId": "x", "freeformTags": {"a": ' + huge + b"}}"),
        ("POST", "/bootVolumes", b'{"vpusPerGB": -' + huge + b"}"),
    ):
        assert_error(server.client.request(method, API + path, raw), 400, "CannotParseRequest")
    assert_error(server.client.call("PUT", f"/bootVolumes/{server.volume}", {"sizeInGBs": 10**4000}), 400)
    assert _state(server) == before


NUL_BODIES = [
    ("POST", "/bootVolumeBackups", {"displayName": "a\x00b"}),
    ("POST", "/bootVolumeBackups", {"freeformTags": {"k\x00": "v"}}),
    ("POST", "/bootVolumeBackups", {"freeformTags": {"k": "\x00"}}),
    ("POST", "/bootVolumeBackups", {"bootVolumeId": "ocid1.bootvolume\x00"}),
    ("POST", "/bootVolumeBackups", {"kmsKeyId": "\x00"}),
    ("PUT", "/bootVolumes/{volume}", {"displayName": "\x00"}),
    ("PUT", "/bootVolumeBackups/{backup}", {"definedTags": {"ns": {"k": "v\x00"}}}),
    ("POST", "/bootVolumes", {"availabilityDomain": "bootvault:AD-1\x00"}),
    ("POST", "/bootVolumes", {"compartmentId": "\x00"}),
    ("POST", "/bootVolumes", {"sourceDetails": {"type": "bootVolumeBackup", "id": "x\x00"}}),
    ("POST", "/bootVolumes/{volume}/actions/changeCompartment", {"compartmentId": "c\x00"}),
    ("POST", "/bootVolumeBackups/{backup}/actions/changeCompartment", {"compartmentId": "\x00"}),
]


@pytest.mark.parametrize(("method", "path", "extra"), NUL_BODIES)
def test_nul_in_names_and_body_ids_is_400(
    server: Live, method: str, path: str, extra: dict[str, Any]
) -> None:
    before = _state(server)
    target, body = _fill(server, method, path, extra)
    doc = assert_error(server.client.call(method, target, body), 400, "InvalidParameter")
    assert "NUL" in doc["message"]
    assert _state(server) == before


def test_nul_in_path_ids_and_query_values_is_400(server: Live) -> None:
    before = _state(server)
    c, comp = server.client, server.compartment
    for method, target in (
        ("GET", f"/bootVolumes/{server.volume}%00"),
        ("GET", "/bootVolumeBackups/%00"),
        ("PUT", f"/bootVolumes/{server.volume}%00x"),
        ("DELETE", f"/bootVolumeBackups/{server.backup}%00"),
        ("DELETE", "/bootVolumes/%00"),
        ("GET", f"/bootVolumes?compartmentId={comp}%00"),
        ("GET", f"/bootVolumes?compartmentId={comp}&availabilityDomain=%00"),
        ("GET", f"/bootVolumes?compartmentId={comp}&page=%00"),
        ("GET", f"/bootVolumeBackups?compartmentId=%00{comp}"),
        ("GET", f"/bootVolumeBackups?compartmentId={comp}&displayName=a%00b"),
        ("GET", f"/bootVolumeBackups?compartmentId={comp}&bootVolumeId=%00"),
        ("GET", f"/bootVolumeBackups?compartmentId={comp}&sourceBootVolumeBackupId=x%00"),
        ("GET", f"/bootVolumeBackups?compartmentId={comp}&lifecycleState=AVAILABLE%00"),
        ("GET", f"/bootVolumeBackups?compartmentId={comp}&sortBy=%00"),
        ("GET", f"/bootVolumeBackups?compartmentId={comp}&limit=1%00"),
    ):
        body = b"{}" if method == "PUT" else None
        assert_error(c.request(method, API + target, body), 400, "InvalidParameter")
    assert _state(server) == before


def _token(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


FORGED_PAGES = {
    "naive time": _token(["2020-01-01T00:00:00", "x"]),
    "a date only": _token(["2020-01-01", "x"]),
    "year 1 east of UTC": _token(["0001-01-01T00:00:00+14:00", "x"]),
    "year 9999 west of UTC": _token(["9999-12-31T23:59:59-14:00", "x"]),
    "NUL in the id": _token(["2020-01-01T00:00:00+00:00", "x\x00"]),
    "surrogate in the id": _token(["2020-01-01T00:00:00+00:00", "x\ud800"]),
    "surrogate in the value": _token(["\ud800", "x"]),
    "NUL in the value": _token(["a\x00", "x"]),
    "a number": _token([1e308, "x"]),
    "a list": _token([[1], "x"]),
    "three items": _token(["2020-01-01T00:00:00+00:00", "x", 3]),
    "a long value": _token(["a" * 5000, "x"]),
    "deep nesting": base64.urlsafe_b64encode(b"[" * 20_000).decode(),
    "not base64": "%%%",
    "not JSON": base64.urlsafe_b64encode(b"\xff\xfe").decode(),
}


@pytest.mark.parametrize("kind", list(FORGED_PAGES))
def test_forged_page_tokens_are_400(server: Live, kind: str) -> None:
    """Tokens this service never issues: 400 InvalidParameter, never a 500 from the database or
    the date arithmetic."""
    page, comp = FORGED_PAGES[kind], server.compartment
    queries = [
        f"/bootVolumes?compartmentId={comp}&page={page}",
        f"/bootVolumeBackups?compartmentId={comp}&page={page}",
        f"/bootVolumeBackups?compartmentId={comp}&sortBy=TIMECREATED&sortOrder=ASC&page={page}",
        f"/bootVolumeBackups?compartmentId={comp}&sortBy=DISPLAYNAME&page={page}",
    ]
    for query in queries:
        doc = assert_error(server.client.request("GET", API + query), 400, "InvalidParameter")
        assert "page" in doc["message"]


def test_real_page_tokens_still_page(server: Live) -> None:
    """The stricter check refuses nothing the service issues (both sort orders, both sorts)."""
    sdk = server.sdk()
    for _ in range(2):
        b = sdk.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=server.volume)).data
        wait_state(sdk, "get_boot_volume_backup", b.id, "AVAILABLE")
    everything = {b.id for b in server.backups()}
    for sort_by in ("TIMECREATED", "DISPLAYNAME"):
        for order in ("ASC", "DESC"):
            paged = oci.pagination.list_call_get_all_results(
                sdk.list_boot_volume_backups,
                compartment_id=server.compartment,
                sort_by=sort_by,
                sort_order=order,
                limit=1,
            ).data
            assert [b.id for b in paged] and {b.id for b in paged} == everything


# --------------------------------------------------------------------------------------------------
# 5. sizes at the limits


def test_growing_a_volume_to_32768_gb_works(limited: Live) -> None:
    sdk = limited.sdk()
    image = limited.dep.root / "grow.img"
    make_image(image, 2 * MIB, seed=3)
    volume = limited.dep.import_volume(limited.tenant, image, "grow")
    resp = limited.client.call("PUT", f"/bootVolumes/{volume}", {"sizeInGBs": 32768})
    assert resp.status == 200, resp.body
    grown = wait_state(sdk, "get_boot_volume", volume, "AVAILABLE").data
    assert grown.size_in_gbs == 32768, grown.system_tags
    over = limited.client.call("PUT", f"/bootVolumes/{volume}", {"sizeInGBs": 32769})
    assert "32768" in assert_error(over, 400, "InvalidParameter")["message"]
    assert sdk.delete_boot_volume(volume).status in (202, 204)


def _restore(srv: Live, backup_id: str, size_in_gbs: int | None = None, hydrated: bool = False) -> Any:
    """Restore the backup into a new volume; wait until it is AVAILABLE (and hydrated, if asked)
    or FAULTY."""
    sdk = srv.sdk()
    details = CreateBootVolumeDetails(
        compartment_id=srv.compartment,
        availability_domain=AD,
        size_in_gbs=size_in_gbs,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    vol = sdk.create_boot_volume(details).data
    return oci.wait_until(
        sdk,
        sdk.get_boot_volume(vol.id),
        evaluate_response=lambda r: (
            r.data.lifecycle_state == "FAULTY"
            or (r.data.lifecycle_state == "AVAILABLE" and (r.data.is_hydrated or not hydrated))
        ),
        max_wait_seconds=180,
        max_interval_seconds=1,
    ).data


def test_a_restore_at_20000_gb_becomes_available(limited: Live) -> None:
    """A small backup restored into a 20,000 GB volume is AVAILABLE (it went FAULTY: qemu-io
    refused to mark the 19,999 GB beyond the backup's end as zeros in one write), and thin: that
    space is neither fetched nor described cluster by cluster."""
    done = _restore(limited, limited.backup, 20000)
    try:
        assert done.lifecycle_state == "AVAILABLE", done.system_tags
        assert done.size_in_gbs == 20000
        assert limited.dep.volume_size(done.id) == 20000 << 30
        assert limited.dep.volume_path(done.id).stat().st_blocks * 512 < 64 * MIB
    finally:
        limited.sdk().delete_boot_volume(done.id)  # its hydration walks 20,000 GB: stop it


def test_a_backup_with_holes_over_2_gib_restores(limited: Live) -> None:
    """A sparse 5 GiB volume (data at both ends, a hole of 5 GiB - 2 MiB between) restores bit for
    bit and hydrates: the hole is marked zero in pieces qemu-io takes."""
    sdk, gib = limited.sdk(), 1 << 30
    image = limited.dep.root / "sparse.img"
    head, tail = os.urandom(MIB), os.urandom(MIB)
    with open(image, "wb") as fh:
        fh.write(head)
        fh.seek(5 * gib - MIB)
        fh.write(tail)
    volume = limited.dep.import_volume(limited.tenant, image, "sparse")
    image.unlink()
    backup = sdk.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume)).data
    wait_state(sdk, "get_boot_volume_backup", backup.id, "AVAILABLE")
    done = _restore(limited, backup.id, hydrated=True)
    assert (done.lifecycle_state, done.is_hydrated) == ("AVAILABLE", True), done.system_tags
    with limited.dep.exported(done.id) as raw, open(raw, "rb") as fh:
        assert fh.read(MIB) == head
        fh.seek(3 * gib)
        assert fh.read(MIB) == bytes(MIB)
        fh.seek(5 * gib - MIB)
        assert fh.read(MIB) == tail
    for ident in (done.id, volume):
        sdk.delete_boot_volume(ident)


def _admin(dep: Deployment, *args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "bootvault"), *args],
        env={**dep.env, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )


def _qcow2_40t(tmp: Path) -> Path:
    path = tmp / "huge.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "40T"], check=True)
    return path


def _raw_40t(tmp: Path) -> Path:
    """`truncate -s 40T` needs a filesystem that takes such a file: ext4 stops at 16 TiB, tmpfs
    does not."""
    for directory in (tmp, Path("/dev/shm")):
        path = directory / f"huge-{os.getpid()}.img"
        if subprocess.run(["truncate", "-s", "40T", str(path)], capture_output=True).returncode == 0:
            return path
    pytest.skip("no filesystem here holds a 40 TiB sparse file")


@pytest.mark.parametrize("make", [_raw_40t, _qcow2_40t], ids=["raw", "qcow2"])
def test_importing_a_40_tib_image_is_a_clear_refusal(limited: Live, tmp_path: Path, make: Any) -> None:
    image = make(tmp_path)
    try:
        before = _state(limited)
        run = _admin(limited.dep, "volume", "import", "--compartment", limited.compartment, str(image))
    finally:
        image.unlink()
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr
    message = " ".join(run.stderr.split())
    assert "needs 40960 GB" in message and "at most 32768 GB" in message, message
    assert _state(limited) == before


# --------------------------------------------------------------------------------------------------
# 7. / 8. private files, repeated signed headers, no redirect from the Host header, quotas, exit codes


def test_data_dir_and_database_are_private_whatever_the_umask(tmp_path: Path) -> None:
    dep = Deployment(tmp_path)
    run = _admin(dep, "tenancy", "create", "--name", "t", "--oci-config", str(tmp_path / "c"), umask=0)
    assert run.returncode == 0, run.stderr
    data = dep.data_dir
    assert data.stat().st_mode & 0o777 == 0o700
    files = [data / "bootvault.db", *[data / f"bootvault.db{s}" for s in ("-wal", "-shm")]]
    for path in files:
        if path.exists():
            assert path.stat().st_mode & 0o777 == 0o600, path
    assert (data / "keys").stat().st_mode & 0o777 == 0o700
    for key in (data / "keys").iterdir():
        assert key.stat().st_mode & 0o777 == 0o600, key


def test_verify_of_an_unknown_backup_fails(limited: Live) -> None:
    run = _admin(limited.dep, "verify", "--backup", "ocid1.bootvolumebackup.oc1.local-1.nosuchbackup")
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "not found" in run.stderr and "Traceback" not in run.stderr


SIGNED = ["date", "host", "x-content-sha256", "content-type"]


@pytest.mark.parametrize("name", [*SIGNED, "content-length"])
@pytest.mark.parametrize("same", [True, False], ids=["same value", "another value"])
def test_repeated_signed_headers_are_refused(limited: Live, name: str, same: bool) -> None:
    """A signed header sent twice is refused, whichever copy the signature covers: the verifier
    and the handler must never read different values."""
    target = f"{API}/bootVolumeBackups"
    body = json.dumps({"bootVolumeId": limited.volume, "displayName": f"dup-{name}-{same}"}).encode()
    hdrs = limited.client.signed_headers("POST", target, body)
    value = hdrs[name] if same else {"content-length": "0", "content-type": "text/plain"}.get(name, "other")
    for extra_first in (False, True):
        head = [(name, value)] if extra_first else []
        rest = [(k, v) for k, v in hdrs.items()] + ([] if extra_first else [(name, value)])
        resp = _send_raw(limited, "POST", target, head + rest, body)
        assert resp.status in (400, 401), (resp.status, resp.body)
        assert set(resp.json()) == {"code", "message"}
    assert all(not b.display_name.startswith("dup-") for b in limited.backups())


def _send_raw(
    srv: Live, method: str, target: str, headers: list[tuple[str, str]], body: bytes
) -> RawResponse:
    sock = _connect(srv)
    lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers), "connection: close"]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    try:
        return _read_answer(sock, method)
    finally:
        sock.close()


def test_a_signed_request_still_passes(limited: Live) -> None:
    """The control for the test above: the same request, each header once, is accepted."""
    target = f"{API}/bootVolumeBackups/{limited.backup}"
    hdrs = limited.client.signed_headers("GET", target, None)
    assert _send_raw(limited, "GET", target, list(hdrs.items()), b"").status == 200


@pytest.mark.parametrize(
    "path", [f"{API}/bootVolumes/", f"{API}/bootVolumeBackups/", f"{API}/bootVolumes/x/"]
)
def test_a_trailing_slash_is_no_redirect(limited: Live, path: str) -> None:
    """No 307 whose Location comes from the client's Host header: 404 (or 401) in OCI's shape,
    signed or not."""
    evil = {"host": "evil.example", "x-forwarded-host": "evil.example"}
    for resp in (
        limited.client.request("GET", path, headers=evil, sign=False),
        limited.client.request("GET", path),
    ):
        assert resp.status in (401, 404), (resp.status, resp.headers)
        assert "location" not in resp.headers
        assert set(resp.json()) == {"code", "message"}


def test_requests_the_http_parser_refuses_are_answered_in_oci_shape(limited: Live) -> None:
    for raw in (
        b"GET /20160918/bootVolumes HTTP/1.1\r\nx-bad: a\x01b\r\n\r\n",
        b"GET /20160918/bootVolumes\x00 HTTP/1.1\r\n\r\n",
        b"NOT-HTTP\r\n\r\n",
    ):
        sock = _connect(limited)
        sock.sendall(raw)
        resp = _read_answer(sock, "GET")
        sock.close()
        assert_error(resp, 400, "CannotParseRequest")


def test_quotas_answer_limit_exceeded(tmp_path: Path) -> None:
    env = {
        "BOOTVAULT_QUOTA_VOLUMES": "2",
        "BOOTVAULT_QUOTA_BACKUPS": "2",
        "BOOTVAULT_QUOTA_VOLUME_GBS": "40",
    }
    with live(tmp_path, env=env) as srv:  # one volume (1 GB) and one backup already
        c, sdk = srv.client, srv.sdk()
        second = c.call("POST", "/bootVolumeBackups", {"bootVolumeId": srv.volume})
        assert second.status == 200, second.body
        wait_state(sdk, "get_boot_volume_backup", second.json()["id"], "AVAILABLE")
        third = c.call("POST", "/bootVolumeBackups", {"bootVolumeId": srv.volume, "displayName": "3rd"})
        assert "2 boot volume backups" in assert_error(third, 400, "LimitExceeded")["message"]

        restore = {
            "compartmentId": srv.compartment,
            "availabilityDomain": AD,
            "sourceDetails": {"type": "bootVolumeBackup", "id": srv.backup},
        }
        too_big = c.call("POST", "/bootVolumes", {**restore, "sizeInGBs": 40})
        assert "40 GB" in assert_error(too_big, 400, "LimitExceeded")["message"]
        grow = c.call("PUT", f"/bootVolumes/{srv.volume}", {"sizeInGBs": 41})
        assert_error(grow, 400, "LimitExceeded")
        made = c.call("POST", "/bootVolumes", {**restore, "sizeInGBs": 2})
        assert made.status == 200, made.body
        wait_state(sdk, "get_boot_volume", made.json()["id"], "AVAILABLE")
        third_volume = c.call("POST", "/bootVolumes", {**restore, "displayName": "3rd"})
        assert "2 boot volumes" in assert_error(third_volume, 400, "LimitExceeded")["message"]
        image = tmp_path / "more.img"
        make_image(image, MIB)
        run = _admin(srv.dep, "volume", "import", "--compartment", srv.compartment, str(image))
        assert run.returncode == 1 and "limit" in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert len(srv.volumes()) == 2 and len(srv.backups()) == 2
        assert len(list((srv.dep.data_dir / "volumes").glob("*/*.qcow2"))) == 2  # no orphan file
        assert all(x.display_name != "3rd" for x in [*srv.volumes(), *srv.backups()])
