"""One conformance suite for every BlobStore backend (local files, S3 on SeaweedFS), plus S3-only checks.

The `store` fixture is parametrized over the backends; a backend whose service is unavailable is
skipped (or fails when BOOTVAULT_REQUIRE_SERVICES=1, see tests/s3server.py).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bootvault.blobstore import (
    BlobStore,
    BlobStoreError,
    LocalBlobStore,
    ObjectNotFound,
    PermanentStoreError,
    open_blobstore,
)
from bootvault.blobstore.s3 import MIN_PART_SIZE, S3BlobStore
from tests.s3server import S3Server

MIB = 1 << 20
# Small multipart settings so a 6 MiB object goes up in two parts (5 MiB + 1 MiB).
TEST_THRESHOLD = 5 * MIB
TEST_PART_SIZE = MIN_PART_SIZE


def make_s3_store(
    server: S3Server, bucket: str | None = None, prefix: str | None = None, **kw: Any
) -> S3BlobStore:
    """A store under a fresh prefix of the session bucket, so tests never see each other's objects."""
    kw.setdefault("access_key", server.access_key)
    kw.setdefault("secret_key", server.secret_key)
    kw.setdefault("multipart_threshold", TEST_THRESHOLD)
    kw.setdefault("part_size", TEST_PART_SIZE)
    prefix = f"t-{uuid.uuid4().hex[:12]}" if prefix is None else prefix
    return S3BlobStore(bucket or server.bucket, prefix, endpoint=server.endpoint, **kw)


@pytest.fixture
def local_store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")


@pytest.fixture
def s3_store(s3_server: S3Server) -> S3BlobStore:
    return make_s3_store(s3_server)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest) -> BlobStore:
    return request.getfixturevalue(f"{request.param}_store")


def test_is_a_blobstore_with_properties(store: BlobStore) -> None:
    assert isinstance(store, BlobStore)
    assert store.properties.max_connections >= 1
    assert store.properties.atomic_replace is True


@pytest.mark.parametrize("size", [0, 1, 5 * MIB, 6 * MIB], ids=["empty", "1B", "5MiB", "6MiB-multipart"])
def test_put_get_roundtrip(store: BlobStore, size: int) -> None:
    data = os.urandom(size)
    store.put("objs/one", data)
    assert store.get("objs/one") == data
    assert store.size("objs/one") == size
    assert store.exists("objs/one")


def test_names_with_unusual_characters(store: BlobStore) -> None:
    names = ["odd/a b+c%20d=e&f", "odd/\u00e9t\u00e9~x", "odd/semi;colon,comma'quote"]
    for n in names:
        store.put(n, n.encode())
    assert sorted(store.list("odd/")) == sorted(names)
    for n in names:
        assert store.get(n) == n.encode() and store.size(n) == len(n.encode()) and store.exists(n)
        store.delete(n)
    assert list(store.list("odd/")) == []


def test_put_accepts_bytearray_and_memoryview(store: BlobStore) -> None:
    buf = bytearray(os.urandom(100_000))
    store.put("a", buf)
    store.put("b", memoryview(buf)[10:5000])
    assert store.get("a") == bytes(buf)
    assert store.get("b") == bytes(buf[10:5000])


def test_get_range(store: BlobStore) -> None:
    data = os.urandom(1000)
    store.put("r/obj", data)
    assert store.get_range("r/obj", 0, 10) == data[:10]  # start
    assert store.get_range("r/obj", 500, 100) == data[500:600]  # middle
    assert store.get_range("r/obj", 990, 10) == data[990:]  # exactly the end
    assert store.get_range("r/obj", 0, 1000) == data  # whole
    assert store.get_range("r/obj", 995, 100) == data[995:]  # past the end: what exists
    assert store.get_range("r/obj", 1000, 10) == b""  # starts at the end
    assert store.get_range("r/obj", 5000, 1) == b""  # starts beyond the end
    assert store.get_range("r/obj", 10, 0) == b""
    store.put("r/empty", b"")
    assert store.get_range("r/empty", 0, 10) == b""
    with pytest.raises(ValueError):
        store.get_range("r/obj", -1, 10)
    with pytest.raises(ValueError):
        store.get_range("r/obj", 0, -1)


