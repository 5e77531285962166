"""Property-based fuzzing of every route, against a live server on SQLite and on PostgreSQL.

Request bodies come from the request models' own JSON schemas (pydantic, by alias, through
hypothesis-jsonschema), with real ids planted in them and fields swapped for junk; ids in paths,
query values and headers are random, odd (NUL, %00, lone surrogates, very long, malformed escapes)
or real; bodies and targets also come raw (invalid UTF-8, deep nesting, huge numbers). Every
request is signed with the tenant's real key, so it reaches the handlers, and is sent byte for
byte (tests/rawhttp.py).

The properties: no answer is 500 or above; every error answer is OCI's {"code", "message"} JSON;
the server logs no unhandled error; and it still serves afterwards: an SDK get works, and every
page of every list of every compartment the fuzzer wrote into parses in the SDK (one bad stored
value must never break a list).

BOOTVAULT_FUZZ_SCALE=10 runs ten times the examples (the default keeps `make test` quick)."""

from __future__ import annotations

import base64
import functools
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

import oci
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema
from oci.core.models import CreateBootVolumeBackupDetails as SdkBackupDetails

from bootvault.api import wire
from bootvault.domain.models import BackupState, VolumeState
from tests.dbs import pg_schema_url
from tests.helpers import MIB, Deployment, Tenant, log_entries, make_image, wait_state
from tests.rawhttp import RawClient, RawResponse

pytestmark = pytest.mark.slow(5)

API = "/20160918"
SCALE = float(os.environ.get("BOOTVAULT_FUZZ_SCALE", "1"))
AD = "bootvault:AD-1"


def examples(n: int) -> settings:
    return settings(
        max_examples=max(1, int(n * SCALE)),
        deadline=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )


# --------------------------------------------------------------------------------------------------
# the live target


@dataclass(eq=False)  # hashable by identity: strategies are built once per target
class Target:
    kind: str
    dep: Deployment
    tenant: Tenant
    client: RawClient
    compartments: list[str]  # every compartment the fuzzer may write into (and list afterwards)
    keep_volume: str  # never named by the fuzzer: it must still read back at the end
    volumes: list[str]
    backups: list[str]
    ids: list[str]  # real ids of every kind, ours and another tenancy's
    pages: list[str]  # real page tokens


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    kind = request.param
    root = tmp_path_factory.mktemp(f"fuzz-{kind}")
    with ExitStack() as stack:
        dep = Deployment(root)
        # Quotas bound the work the fuzzer can queue (and their refusals are fuzzed too).
        dep.env.update(BOOTVAULT_QUOTA_VOLUMES="12", BOOTVAULT_QUOTA_BACKUPS="20")
        if kind == "postgresql":
            dep.env["BOOTVAULT_DATABASE_URL"] = stack.enter_context(pg_schema_url())
        dep.start()
        stack.callback(dep.stop)
        # Admin commands are separate processes: run the independent ones side by side.
        pool = stack.enter_context(ThreadPoolExecutor(4))
        tenant, other = pool.map(dep.new_tenant, ["fuzz", "other"])

        def admin(*args: str) -> str:
            return dep.cli(*args).stdout.strip().splitlines()[-1]

        image = root / "disk.img"
        make_image(image, 4 * MIB)
        fuzzed, keep, theirs = (
            pool.submit(admin, "compartment", "create", "--parent", tenant.tenancy_id, "--name", "fuzzed"),
            pool.submit(admin, "compartment", "create", "--parent", tenant.tenancy_id, "--name", "keep"),
            pool.submit(dep.import_volume, other, image, "theirs"),
        )
        fuzzed, keep, theirs = fuzzed.result(), keep.result(), theirs.result()
        key, *volumes, keep_volume = (
            f.result()
            for f in [
                pool.submit(admin, "key", "create", "--compartment", fuzzed),
                *(pool.submit(dep.import_volume, tenant, image, f"v{i}", fuzzed) for i in range(2)),
                pool.submit(dep.import_volume, tenant, image, "keep", keep),
            ]
        )
        sdk = tenant.client()
        backup = sdk.create_boot_volume_backup(SdkBackupDetails(boot_volume_id=volumes[0], type="FULL")).data
        wait_state(sdk, "get_boot_volume_backup", backup.id, "AVAILABLE")
        page = sdk.list_boot_volumes(compartment_id=fuzzed, limit=1).headers["opc-next-page"]
        yield Target(
            kind=kind,
            dep=dep,
            tenant=tenant,
            client=RawClient(tenant),
            compartments=[fuzzed, tenant.tenancy_id],
            keep_volume=keep_volume,
            volumes=volumes,
            backups=[backup.id],
            ids=[*volumes, backup.id, fuzzed, tenant.tenancy_id, key, theirs, other.tenancy_id],
            pages=[page],
        )


