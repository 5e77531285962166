"""Raw-file volume sources and sinks (engine/source.py) and the atomic/private file helpers
(fsutil.py). The pool's qcow2 volumes are tested with real QEMU elsewhere."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from bootvault.engine.source import FileSink, FileSource, aligned, data_extents
from bootvault.fsutil import TMP_PREFIX, atomic_path, write_private

MIB = 1 << 20
KIB = 1 << 10


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def _sparse(path: Path, size: int, pieces: dict[int, bytes]) -> None:
    with open(path, "wb") as f:
        f.truncate(size)
        for off, data in pieces.items():
            f.seek(off)
            f.write(data)


def _extents(path: Path, size: int) -> list[tuple[int, int]]:
    with open(path, "rb") as f:
        return list(data_extents(f.fileno(), size))


# -- data_extents and aligned ----------------------------------------------------------------


def test_data_extents_skip_holes(tmp_path: Path) -> None:
    p = tmp_path / "s.img"
    _sparse(p, 4 * MIB, {MIB: b"x" * 8192, 3 * MIB - 4096: b"y" * 8192})  # the second straddles 3 MiB
    assert _extents(p, 4 * MIB) == [(MIB, MIB + 8192), (3 * MIB - 4096, 3 * MIB + 4096)]
    assert _extents(p, MIB + 4096) == [(MIB, MIB + 4096)]  # clipped to the size asked for
    assert _extents(p, MIB) == []


def test_data_extents_of_an_empty_sparse_file(tmp_path: Path) -> None:
    p = tmp_path / "e.img"
    _sparse(p, 64 * MIB, {})
    assert _extents(p, 64 * MIB) == []
    assert _allocated(p) == 0


def test_data_extents_data_up_to_the_end(tmp_path: Path) -> None:
    p = tmp_path / "t.img"
    _sparse(p, 2 * MIB + 100, {2 * MIB: b"z" * 100})
    assert _extents(p, 2 * MIB + 100) == [(2 * MIB, 2 * MIB + 100)]


def test_aligned_rounds_out_merges_and_clamps() -> None:
    bs = 64 * KIB
    size = 10 * bs + 500
    got = list(
        aligned(
            iter(
                [
                    (100, 200),  # inside block 0
                    (bs - 1, bs + 1),  # straddles blocks 0 and 1: merges with the above
                    (3 * bs, 4 * bs),  # exactly block 3
                    (4 * bs, 4 * bs + 1),  # touches block 3: merges
                    (7 * bs + 5, 7 * bs + 6),  # block 7 alone
                    (10 * bs + 1, 10 * bs + 2),  # the partial last block: clamped to size
                ]
            ),
            bs,
            size,
        )
    )
    assert got == [(0, 2 * bs), (3 * bs, 5 * bs), (7 * bs, 8 * bs), (10 * bs, size)]
    assert list(aligned(iter([]), bs, size)) == []


# -- FileSource and FileSink -----------------------------------------------------------------


def test_file_source_lists_aligned_data_and_reads_holes_as_zeros(tmp_path: Path) -> None:
    bs = 64 * KIB
    p = tmp_path / "src.img"
    size = 8 * bs + 123
    data_a, data_b = os.urandom(100), os.urandom(50)
    _sparse(p, size, {bs + 10: data_a, 8 * bs: data_b})
    src = FileSource(p, bs)
    try:
        assert src.whole is True and src.size == size
        assert list(src.extents()) == [(bs, 2 * bs), (8 * bs, size)]
        block = src.read(bs, bs)
        assert bytes(block) == bytes(10) + data_a + bytes(bs - 110)
        assert bytes(src.read(3 * bs, bs)) == bytes(bs)  # a hole reads as zeros
        assert bytes(src.read(8 * bs, 123)) == data_b + bytes(73)
        with pytest.raises(EOFError):
            src.read(8 * bs, bs)  # past the end of the file
    finally:
        src.close()


def test_file_sink_truncates_and_leaves_holes(tmp_path: Path) -> None:
    p = tmp_path / "out.img"
    p.write_bytes(os.urandom(3 * MIB))  # stale content that must vanish
    size = 16 * MIB + 7
    sink = FileSink(p, size)
    try:
        assert sink.sparse is True
        payload = os.urandom(64 * KIB)
        sink.write(5 * MIB, payload)
        sink.write(size - 7, b"tail!!!")
        sink.flush()
    finally:
        sink.close()
    assert p.stat().st_size == size
    assert _allocated(p) <= 64 * KIB + 64 * KIB  # only what was written (plus the tail's page)
    head, tail = _extents(p, size)  # two data extents; everything else is a hole
    assert head == (5 * MIB, 5 * MIB + 64 * KIB)
    assert tail[1] == size and size - 64 * KIB <= tail[0] <= size - 7
    out = p.read_bytes()
    assert out[: 5 * MIB] == bytes(5 * MIB)  # the stale bytes are gone
    assert out[5 * MIB : 5 * MIB + 64 * KIB] == payload
    assert out[5 * MIB + 64 * KIB : size - 7] == bytes(size - 7 - 5 * MIB - 64 * KIB)
    assert out[-7:] == b"tail!!!"


def test_file_sink_creates_a_private_file(tmp_path: Path) -> None:
    p = tmp_path / "new.img"
    old = os.umask(0)
    try:
        FileSink(p, MIB).close()
    finally:
        os.umask(old)
    assert p.stat().st_size == MIB and _allocated(p) == 0
    assert p.stat().st_mode & 0o777 == 0o600


# -- fsutil.atomic_path ----------------------------------------------------------------------


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith(TMP_PREFIX))


def test_atomic_path_creates_and_replaces(tmp_path: Path) -> None:
    dst = tmp_path / "vol.qcow2"
    with atomic_path(dst) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(TMP_PREFIX) and not dst.exists()
        tmp.write_bytes(b"first")
    assert dst.read_bytes() == b"first"
    with atomic_path(dst, replace=True) as tmp:
        tmp.write_bytes(b"second")
        assert dst.read_bytes() == b"first"  # nothing changes under the final name until the end
    assert dst.read_bytes() == b"second"
    assert _leftovers(tmp_path) == []
    with atomic_path(tmp_path / "new", replace=False) as tmp:
        tmp.write_bytes(b"new")
    assert (tmp_path / "new").read_bytes() == b"new" and _leftovers(tmp_path) == []


def test_atomic_path_without_replace_refuses_an_existing_file(tmp_path: Path) -> None:
    dst = tmp_path / "keep.raw"
    dst.write_bytes(b"precious")
    with pytest.raises(FileExistsError), atomic_path(dst, replace=False) as tmp:
        tmp.write_bytes(b"intruder")
    assert dst.read_bytes() == b"precious"
    assert _leftovers(tmp_path) == []


def test_atomic_path_without_replace_refuses_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_bytes(b"target data")
    link = tmp_path / "link.raw"
    link.symlink_to(target)
    dangling = tmp_path / "dangling.raw"
    dangling.symlink_to(tmp_path / "nowhere")
    for dst in (link, dangling):
        with pytest.raises(FileExistsError), atomic_path(dst, replace=False) as tmp:
            tmp.write_bytes(b"intruder")
        assert dst.is_symlink()
    assert os.readlink(link) == str(target) and target.read_bytes() == b"target data"
    assert os.readlink(dangling) == str(tmp_path / "nowhere") and not (tmp_path / "nowhere").exists()
    assert _leftovers(tmp_path) == []


def test_atomic_path_failure_leaves_no_temp_file(tmp_path: Path) -> None:
    dst = tmp_path / "vol.qcow2"
    with pytest.raises(RuntimeError, match="fill failed"), atomic_path(dst) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("fill failed")
    assert not dst.exists()
    dst.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(dst) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("fill failed")
    assert dst.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vol.qcow2"]


# -- fsutil.write_private --------------------------------------------------------------------


def test_write_private_creates_owner_only(tmp_path: Path) -> None:
    p = tmp_path / "key"
    old = os.umask(0)
    try:
        write_private(p, b"secret")
    finally:
        os.umask(old)
    assert p.read_bytes() == b"secret"
    assert p.stat().st_mode & 0o777 == 0o600


def test_write_private_refuses_an_existing_file(tmp_path: Path) -> None:
    p = tmp_path / "key"
    p.write_bytes(b"original")
    with pytest.raises(FileExistsError):
        write_private(p, b"replacement")
    assert p.read_bytes() == b"original"


def test_write_private_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not yours")
    link = tmp_path / "key"
    link.symlink_to(target)
    with pytest.raises(OSError) as info:
        write_private(link, b"secret", exclusive=False)  # O_NOFOLLOW: even when replacing is allowed
    assert info.value.errno == errno.ELOOP
    with pytest.raises(FileExistsError):
        write_private(link, b"secret")
    dangling = tmp_path / "key2"
    dangling.symlink_to(tmp_path / "created-through-link")
    with pytest.raises(OSError):
        write_private(dangling, b"secret", exclusive=False)
    assert target.read_bytes() == b"not yours" and link.is_symlink()
    assert not (tmp_path / "created-through-link").exists()
