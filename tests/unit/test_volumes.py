from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from bootvault.engine.volumes import (
    block_segments,
    copy_volume,
    create_empty,
    data_extents,
    export_volume,
    grow,
    import_image,
)

MIB = 1 << 20


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _allocated(path: Path) -> int:
    return path.stat().st_blocks * 512


def _make_image(path: Path) -> bytes:
    """5.5 MiB: random MiB, hole, zeros written as data, text, hole, random tail (partial)."""
    size = 5 * MIB + MIB // 2 + 123
    with open(path, "wb") as f:
        f.truncate(size)
        f.write(os.urandom(MIB))
        f.seek(2 * MIB)
        f.write(bytes(MIB))  # allocated zeros
        f.write(b"bootvault text block\n" * (MIB // 21))
        f.seek(size - 5000)
        f.write(os.urandom(5000))
    return path.read_bytes()


def _progress() -> tuple[list[tuple[int, int]], object]:
    calls: list[tuple[int, int]] = []
    return calls, lambda done, total: calls.append((done, total))


def _check_progress(calls: list[tuple[int, int]], total: int) -> None:
    assert calls and calls[-1] == (total, total)
    dones = [d for d, _ in calls]
    assert dones == sorted(dones) and all(t == total for _, t in calls)


def test_create_empty_is_sparse(tmp_path: Path) -> None:
    p = tmp_path / "v.img"
    create_empty(p, 64 * MIB)
    assert p.stat().st_size == 64 * MIB
    assert _allocated(p) == 0
    with open(p, "rb") as f:
        assert list(data_extents(f.fileno(), 64 * MIB)) == []
    assert [x.name for x in tmp_path.iterdir()] == ["v.img"]


def test_data_extents_and_block_segments(tmp_path: Path) -> None:
    p = tmp_path / "s.img"
    with open(p, "wb") as f:
        f.truncate(4 * MIB)
        f.seek(MIB)
        f.write(b"x" * 8192)
        f.seek(3 * MIB - 4096)
        f.write(b"y" * 8192)  # straddles the 3 MiB boundary
    with open(p, "rb") as f:
        ext = list(data_extents(f.fileno(), 4 * MIB))
    assert ext == [(MIB, MIB + 8192), (3 * MIB - 4096, 3 * MIB + 4096)]
    segs = list(block_segments(iter(ext), MIB))
    assert segs == [
        (1, [(MIB, MIB + 8192)]),
        (2, [(3 * MIB - 4096, 3 * MIB)]),
        (3, [(3 * MIB, 3 * MIB + 4096)]),
    ]


def test_import_image_pads_and_stays_sparse(tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    data = _make_image(src)
    dst = tmp_path / "pool" / "vol.img"
    dst.parent.mkdir()
    calls, cb = _progress()
    import_image(src, dst, 8 * MIB, progress=cb)
    out = dst.read_bytes()
    assert len(out) == 8 * MIB
    assert out[: len(data)] == data and out[len(data) :] == bytes(8 * MIB - len(data))
    # random MiB + text MiB + the 1 MiB block holding the tail; written zeros were skipped
    assert _allocated(dst) <= 3 * MIB + 64 * 1024
    _check_progress(calls, 8 * MIB)
    assert sorted(x.name for x in dst.parent.iterdir()) == ["vol.img"]


def test_import_rejects_larger_image_and_leaves_nothing(tmp_path: Path) -> None:
    src = tmp_path / "src.img"
    _make_image(src)
    with pytest.raises(ValueError, match="larger than the volume"):
        import_image(src, tmp_path / "dst.img", MIB)
    assert not (tmp_path / "dst.img").exists()
    assert sorted(x.name for x in tmp_path.iterdir()) == ["src.img"]


def test_copy_volume_roundtrip(tmp_path: Path) -> None:
    src = tmp_path / "a.img"
    _make_image(src)
    dst = tmp_path / "b.img"
    dst.write_bytes(b"old content to be replaced")
    calls, cb = _progress()
    copy_volume(src, dst, progress=cb)
    assert _sha(dst) == _sha(src)
    assert dst.stat().st_size == src.stat().st_size
    assert _allocated(dst) == _allocated(
        src
    )  # extents copied in the kernel: holes stay holes, data stays data
    _check_progress(calls, src.stat().st_size)


def test_export_to_path_and_stream(tmp_path: Path) -> None:
    src = tmp_path / "a.img"
    data = _make_image(src)
    out_path = tmp_path / "export.img"
    export_volume(src, out_path)
    assert out_path.read_bytes() == data
    stream = io.BytesIO()
    stream.write(b"PREFIX")
    calls, cb = _progress()
    export_volume(src, stream, progress=cb)
    assert stream.getvalue() == b"PREFIX" + data
    _check_progress(calls, len(data))
    with open(tmp_path / "via_fileobj.img", "wb") as f:
        export_volume(src, f)
    assert (tmp_path / "via_fileobj.img").read_bytes() == data


def test_export_empty_volume(tmp_path: Path) -> None:
    src = tmp_path / "e.img"
    create_empty(src, 3 * MIB + 7)
    stream = io.BytesIO()
    export_volume(src, stream)
    assert stream.getvalue() == bytes(3 * MIB + 7)


def test_grow(tmp_path: Path) -> None:
    p = tmp_path / "g.img"
    _make_image(p)
    before = p.read_bytes()
    grow(p, 16 * MIB)
    after = p.read_bytes()
    assert len(after) == 16 * MIB and after[: len(before)] == before
    assert after[len(before) :] == bytes(16 * MIB - len(before))
    grow(p, 16 * MIB)  # same size: no-op
    with pytest.raises(ValueError, match="shrink"):
        grow(p, MIB)
    assert p.stat().st_size == 16 * MIB