# --------------------------------------------------------------------------------------------------
# strategies

ODD = [
    "\x00", "%00", "\ud800", "\udfff", "\ud83d", "\ufeff", "\u202e", "\uffff", "\U0010ffff", "𝕏", "é",
    "'", '"', "\\", "%", "%zz", "%C0%80", "%ED%A0%80", "/", "..", "?", "#", "&", "=", "+", ";", " ",
    "\t", "\n", "\r", "\x7f", "\x1b", "ocid1.", "ocid1.bootvolume.oc1.local-1.", "*", "null", "{}",
]  # fmt: skip


@functools.cache
def odd_text(max_size: int = 30) -> st.SearchStrategy[str]:
    """Text of up to `max_size` pieces: any character, or one of the odd pieces above."""
    return st.lists(st.one_of(st.characters(), st.sampled_from(ODD)), max_size=max_size).map("".join)


@functools.cache
def header_text(max_size: int = 80) -> st.SearchStrategy[str]:
    """What a header value can carry (latin-1); now and then a control byte the parser refuses."""
    return st.text(
        st.one_of(
            st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
            st.sampled_from(["\x01", "\x00", "\x7f", "\t"]),
        ),
        max_size=max_size,
    )


@functools.cache
def ids(known: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(known),
        st.sampled_from(known),
        st.tuples(st.sampled_from(known), odd_text(3)).map("".join),
        st.tuples(odd_text(3), st.sampled_from(known)).map("".join),
        odd_text(),
        st.integers(0, 6000).map(lambda n: "a" * n),
        st.just(""),
    )


def segment(value: str) -> st.SearchStrategy[bytes]:
    """A path segment as it goes on the wire: percent-encoded, half-raw (keeping '%', '/', '?',
    '#'...), or raw UTF-8 bytes (the HTTP parser refuses some)."""
    return st.sampled_from(
        [
            quote(value, safe="", errors="surrogatepass").encode(),
            quote(value, safe="", errors="surrogatepass").encode(),
            quote(value, safe="%/?#&=+;:@", errors="surrogatepass").encode(),
            value.encode("utf-8", "surrogatepass"),
        ]
    )


@functools.cache
def forged_page(known: tuple[str, ...]) -> st.SearchStrategy[str]:
    times = st.one_of(
        st.datetimes(
            timezones=st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12))])
        ).map(datetime.isoformat),
        st.datetimes().map(datetime.isoformat),  # naive
        st.sampled_from(["0001-01-01T00:00:00+00:00", "9999-12-31T23:59:59-14:00", "2020-01-01", "now"]),
    )
    first = st.one_of(times, odd_text(), st.integers(), st.floats(allow_nan=False), st.none(), st.just([]))
    payload = st.one_of(
        st.tuples(first, st.one_of(ids(known), st.integers(), st.none())).map(list),
        st.lists(first, max_size=3),
        json_values(),
    )

    def encode(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return payload.map(encode)


@functools.cache
def json_values(max_leaves: int = 8) -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.integers(-(2**70), 2**70),
        st.floats(allow_nan=False, allow_infinity=False),
        odd_text(),
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(odd_text(12), inner, max_size=4)
        ),
        max_leaves=max_leaves,
    )


