from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bootvault.blobstore import BlobStore, LocalBlobStore
from bootvault.engine import backup as backup_mod
from bootvault.engine import codec
from bootvault.engine import packs as packs_mod
from bootvault.engine.backup import BackupResult, run_backup
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys, KeyRing
from bootvault.engine.manifest import CorruptManifest, Manifest, load_manifest
from bootvault.engine.packs import PACK_MAGIC
from bootvault.engine.parts import RepoParts
from bootvault.engine.restore import RestoreError, restore_to_file
from bootvault.engine.source import Extent, FileSource, VolumeSource

BS = 64 * 1024
NBLOCKS = 48
SIZE = NBLOCKS * BS + 12345  # partial final block (index 48)
TENANCY = "ocid1.tenancy.oc1..aaaa"
Progress = Callable[[int, int], None]


def _usr_bin_bytes(n: int) -> bytes:
    """Real, compressible binary content."""
    out = bytearray()
    for f in sorted(Path("/usr/bin").iterdir()):
        if len(out) >= n:
            break
        try:
            if f.is_file() and f.stat().st_size > 4096:
                out += f.read_bytes()[: n - len(out)]
        except OSError:
            continue
    out += b"fallback text " * ((n - len(out)) // 14 + 1)
    return bytes(out[:n])


def _write(path: Path, off: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, off)
    finally:
        os.close(fd)


def _make_image(path: Path) -> dict[int, bytes]:
    """Sparse image; returns the expected non-zero blocks by index."""
    blocks: dict[int, bytes] = {}
    text = _usr_bin_bytes(4 * BS)
    for i in range(4):  # 0-3 compressible; 4-9 hole
        blocks[i] = text[i * BS : (i + 1) * BS]
    blocks[10] = os.urandom(BS)
    blocks[11] = os.urandom(BS)
    blocks[13] = os.urandom(4096) + bytes(BS - 4096)  # only its first 4 KiB is allocated
    blocks[20] = blocks[0]  # duplicate content
    blocks[NBLOCKS] = os.urandom(12345)  # the partial final block
    with open(path, "wb") as f:
        f.truncate(SIZE)
    for i, data in blocks.items():
        _write(path, i * BS, data.rstrip(b"\0") if i == 13 else data)
    _write(path, 12 * BS, bytes(BS))  # zeros written as data: must not be stored
    return blocks


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class CountingStore:
    """A real LocalBlobStore that counts calls (not a mock: every call is forwarded)."""

    def __init__(self, inner: LocalBlobStore) -> None:
        self.inner = inner
        self.exists_calls = 0
        self.puts: list[str] = []

    def put(self, name: str, data: bytes | memoryview) -> None:
        self.puts.append(name)
        self.inner.put(name, data)

    def get(self, name: str) -> bytes:
        return self.inner.get(name)

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        return self.inner.get_range(name, offset, length)

    def exists(self, name: str) -> bool:
        self.exists_calls += 1
        return self.inner.exists(name)

    def delete(self, name: str) -> None:
        self.inner.delete(name)

    def list(self, prefix: str) -> Iterator[str]:
        return self.inner.list(prefix)


@pytest.fixture
def vault() -> dict[str, bytes]:
    """Wrapped customer keys, where the service keeps them in its database."""
    return {}


@pytest.fixture
def provider(vault: dict[str, bytes]) -> KeyRing:
    return KeyRing(os.urandom(32), vault.get)


@pytest.fixture
def keys(provider: KeyRing) -> DataKeys:
    return provider.data_keys(TENANCY, None)


@pytest.fixture
def store(tmp_path: Path) -> CountingStore:
    return CountingStore(LocalBlobStore(tmp_path / "store"))


def _backup(
    vol: Path | VolumeSource,
    store: BlobStore,
    keys: DataKeys,
    name: str,
    index: ScopeIndex | None = None,
    **kw: object,
) -> BackupResult:
    """Back up a raw image file (read whole), or a given source."""
    kw.setdefault("parent", None)
    kw.setdefault("full", True)
    parts = RepoParts(store, keys, index if index is not None else ScopeIndex(keys), block_size=BS)
    if not isinstance(vol, Path):
        return run_backup(vol, parts, name, **kw)  # type: ignore[arg-type]
    source = FileSource(vol, BS)
    try:
        return run_backup(source, parts, name, **kw)  # type: ignore[arg-type]
    finally:
        source.close()


def _restore(
    store: BlobStore, keys: DataKeys, manifest: Manifest, path: Path, progress: Progress | None = None
) -> None:
    """Restore into a raw file, with a fresh index (as a new worker process would)."""
    restore_to_file(RepoParts(store, keys, ScopeIndex(keys)), manifest, path, progress=progress)


@pytest.fixture(autouse=True)
def small_segments(monkeypatch: pytest.MonkeyPatch) -> None:
    """4-block reads, so progress runs several times per backup and ranges span segments."""
    monkeypatch.setattr(backup_mod, "SEGMENT", 4 * BS)


def _packs(store: BlobStore, keys: DataKeys) -> list[str]:
    return sorted(store.list(f"packs/{keys.scope}/"))


def test_roundtrip_holes_zeros_partial_block(tmp_path: Path, store: CountingStore, keys: DataKeys) -> None:
    vol = tmp_path / "vol.img"
    blocks = _make_image(vol)
    want = _sha(vol)
    calls: list[tuple[int, int]] = []
    res = _backup(vol, store, keys, "manifests/b1", progress=lambda d, t: calls.append((d, t)))
    assert res.logical_size == SIZE
    assert res.blocks_total == len(blocks) == 9
    assert res.blocks_new == 8  # block 20 duplicates block 0
    assert res.bytes_referenced == sum(len(b) for b in blocks.values())
    packs = _packs(store, keys)
    assert len(packs) == 1 == res.packs_written  # 8 small blocks fit one pack
    assert store.puts == [packs[0], f"index/{keys.scope}/{packs[0].rsplit('/', 1)[1]}", "manifests/b1"]
    assert res.bytes_new == store.inner.size(packs[0]) - len(PACK_MAGIC)
    assert res.bytes_new < res.bytes_referenced  # compressible blocks shrank
    assert [i for i, _ in res.manifest.entries()] == sorted(blocks)
    assert res.manifest.block_id(12) is None and res.manifest.block_id(5) is None
    assert res.manifest.block_id(0) == res.manifest.block_id(20) == codec.block_id(keys, blocks[0])
    # holes are never read: only the blocks holding data (0-3, 10-13, 20 and the partial 48)
    assert res.bytes_read == 9 * BS + (SIZE - NBLOCKS * BS)
    # progress counts the bytes to read, to the end, in order
    assert calls[-1] == (res.bytes_read, res.bytes_read) and {t for _, t in calls} == {res.bytes_read}
    assert len(calls) > 2 and [d for d, _ in calls] == sorted(d for d, _ in calls)

    loaded = load_manifest(store, keys, "manifests/b1")
    assert loaded == res.manifest
    out = tmp_path / "restored.img"
    out.write_bytes(b"stale data that must vanish" * 100000)
    rcalls: list[tuple[int, int]] = []
    _restore(store, keys, loaded, out, progress=lambda d, t: rcalls.append((d, t)))
    assert out.stat().st_size == SIZE
    assert _sha(out) == want
    assert out.stat().st_blocks * 512 < SIZE // 2  # sparse: only ~9 blocks allocated
    assert rcalls[-1][0] == rcalls[-1][1]


def test_full_then_incremental(tmp_path: Path, store: CountingStore, keys: DataKeys) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    sha_full = _sha(vol)
    full = _backup(vol, store, keys, "manifests/full")
    _write(vol, 2 * BS + 100, b"changed!")  # modify a data block
    _write(vol, 30 * BS, os.urandom(BS))  # fill a hole
    _write(vol, 11 * BS, bytes(BS))  # zero a data block
    sha_incr = _sha(vol)
    store.puts = []
    incr = _backup(vol, store, keys, "manifests/incr", parent=full.manifest, full=False)
    assert incr.blocks_new == 2 and incr.packs_written == 1
    assert len(store.puts) == 3  # one pack with the two blocks, its index, the manifest
    assert incr.blocks_total == full.blocks_total  # +1 filled hole, -1 zeroed block
    assert incr.manifest.block_id(11) is None and incr.manifest.block_id(30) is not None

    for name, sha in (("manifests/full", sha_full), ("manifests/incr", sha_incr)):
        out = tmp_path / f"{name.split('/')[1]}.img"
        _restore(store, keys, load_manifest(store, keys, name), out)
        assert _sha(out) == sha


class _ChangedRanges:
    """A source that lists only the given block-aligned ranges, as a dirty bitmap does: what it
    does not list is unchanged since the parent backup."""

    whole = False

    def __init__(self, path: Path, changed: list[Extent]) -> None:
        self.file = FileSource(path, BS)
        self.size = self.file.size
        self.changed = changed

    def extents(self) -> Iterator[Extent]:
        return iter(self.changed)

    def read(self, offset: int, length: int) -> bytearray:
        return self.file.read(offset, length)

    def close(self) -> None:
        self.file.close()


@pytest.mark.parametrize("full", [False, True])
def test_dirty_only_read_merges_the_parent(
    tmp_path: Path, store: CountingStore, keys: DataKeys, full: bool
) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    parent = _backup(vol, store, keys, "manifests/parent")
    _write(vol, 2 * BS + 100, b"changed!")  # modify a data block
    _write(vol, 30 * BS, os.urandom(BS))  # fill a hole (inside a listed range of 3 blocks)
    _write(vol, 11 * BS, bytes(BS))  # zero a data block
    _write(vol, NBLOCKS * BS + 10, os.urandom(100))  # change the partial final block
    changed = [(2 * BS, 3 * BS), (11 * BS, 12 * BS), (29 * BS, 32 * BS), (NBLOCKS * BS, SIZE)]
    source = _ChangedRanges(vol, changed)
    try:
        dirty = _backup(source, store, keys, "manifests/dirty", parent=parent.manifest, full=full)
    finally:
        source.close()
    assert dirty.bytes_read == sum(b - a for a, b in changed) < parent.bytes_read  # only listed ranges
    assert dirty.blocks_new == 3  # blocks 2, 30 and 48; block 11 is zeros now
    whole = _backup(vol, store, keys, "manifests/whole", parent=None, full=True)
    assert whole.blocks_new == 0  # the dirty backup stored every new block
    assert dirty.manifest == whole.manifest
    assert load_manifest(store, keys, "manifests/dirty") == whole.manifest
    assert dirty.blocks_total == whole.blocks_total and dirty.logical_size == SIZE
    assert dirty.bytes_referenced == whole.bytes_referenced
    assert dirty.manifest.block_id(11) is None and dirty.manifest.block_id(30) is not None
    out = tmp_path / "dirty.img"
    _restore(store, keys, load_manifest(store, keys, "manifests/dirty"), out)
    assert _sha(out) == _sha(vol)


def test_dirty_only_read_needs_a_parent(tmp_path: Path, store: CountingStore, keys: DataKeys) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    source = _ChangedRanges(vol, [(0, BS)])
    try:
        with pytest.raises(ValueError, match="needs the parent manifest"):
            _backup(source, store, keys, "manifests/orphan", parent=None, full=False)
        other_bs = Manifest.from_entries(SIZE, 2 * BS, [])
        with pytest.raises(ValueError, match="same block size"):
            _backup(source, store, keys, "manifests/orphan", parent=other_bs, full=False)
    finally:
        source.close()
    assert store.puts == [] and not store.exists("manifests/orphan")


def test_index_dedups_without_parent_and_across_processes(
    tmp_path: Path, store: CountingStore, keys: DataKeys
) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    _backup(vol, store, keys, "manifests/a")
    # A fresh ScopeIndex (as in another worker process) learns the blocks from the index objects.
    again = _backup(vol, store, keys, "manifests/b", full=False, index=ScopeIndex(keys))
    assert again.blocks_new == 0 and again.packs_written == 0


def test_full_self_heals_missing_pack(tmp_path: Path, store: CountingStore, keys: DataKeys) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    first = _backup(vol, store, keys, "manifests/a")
    (lost,) = _packs(store, keys)
    store.delete(lost)
    incr = _backup(vol, store, keys, "manifests/b", parent=first.manifest, full=False)
    assert incr.blocks_new == 0  # an incremental trusts the parent and the index
    with pytest.raises(RestoreError, match="is missing from the store"):
        _restore(store, keys, incr.manifest, tmp_path / "broken.img")
    healed = _backup(vol, store, keys, "manifests/c", parent=first.manifest, full=True)
    assert healed.blocks_new == 8 and len(_packs(store, keys)) == 1
    out = tmp_path / "out.img"
    _restore(store, keys, incr.manifest, out)  # the older backup is whole again
    assert _sha(out) == _sha(vol)


def test_no_dedup_across_tenancies_or_keys(
    tmp_path: Path, store: CountingStore, provider: KeyRing, vault: dict[str, bytes]
) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    kms = "ocid1.key.oc1.phx.aaaa.kkkk"
    vault[kms] = provider.new_wrapped_key(kms)
    variants = [
        provider.data_keys(TENANCY, None),
        provider.data_keys("ocid1.tenancy.oc1..bbbb", None),
        provider.data_keys(TENANCY, kms),
    ]
    assert len({k.scope for k in variants}) == 3
    for n, k in enumerate(variants):
        res = _backup(vol, store, k, f"manifests/m{n}")
        assert res.blocks_new == 8
        assert len(_packs(store, k)) == 1
    again = _backup(vol, store, variants[2], "manifests/again")
    assert again.blocks_new == 0 and again.bytes_new == 0
    with pytest.raises(CorruptManifest):  # another key cannot read the manifest
        load_manifest(store, variants[1], "manifests/m0")


def _flip(store: CountingStore, name: str, pos: int) -> bytes:
    good = store.get(name)
    bad = bytearray(good)
    bad[pos] ^= 0xFF
    store.inner.delete(name)
    store.put(name, bytes(bad))
    return good


def test_restore_detects_corrupt_and_missing_blocks(
    tmp_path: Path, store: CountingStore, keys: DataKeys
) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    res = _backup(vol, store, keys, "manifests/x")
    (pack,) = _packs(store, keys)
    index = ScopeIndex(keys)
    index.refresh(store)
    _, offset, length = index.lookup(res.manifest.block_id(11))  # type: ignore[misc]
    good = _flip(store, pack, offset + length // 2)
    with pytest.raises(RestoreError, match=rf"block 11 \(offset {11 * BS}\) failed authentication") as info:
        _restore(store, keys, res.manifest, tmp_path / "o1.img")
    assert pack in str(info.value)

    store.delete(pack)
    with pytest.raises(RestoreError, match=rf"is missing from the store: {pack} is gone"):
        _restore(store, keys, res.manifest, tmp_path / "o2.img")

    store.put(pack, good)
    _restore(store, keys, res.manifest, tmp_path / "o3.img")
    assert _sha(tmp_path / "o3.img") == _sha(vol)


def test_block_missing_from_every_pack(tmp_path: Path, store: CountingStore, keys: DataKeys) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    res = _backup(vol, store, keys, "manifests/y")
    for name in list(store.list(f"index/{keys.scope}/")):
        store.delete(name)
    with pytest.raises(RestoreError, match="no pack or object holds block"):
        _restore(store, keys, res.manifest, tmp_path / "o.img")


def test_many_packs_and_coalesced_reads(
    tmp_path: Path, store: CountingStore, keys: DataKeys, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 3 * BS)
    vol = tmp_path / "rand.img"
    vol.write_bytes(os.urandom(40 * BS + 7))
    res = _backup(vol, store, keys, "manifests/many")
    assert res.packs_written == len(_packs(store, keys)) >= 10
    out = tmp_path / "o.img"
    _restore(store, keys, res.manifest, out)
    assert _sha(out) == _sha(vol)


def test_manifest_tamper_and_move(tmp_path: Path, store: CountingStore, keys: DataKeys) -> None:
    vol = tmp_path / "vol.img"
    _make_image(vol)
    _backup(vol, store, keys, "manifests/t")
    blob = store.get("manifests/t")
    store.put("manifests/moved", blob)
    with pytest.raises(CorruptManifest, match="authentication"):
        load_manifest(store, keys, "manifests/moved")
    for pos in (0, len(blob) - 1, len(blob) // 2):
        bad = bytearray(blob)
        bad[pos] ^= 0x01
        store.put("manifests/t", bytes(bad))
        with pytest.raises(CorruptManifest):
            load_manifest(store, keys, "manifests/t")


def test_manifest_rejects_invalid_content() -> None:
    with pytest.raises(ValueError):
        Manifest.from_entries(10 * BS, BS, [(3, b"a" * 32), (2, b"b" * 32)])
    with pytest.raises(ValueError):
        Manifest.from_entries(10 * BS, BS, [(10, b"a" * 32)])
    m = Manifest.from_entries(10 * BS + 1, BS, [(10, b"a" * 32)])
    assert m.block_count == 11 and m.block_id(10) == b"a" * 32 and len(m) == 1


def test_an_unreachable_store_is_an_outage_not_damage(
    tmp_path: Path, store: CountingStore, keys: DataKeys
) -> None:
    """Restore and verify raise the store's own error, so nobody marks a backup damaged for it."""
    from bootvault.blobstore import BlobStoreError
    from bootvault.blobstore.s3 import S3BlobStore
    from bootvault.engine.restore import verify_manifest
    from tests.s3server import free_ports

    vol = tmp_path / "vol.img"
    _make_image(vol)
    res = _backup(vol, store, keys, "manifests/o")
    closed = f"http://127.0.0.1:{free_ports(1)[0]}"  # nothing listens there
    down = S3BlobStore(
        "bucket", endpoint=closed, access_key="k", secret_key="s", connect_timeout=1, max_attempts=0
    )
    with pytest.raises(BlobStoreError) as info:
        verify_manifest(RepoParts(down, keys, ScopeIndex(keys)), res.manifest)
    assert not isinstance(info.value, RestoreError)
    with pytest.raises(BlobStoreError):
        _restore(down, keys, res.manifest, tmp_path / "o.img")