def test_get_range_of_large_object(store: BlobStore) -> None:
    data = os.urandom(6 * MIB)
    store.put("big", data)
    assert store.get_range("big", 5 * MIB - 7, 100) == data[5 * MIB - 7 : 5 * MIB + 93]  # across parts
    assert store.get_range("big", 6 * MIB - 10, 1 << 30) == data[-10:]


def test_missing_objects(store: BlobStore) -> None:
    for call in (
        lambda: store.get("no/such"),
        lambda: store.get_range("no/such", 0, 10),
        lambda: store.get_range("no/such", 0, 0),
        lambda: store.size("no/such"),
    ):
        with pytest.raises(ObjectNotFound) as info:
            call()
        assert info.value.name == "no/such"
        assert isinstance(info.value, PermanentStoreError) and isinstance(info.value, BlobStoreError)
    assert not store.exists("no/such")


def test_a_prefix_of_names_is_not_an_object(store: BlobStore) -> None:
    store.put("a/b/c", b"hello")
    assert not store.exists("a/b")
    with pytest.raises(ObjectNotFound):
        store.get("a/b")
    with pytest.raises(ObjectNotFound):
        store.size("a/b")
    with pytest.raises(ObjectNotFound):
        store.get_range("a/b", 0, 1)


def test_exists_and_delete(store: BlobStore) -> None:
    assert not store.exists("d/x")
    store.put("d/x", b"1")
    store.put("d/y", b"2")
    assert store.exists("d/x")
    store.delete("d/x")
    assert not store.exists("d/x")
    assert store.get("d/y") == b"2"
    store.delete("d/x")  # already gone
    store.delete("never/was")
    assert sorted(store.list("")) == ["d/y"]


def test_list_with_prefix(store: BlobStore) -> None:
    names = [
        "chunks/s1/ab/ab01",
        "chunks/s1/ab/ab02",
        "chunks/s1/cd/cd01",
        "chunks/s2/ab/ab01",
        "chunks-other/x",
        "manifests/ocid1.bootvolumebackup.oc1..aaa",
        "top",
    ]
    for n in names:
        store.put(n, n.encode())
    assert sorted(store.list("")) == sorted(names)
    assert sorted(store.list("chunks/")) == names[:4]
    assert sorted(store.list("chunks/s1/")) == names[:3]
    assert sorted(store.list("chunks/s1/ab/ab0")) == names[:2]
    assert sorted(store.list("chunks/s")) == names[:4]
    assert sorted(store.list("chunks")) == sorted(names[:5])
    assert sorted(store.list("manifests/ocid1.")) == [names[5]]
    assert sorted(store.list("to")) == ["top"]
    assert list(store.list("nothing/here/")) == []
    for name in store.list(""):
        assert store.get(name) == name.encode()  # full names, usable as is
    for bad in ("../", "/abs", "a/../b"):
        with pytest.raises(ValueError):
            list(store.list(bad))