RAW_BODIES = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"x"',
    b"1",
    b"\xef\xbb\xbf{}",
    b"\xff\xfe{\x00}\x00",
    b'{"displayName": "\xed\xa0\x80"}',  # a surrogate encoded as UTF-8 (invalid)
    b'{"displayName": "a\\u0000b"}',
    b'{"displayName": "\\ud800"}',
    b'{"freeformTags": {"\\udfff": "x"}}',
    b'{"sizeInGBs": NaN}',
    b'{"sizeInGBs": Infinity}',
    b'{"sizeInGBs": 1e999}',
    b'{"sizeInGBs": ' + b"9" * 4400 + b"}",
    b'{"freeformTags": {"a": ' + b"1" * 5000 + b"}}",
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
    b"[" * 20000 + b"]" * 20000,
    b'{"displayName": "a", "displayName": "b"}',
    b'{"definedTags": {"ns": {"k": {"deeper": "v"}}}}',
]


@functools.cache
def schema_of(model: type) -> st.SearchStrategy[Any]:
    """Documents valid against the model's JSON schema, as a client would send them."""
    return from_schema(model.model_json_schema(by_alias=True))


@st.composite
def body(draw: st.DrawFn, model: type, plants: dict[str, st.SearchStrategy[Any]]) -> bytes:
    """A JSON body: schema-valid (ids planted), schema-valid with a field swapped for junk, junk
    JSON, or raw bytes."""
    how = draw(st.sampled_from(["schema", "schema", "mutated", "junk", "raw"]))
    if how == "raw":
        return draw(st.one_of(st.sampled_from(RAW_BODIES), st.binary(max_size=64)))
    if how == "junk":
        doc: Any = draw(json_values())
    else:
        doc = draw(schema_of(model))
        for path, strategy in plants.items():
            if draw(st.booleans()):
                _put(doc, path, draw(strategy))
        if how == "mutated":
            fields = [info.alias or name for name, info in model.model_fields.items()]
            _put(doc, draw(st.sampled_from(fields)), draw(json_values()))
    ascii_only = draw(st.booleans())
    return json.dumps(doc, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


def _put(doc: Any, path: str, value: Any) -> None:
    *parents, last = path.split(".")
    for name in parents:
        if not isinstance(doc, dict):
            return
        doc = doc.setdefault(name, {})
    if isinstance(doc, dict):
        doc[last] = value


@functools.cache
def sizes() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from([0, 1, 2, 50, 1024, 20000, 32768, 32769, -1, 2**31, 2**63, 2**64, 10**30]),
        st.integers(),
    )


@functools.cache
def tags() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.dictionaries(odd_text(10), odd_text(10), max_size=3),
        st.dictionaries(odd_text(10), st.dictionaries(odd_text(10), odd_text(10), max_size=2), max_size=2),
        json_values(),
    )


@st.composite
def headers(draw: st.DrawFn, etag_like: bool = False) -> dict[str, str]:
    out: dict[str, str] = {}
    if draw(st.booleans()):
        out["opc-retry-token"] = draw(st.one_of(header_text(80), st.sampled_from(["t1", "t2", "t3"])))
    if etag_like and draw(st.booleans()):
        out["if-match"] = draw(
            st.one_of(header_text(), st.text("0123456789abcdef", min_size=32, max_size=32))
        )
    if draw(st.integers(0, 4)) == 0:
        out["opc-request-id"] = draw(header_text(300))
    if draw(st.integers(0, 6)) == 0:
        out["content-type"] = draw(st.sampled_from(["text/plain", "application/json; charset=latin-1", ""]))
    return out


QUERY_NAMES = [
    "compartmentId", "bootVolumeId", "displayName", "sourceBootVolumeBackupId", "lifecycleState",
    "sortBy", "sortOrder", "limit", "page", "availabilityDomain",
]  # fmt: skip
STATES = [s.value for s in BackupState] + [s.value for s in VolumeState]


