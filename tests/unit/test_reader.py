"""engine/reader.py: random access to a backup's bytes, verified, with read-ahead."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from bootvault.blobstore import LocalBlobStore
from bootvault.engine import reader as reader_mod
from bootvault.engine.backup import run_backup
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import KeyRing
from bootvault.engine.parts import RepoParts
from bootvault.engine.reader import BackupReader, ReadError
from bootvault.engine.source import FileSource

BS = 64 << 10


def _image(path: Path) -> bytes:
    rng = random.Random(7)
    size = 40 * BS + 999
    data = bytearray(size)
    for block in (0, 1, 2, 5, 9, 10, 11, 30, 40):
        start = block * BS
        data[start : start + BS] = rng.randbytes(min(BS, size - start))
    data[20 * BS : 20 * BS + 4096] = b"x" * 4096
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.fixture
def backup(tmp_path: Path) -> tuple[BackupReader, bytes, LocalBlobStore]:
    image = _image(tmp_path / "vol.img")
    store = LocalBlobStore(tmp_path / "store")
    keys = KeyRing(os.urandom(32), lambda _k: None).data_keys("ocid1.tenancy.oc1..t", None)
    source = FileSource(tmp_path / "vol.img", BS)
    parts = RepoParts(store, keys, ScopeIndex(keys), block_size=BS)
    result = run_backup(source, parts, "manifests/b", parent=None, full=True)
    source.close()
    index = ScopeIndex(keys)
    index.refresh(store)
    return BackupReader(store, keys, index, result.manifest), image, store


def test_reads_every_byte_back(backup: tuple[BackupReader, bytes, LocalBlobStore]) -> None:
    reader, image, _ = backup
    out = bytearray(len(image))
    reader.read_into(memoryview(out), 0)
    assert bytes(out) == image
    rng = random.Random(3)
    for _ in range(200):  # unaligned, backwards and forwards
        off = rng.randrange(len(image))
        n = rng.randrange(1, min(3 * BS, len(image) - off) + 1)
        buf = bytearray(n)
        reader.read_into(memoryview(buf), off)
        assert bytes(buf) == image[off : off + n]


def test_extents_mark_data_and_holes(backup: tuple[BackupReader, bytes, LocalBlobStore]) -> None:
    reader, image, _ = backup
    runs = list(reader.extents())
    assert sum(length for _, length, _ in runs) == len(image)
    for start, length, is_data in runs:
        if not is_data:
            assert image[start : start + length] == bytes(length)
        else:
            assert image[start : start + length] != bytes(length)
    pos = 0
    for start, length, _ in runs:  # contiguous, in order
        assert start == pos
        pos += length
    middle = list(reader.extents_in(5 * BS + 100, 11 * BS))
    assert middle[0][0] == 5 * BS + 100 and sum(n for _, n, _ in middle) == 11 * BS - (5 * BS + 100)


def test_a_damaged_block_is_an_error_never_zeros(
    backup: tuple[BackupReader, bytes, LocalBlobStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    reader, image, store = backup
    monkeypatch.setattr(reader_mod, "READ_AHEAD", 1)  # no read-ahead: each block on its own
    for pack in Path(store.root, "packs").rglob("*"):
        if pack.is_file():
            data = bytearray(pack.read_bytes())
            data[-100] ^= 0xFF  # the last stored block
            pack.write_bytes(bytes(data))
    failures = 0
    for block in range(len(image) // BS + 1):
        buf = bytearray(min(BS, len(image) - block * BS))
        try:
            reader.read_into(memoryview(buf), block * BS)
        except ReadError as exc:
            failures += 1
            assert f"block {block}" in str(exc)
            continue
        assert bytes(buf) == image[block * BS : block * BS + len(buf)]
    assert failures == 1


def test_out_of_range_reads_are_refused(backup: tuple[BackupReader, bytes, LocalBlobStore]) -> None:
    reader, image, _ = backup
    with pytest.raises(ReadError):
        reader.read_into(memoryview(bytearray(10)), len(image) - 5)