UNSAFE_NAMES = ["", "/abs", "a/../b", "..", "../x", "a//b", "a/./b", "a/", "x/.tmp-1", "a\\b"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_rejects_unsafe_names(store: BlobStore, name: str) -> None:
    for call in (
        lambda: store.put(name, b"x"),
        lambda: store.get(name),
        lambda: store.get_range(name, 0, 1),
        lambda: store.size(name),
        lambda: store.exists(name),
        lambda: store.delete(name),
    ):
        with pytest.raises(ValueError):
            call()


def test_overwrite_is_atomic_for_concurrent_readers(store: BlobStore) -> None:
    """Readers racing a writer that keeps replacing an object see the old or the new one, never a part
    of one, and never a missing object. The second version is large enough for multipart on S3."""
    versions = [os.urandom(1 * MIB), os.urandom(6 * MIB)]
    store.put("hot", versions[0])
    seen: set[int] = set()
    errors: list[str] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                data = store.get("hot")
                head = store.get_range("hot", 1000, 64 << 10)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                return
            if data not in versions:
                errors.append(f"torn read of {len(data)} bytes")
                return
            if head not in (v[1000 : 1000 + (64 << 10)] for v in versions):
                errors.append("torn range read")
                return
            seen.add(versions.index(data))

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    started, writes = time.monotonic(), 0
    try:  # at least 0.4 s of racing, longer (up to 15 s) until both versions were read
        while not errors and (time.monotonic() - started < 0.4 or len(seen) < 2):
            if time.monotonic() - started > 15:
                break
            writes += 1
            store.put("hot", versions[writes % 2])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert errors == []
    assert writes >= 2 and seen == {0, 1}


def test_concurrent_puts_and_gets_from_16_threads(store: BlobStore) -> None:
    errors: list[BaseException] = []
    shared = {f"shared/{i:02x}": os.urandom(1000 + i) for i in range(8)}  # the same content from all

    def worker(n: int) -> None:
        try:
            for i in range(12):
                data = b"%d-%d-" % (n, i) * (1 + 37 * i)
                store.put(f"own/{n:02d}/{i:02d}", data)
                name = f"shared/{i % 8:02x}"
                store.put(name, shared[name])
                assert store.get(f"own/{n:02d}/{i:02d}") == data
                assert store.get(name) == shared[name]
                assert store.get_range(name, 10, 20) == shared[name][10:30]
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(store.list("own/"))) == 16 * 12
    assert sorted(store.list("shared/")) == sorted(shared)
    assert store.get("own/15/11") == b"15-11-" * (1 + 37 * 11)


# --- S3 only ---------------------------------------------------------------------------------------


def test_s3_multipart_above_threshold(s3_server: S3Server) -> None:
    store = make_s3_store(s3_server)
    data = os.urandom(TEST_THRESHOLD + MIB)
    store.put("mp", memoryview(data))
    key = f"{store.prefix}/mp"
    assert s3_server.client().head_object(Bucket=s3_server.bucket, Key=key)["ETag"].endswith('-2"')
    assert store.get("mp") == data
    store.put("sp", data[: -2 * MIB])  # below the threshold: one PUT
    etag = s3_server.client().head_object(Bucket=s3_server.bucket, Key=f"{store.prefix}/sp")["ETag"]
    assert "-" not in etag