@functools.cache
def query_value(name: str, t: Target) -> st.SearchStrategy[str]:
    junk = odd_text()
    choices: dict[str, st.SearchStrategy[str]] = {
        "compartmentId": st.one_of(st.sampled_from(t.compartments), ids(tuple(t.ids))),
        "bootVolumeId": ids(tuple(t.ids)),
        "sourceBootVolumeBackupId": ids(tuple(t.ids)),
        "displayName": st.one_of(st.sampled_from(["v0", "keep", "v1"]), junk),
        "lifecycleState": st.one_of(st.sampled_from(STATES), st.sampled_from(STATES).map(str.lower), junk),
        "sortBy": st.one_of(st.sampled_from(["TIMECREATED", "DISPLAYNAME", "timeCreated"]), junk),
        "sortOrder": st.one_of(st.sampled_from(["ASC", "DESC", "asc"]), junk),
        "limit": st.one_of(
            st.integers(-10, 2000).map(str),
            st.sampled_from(["", "1e3", "0x10", "١٢", "+5", " 5", "9" * 40, "9" * 5000, "NaN", "-0"]),
            junk,
        ),
        "page": st.one_of(st.sampled_from(t.pages), forged_page(tuple(t.ids)), junk),
        "availabilityDomain": st.one_of(st.just(AD), junk),
    }
    return choices.get(name, junk)


@st.composite
def query(draw: st.DrawFn, t: Target) -> bytes:
    pairs: list[tuple[str, str]] = []
    if draw(st.integers(0, 9)) > 0:
        pairs.append(("compartmentId", draw(st.sampled_from(t.compartments))))
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.one_of(st.sampled_from(QUERY_NAMES), st.sampled_from(QUERY_NAMES), odd_text(8)))
        pairs.append((name, draw(query_value(name, t))))
    if not pairs:
        return b""
    parts = []
    for name, value in pairs:
        enc = draw(segment(value)) if draw(st.integers(0, 5)) == 0 else quote(value, errors="surrogatepass")
        parts.append(quote(name, errors="surrogatepass").encode() + b"=" + _bytes(enc))
    return b"?" + b"&".join(parts)


