from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from bootvault.blobstore import (
    BlobStore,
    BlobStoreError,
    LocalBlobStore,
    ObjectNotFound,
    open_blobstore,
)


@pytest.fixture
def store(tmp_path: Path) -> LocalBlobStore:
    return LocalBlobStore(tmp_path / "store")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_put_get_exists_delete(store: LocalBlobStore) -> None:
    assert isinstance(store, BlobStore)
    assert not store.exists("a/b/c")
    store.put("a/b/c", b"hello")
    assert store.exists("a/b/c")
    assert store.get("a/b/c") == b"hello"
    assert not store.exists("a/b")  # a directory is not an object
    store.delete("a/b/c")
    assert not store.exists("a/b/c")
    store.delete("a/b/c")  # missing is fine
    store.delete("never/was")


def test_get_missing_raises_with_name(store: LocalBlobStore) -> None:
    with pytest.raises(ObjectNotFound) as info:
        store.get("chunks/x/yy")
    assert info.value.name == "chunks/x/yy"
    assert isinstance(info.value, BlobStoreError)
    store.put("dir/obj", b"1")
    with pytest.raises(ObjectNotFound):
        store.get("dir")


def test_put_memoryview_and_overwrite(store: LocalBlobStore) -> None:
    buf = bytearray(os.urandom(100_000))
    store.put("m", memoryview(buf)[10:5000])
    assert store.get("m") == bytes(buf[10:5000])
    store.put("m", b"second")
    assert store.get("m") == b"second"
    assert store.get("m") != bytes(buf[10:5000])


def test_no_tmp_left_and_tmp_ignored(store: LocalBlobStore) -> None:
    root = Path(store.root)
    store.put("chunks/s/ab/abcd", b"x" * 1000)
    assert _files(root) == ["chunks/s/ab/abcd"]
    (root / "chunks/s/ab/.tmp-deadbeef").write_bytes(b"partial")
    assert sorted(store.list("")) == ["chunks/s/ab/abcd"]
    assert sorted(store.list("chunks/s/ab/")) == ["chunks/s/ab/abcd"]
    with pytest.raises(ValueError):
        store.get("chunks/s/ab/.tmp-deadbeef")


@pytest.mark.parametrize("name", ["", "/abs", "a/../b", "..", "a//b", "a/./b", "a/", "x/.tmp-1", "a\\b"])
def test_rejects_unsafe_names(store: LocalBlobStore, name: str) -> None:
    with pytest.raises(ValueError):
        store.put(name, b"x")
    with pytest.raises(ValueError):
        store.get(name)


def test_list_prefixes(store: LocalBlobStore) -> None:
    names = [
        "chunks/s1/ab/ab01",
        "chunks/s1/ab/ab02",
        "chunks/s1/cd/cd01",
        "chunks/s2/ab/ab01",
        "manifests/ocid1.bootvolumebackup.oc1..aaa",
        "top",
    ]
    for n in names:
        store.put(n, n.encode())
    assert sorted(store.list("")) == sorted(names)
    assert sorted(store.list("chunks/s1/")) == names[:3]
    assert sorted(store.list("chunks/s1/ab/ab0")) == names[:2]
    assert sorted(store.list("chunks/s")) == names[:4]
    assert sorted(store.list("manifests/ocid1.")) == [names[4]]
    assert list(store.list("nothing/here/")) == []
    with pytest.raises(ValueError):
        list(store.list("../"))


def test_concurrent_puts_same_and_distinct_names(store: LocalBlobStore) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(40):
                store.put(f"chunks/s/{i % 7:02x}/obj{i}", b"same-%d" % i)
                store.put(f"own/{n}/{i}", b"%d-%d" % (n, i))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(list(store.list("chunks/"))) == 40
    assert len(list(store.list("own/"))) == 160
    assert store.get("own/3/39") == b"3-39"
    assert not any(".tmp-" in f for f in _files(Path(store.root)))


def test_put_after_directory_removed(store: LocalBlobStore) -> None:
    store.put("d/e/f", b"1")
    store.delete("d/e/f")
    os.rmdir(Path(store.root) / "d/e")
    os.rmdir(Path(store.root) / "d")
    store.put("d/e/g", b"2")
    assert store.get("d/e/g") == b"2"


def test_open_blobstore(tmp_path: Path) -> None:
    s1 = open_blobstore(f"file://{tmp_path}/s1")
    assert isinstance(s1, LocalBlobStore) and s1.root == str(tmp_path / "s1")
    s1.put("a", b"1")
    s2 = open_blobstore(str(tmp_path / "s1"))
    assert s2.get("a") == b"1"
    assert open_blobstore(f"file:{tmp_path}/s1").get("a") == b"1"
    s3 = open_blobstore(f"file://localhost{tmp_path}/s%20space")
    assert s3.root == str(tmp_path / "s space")
    for bad in ["s3://bucket/prefix", "http://x/y", "file://otherhost/x", "file://relative", "file:rel", ""]:
        with pytest.raises(ValueError, match="unsupported store URL"):
            open_blobstore(bad)


@pytest.mark.parametrize("size", [1, 4095, 4096, 4097, (1 << 20) + 123, 3 << 20])
def test_page_aligned_buffers_are_written_around_the_page_cache_exactly(
    store: LocalBlobStore, tmp_path: Path, size: int
) -> None:
    import mmap

    from bootvault.blobstore import local

    data = os.urandom(size)
    with mmap.mmap(-1, size + 8192) as buf:  # as the engine's pack buffers: page-aligned, larger
        buf[:size] = data
        view = memoryview(buf)[:size]
        assert local._page_aligned(view)
        tmp = tmp_path / "probe"
        tmp.touch()
        assert local._write_direct(str(tmp), view) == (size >= local.ALIGN and _has_direct_io(tmp))
        store.put("packs/p", view)
        view.release()
    assert store.get("packs/p") == data
    assert os.path.getsize(tmp_path / "store" / "packs" / "p") == size  # the last page's padding cut off
    assert not local._page_aligned(memoryview(data))  # bytes: read-only, written the ordinary way


def _has_direct_io(path: Path) -> bool:
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError:  # tmpfs
        return False
    return True