def test_s3_get_retries_a_body_that_breaks_off(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore retries requests but not a response body that fails while being read."""
    from botocore.exceptions import ResponseStreamingError

    store = make_s3_store(s3_server)
    store.put("obj", b"payload")
    real_get, calls, failures = store._client.get_object, [], [0]

    def flaky_get(**kwargs: Any) -> Any:
        resp = real_get(**kwargs)
        calls.append(kwargs)
        if failures[0] > 0:
            failures[0] -= 1

            def broken_read(*args: Any) -> bytes:
                raise ResponseStreamingError(error="connection reset")

            resp["Body"].read = broken_read
        return resp

    monkeypatch.setattr(store._client, "get_object", flaky_get)
    failures[0] = 2
    assert store.get("obj") == b"payload" and len(calls) == 3
    failures[0] = 2
    assert store.get_range("obj", 3, 2) == b"lo" and len(calls) == 6
    failures[0] = 3
    with pytest.raises(BlobStoreError, match="broke off"):
        store.get("obj")
    assert len(calls) == 9


def test_s3_prefix_is_isolated_and_stripped(s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket()
    root = make_s3_store(s3_server, bucket=bucket, prefix="")
    nested = make_s3_store(s3_server, bucket=bucket, prefix="/tenant/a/")
    nested.put("x/y", b"1")
    root.put("tenant/ab", b"2")
    assert nested.prefix == "tenant/a"
    assert list(nested.list("")) == ["x/y"]
    assert sorted(root.list("")) == ["tenant/a/x/y", "tenant/ab"]
    assert root.get("tenant/a/x/y") == b"1"
    assert list(root.list("tenant/a/")) == ["tenant/a/x/y"]


def test_s3_list_paginates(s3_server: S3Server) -> None:
    store = make_s3_store(s3_server)
    names = {f"many/{i:04d}" for i in range(1010)}  # more than one 1000-key page
    threads = [
        threading.Thread(target=lambda part: [store.put(n, b"") for n in part], args=(sorted(names)[k::16],))
        for k in range(16)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(store.list("many/")) == names


def test_s3_missing_bucket_is_a_clear_permanent_error(s3_server: S3Server) -> None:
    store = make_s3_store(s3_server, bucket="no-such-bucket-bv")
    for call in (
        lambda: store.put("a", b"x"),
        lambda: store.get("a"),
        lambda: store.get_range("a", 0, 1),
        lambda: store.exists("a"),
        lambda: store.size("a"),
        lambda: store.delete("a"),
        lambda: list(store.list("")),
    ):
        with pytest.raises(PermanentStoreError, match="S3 bucket 'no-such-bucket-bv' does not exist") as info:
            call()
        assert s3_server.endpoint in str(info.value)
        assert not isinstance(info.value, ObjectNotFound)


@pytest.mark.parametrize("which", ["secret", "access_key"])
def test_s3_rejected_credentials_are_a_clear_permanent_error(s3_server: S3Server, which: str) -> None:
    good = make_s3_store(s3_server)
    good.put("a", b"x")
    wrong = {"secret_key": "wrong-secret"} if which == "secret" else {"access_key": "unknown-key"}
    store = make_s3_store(s3_server, prefix=good.prefix, **wrong)
    for call in (
        lambda: store.put("b", b"x"),
        lambda: store.get("a"),
        lambda: store.get_range("a", 0, 1),
        lambda: store.exists("a"),
        lambda: store.size("a"),
        lambda: list(store.list("")),
    ):
        with pytest.raises(PermanentStoreError, match="S3 credentials were rejected by") as info:
            call()
        assert s3_server.endpoint in str(info.value)
    assert not good.exists("b")


def test_s3_unreachable_endpoint_fails_quickly() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    endpoint = f"http://127.0.0.1:{port}"
    store = S3BlobStore(
        "bucket", endpoint=endpoint, access_key="k", secret_key="s", connect_timeout=1, max_attempts=0
    )
    for call in (lambda: store.put("a", b"x"), lambda: store.get("a"), lambda: store.exists("a")):
        started = time.monotonic()
        with pytest.raises(BlobStoreError, match=f"cannot reach S3 endpoint {endpoint}") as info:
            call()
        assert time.monotonic() - started < 5
        assert not isinstance(info.value, PermanentStoreError)  # a later retry may work


def test_open_blobstore_s3_url_uses_default_credentials(
    s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    url = (
        f"s3://{s3_server.bucket}/url%20test/p?endpoint={s3_server.endpoint}&region=eu-x-1&max_connections=4"
    )
    store = open_blobstore(url)
    assert isinstance(store, S3BlobStore)
    assert (store.bucket, store.prefix) == (s3_server.bucket, "url test/p")
    assert store.endpoint == s3_server.endpoint and store.properties.max_connections == 4
    store.put("k", b"v")
    root = open_blobstore(f"s3://{s3_server.bucket}?endpoint={s3_server.endpoint}")
    assert root.get("url test/p/k") == b"v"


@pytest.mark.parametrize(
    "url",
    [
        "s3://bucket/prefix",  # no endpoint
        "s3:///prefix?endpoint=http://127.0.0.1:1",  # no bucket
        "s3://bucket?endpoint=ftp://127.0.0.1:1",
        "s3://bucket?endpoint=http://127.0.0.1:1&colour=blue",
        "s3://bucket?endpoint=http://127.0.0.1:1&connect_timeout=soon",
        "s3://bucket/a/../b?endpoint=http://127.0.0.1:1",
    ],
)
def test_open_blobstore_rejects_bad_s3_urls(url: str) -> None:
    with pytest.raises(ValueError):
        open_blobstore(url)