def _bytes(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


# --------------------------------------------------------------------------------------------------
# the properties


def send(t: Target, method: str, target: bytes, payload: bytes | None, hdrs: dict[str, str]) -> RawResponse:
    resp = t.client.request(method, target, payload, hdrs)
    assert resp.status < 500, (method, target[:300], (payload or b"")[:300], hdrs, resp.status, resp.body)
    if resp.status >= 400 and method != "HEAD":
        try:
            doc = json.loads(resp.body)
        except ValueError:
            raise AssertionError(f"{resp.status} with a body that is not JSON: {resp.body[:200]!r}") from None
        assert isinstance(doc, dict) and set(doc) == {"code", "message"}, doc
        assert isinstance(doc["code"], str) and isinstance(doc["message"], str), doc
    elif 200 <= resp.status < 300 and resp.body and method != "HEAD":
        json.loads(resp.body)
    return resp


def still_serving(t: Target) -> None:
    """The SDK can read the untouched volume and every page of every list the fuzzer touched."""
    sdk = t.tenant.client(retry_strategy=oci.retry.NoneRetryStrategy())  # a 500 fails at once
    assert sdk.get_boot_volume(t.keep_volume).data.lifecycle_state == "AVAILABLE"
    for compartment in t.compartments:
        oci.pagination.list_call_get_all_results(sdk.list_boot_volumes, compartment_id=compartment, limit=3)
        for sort_by in ("TIMECREATED", "DISPLAYNAME"):
            oci.pagination.list_call_get_all_results(
                sdk.list_boot_volume_backups, compartment_id=compartment, sort_by=sort_by, limit=3
            )
    log = log_entries(t.dep.root / "server.log")
    errors = [e for e in log if str(e.get("message", "")).startswith(UNHANDLED)]
    assert not errors, json.dumps(errors[:3])[-4000:]


UNHANDLED = ("unhandled error", "Exception in ASGI application")


def run(
    t: Target, strategy: st.SearchStrategy[tuple[str, bytes, bytes | None, dict[str, str]]], n: int
) -> None:
    @examples(n)
    @given(strategy)
    def fuzz(request: tuple[str, bytes, bytes | None, dict[str, str]]) -> None:
        send(t, *request)

    fuzz()
    still_serving(t)


def _request(
    method: st.SearchStrategy[str],
    target: st.SearchStrategy[bytes],
    payload: st.SearchStrategy[bytes | None],
    hdrs: st.SearchStrategy[dict[str, str]],
) -> st.SearchStrategy[tuple[str, bytes, bytes | None, dict[str, str]]]:
    return st.tuples(method, target, payload, hdrs)


def _plants(t: Target, *paths: str) -> dict[str, st.SearchStrategy[Any]]:
    table: dict[str, st.SearchStrategy[Any]] = {
        "bootVolumeId": st.one_of(st.sampled_from(t.volumes), ids(tuple(t.ids))),
        "compartmentId": st.one_of(st.sampled_from(t.compartments), ids(tuple(t.ids))),
        "kmsKeyId": ids(tuple(t.ids)),
        "sourceDetails.id": st.one_of(st.sampled_from(t.backups + t.volumes), ids(tuple(t.ids))),
        "sourceDetails.type": st.sampled_from(["bootVolumeBackup", "bootVolume", "image"]),
        "availabilityDomain": st.one_of(st.just(AD), st.just(AD), odd_text()),
        "sizeInGBs": sizes(),
        "displayName": odd_text(300),
        "freeformTags": tags(),
        "definedTags": tags(),
    }
    return {p: table[p] for p in paths}


Route = Callable[[Target], st.SearchStrategy[tuple[str, bytes, bytes | None, dict[str, str]]]]


def create_backup(t: Target) -> Any:
    plants = _plants(t, "bootVolumeId", "kmsKeyId", "displayName", "freeformTags", "definedTags")
    return _request(
        st.just("POST"),
        st.just(f"{API}/bootVolumeBackups".encode()),
        body(wire.CreateBootVolumeBackupDetails, plants),
        headers(),
    )


def create_volume(t: Target) -> Any:
    plants = _plants(
        t,
        "compartmentId",
        "sourceDetails.id",
        "sourceDetails.type",
        "availabilityDomain",
        "sizeInGBs",
        "kmsKeyId",
        "displayName",
        "freeformTags",
    )
    return _request(
        st.just("POST"),
        st.just(f"{API}/bootVolumes".encode()),
        body(wire.CreateBootVolumeDetails, plants),
        headers(),
    )


def _item_route(t: Target, collection: str, known: list[str], update: type, sizes_too: bool) -> Any:
    """Get, update, delete and change compartment of one resource, mostly each with its own path
    and body (so that most requests reach the handler), now and then with another's."""
    fields = ["displayName", "freeformTags", "definedTags"] + (["sizeInGBs"] if sizes_too else [])
    bodies = {
        "PUT": body(update, _plants(t, *fields)),
        "POST": body(wire.ChangeCompartmentDetails, _plants(t, "compartmentId")),
    }
    odd_suffix = st.sampled_from([b"", b"/actions/changeCompartment", b"/", b"/actions/x", b"//"])

    @st.composite
    def request(draw: st.DrawFn) -> tuple[str, bytes, bytes | None, dict[str, str]]:
        method = draw(st.sampled_from(["GET", "PUT", "DELETE", "POST"]))
        fitting = draw(st.integers(0, 4)) > 0
        suffix = (b"/actions/changeCompartment" if method == "POST" else b"") if fitting else draw(odd_suffix)
        ident = draw(st.one_of(st.sampled_from(known), ids(tuple(t.ids))))
        target = f"{API}/{collection}/".encode() + draw(segment(ident)) + suffix
        if fitting:
            payload = draw(bodies[method]) if method in bodies else None
        else:
            payload = draw(st.one_of(st.none(), *bodies.values()))
        return method, target, payload, draw(headers(True))

    return request()


def backup_items(t: Target) -> Any:
    return _item_route(t, "bootVolumeBackups", t.backups, wire.UpdateBootVolumeBackupDetails, False)


def volume_items(t: Target) -> Any:
    return _item_route(t, "bootVolumes", t.volumes, wire.UpdateBootVolumeDetails, True)


def list_backups(t: Target) -> Any:
    return _request(
        st.just("GET"), query(t).map(lambda q: f"{API}/bootVolumeBackups".encode() + q), st.none(), headers()
    )


def list_volumes(t: Target) -> Any:
    return _request(
        st.just("GET"), query(t).map(lambda q: f"{API}/bootVolumes".encode() + q), st.none(), headers()
    )


PATHS = [
    "/", "/20160918", "/20160918/", "/20160918/bootVolumes/", "/20160918/bootVolumeBackups/",
    "/20160918//bootVolumes", "/20160918/bootVolumes/x/y/z", "/20160918/volumes", "/healthz", "/readyz",
    "/metrics", "/20160918/bootVolumeBackups/%2e%2e", "/../etc/passwd", "*",
]  # fmt: skip


def anything(t: Target) -> Any:
    @st.composite
    def target(draw: st.DrawFn) -> bytes:
        base = draw(
            st.one_of(
                st.sampled_from(PATHS).map(str.encode), odd_text(20).flatmap(segment).map(lambda b: b"/" + b)
            )
        )
        return base + draw(st.one_of(st.just(b""), query(t)))

    method = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"])
    payload = st.one_of(st.none(), st.sampled_from(RAW_BODIES), st.binary(max_size=64))
    return _request(method, target(), payload, headers(True))


ROUTES: dict[str, tuple[Route, int]] = {
    "CreateBootVolumeBackup": (create_backup, 100),
    "CreateBootVolume": (create_volume, 100),
    "BootVolumeBackup item operations": (backup_items, 150),
    "BootVolume item operations": (volume_items, 150),
    "ListBootVolumeBackups": (list_backups, 100),
    "ListBootVolumes": (list_volumes, 100),
    "any method, path and body": (anything, 100),
}


@pytest.mark.parametrize("route", list(ROUTES))
def test_fuzz(target: Target, route: str) -> None:
    strategy, n = ROUTES[route]
    run(target, strategy(target), n)


def test_fuzz_unsigned_and_forged(target: Target) -> None:
    """Without a valid signature nothing is read or parsed: always 401 in OCI's shape (or 400/404
    where the HTTP layer or the router answers first)."""

    @examples(60)
    @given(
        st.sampled_from(["GET", "POST", "PUT", "DELETE"]),
        st.one_of(
            st.sampled_from(PATHS), st.sampled_from([f"{API}/bootVolumes", f"{API}/bootVolumeBackups"])
        ),
        st.one_of(st.none(), st.sampled_from(RAW_BODIES)),
        st.one_of(
            st.none(),
            header_text(200),
            st.sampled_from(['Signature keyId="a/b/c"', "Signature " + "x" * 20000]),
        ),
    )
    def fuzz(method: str, path: str, payload: bytes | None, auth: str | None) -> None:
        hdrs = {} if auth is None else {"authorization": auth}
        resp = target.client.request(method, path, payload, hdrs, sign=False)
        assert resp.status < 500, (method, path, auth, resp.status, resp.body)
        if path.startswith(f"{API}/boot"):  # refused by the parser, the router or the signature check
            assert resp.status in (400, 401, 404, 405, 431), (method, path, auth, resp.status, resp.body)
        if resp.status >= 400 and method != "HEAD":
            assert set(json.loads(resp.body)) == {"code", "message"}, resp.body

    fuzz()
    still_serving(target)


def test_retry_tokens_replay_the_same_resource(target: Target, tmp_path: Path) -> None:
    """After all that, the retry-token contract still holds (the fuzzer reused tokens t1..t3)."""
    body_ = {"bootVolumeId": target.volumes[1], "displayName": "replayed"}
    first = target.client.call("POST", "/bootVolumeBackups", body_, {"opc-retry-token": "after-fuzz"})
    again = target.client.call("POST", "/bootVolumeBackups", body_, {"opc-retry-token": "after-fuzz"})
    if first.status == 200:
        assert again.status == 200 and again.json()["id"] == first.json()["id"]
    else:  # the fuzzer used up the quota, or deleted the volume
        assert first.status in (400, 409) and again.status == first.status, (first.body, again.body)
    still_serving(target)
