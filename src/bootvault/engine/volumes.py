"""Volume-pool file operations (sparse-aware) and the sparse-read helpers the engine shares.

Volumes are sparse raw files. Copies map data extents with SEEK_DATA/SEEK_HOLE, never read
holes, and never write all-zero blocks, so destinations stay sparse. Files are produced as
a tmp file in the destination directory and renamed into place (atomic).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import os
import secrets
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

from bootvault.blobstore.local import fsync_dir

Progress = Callable[[int, int], None]
Segment = tuple[int, int]  # absolute [start, end) byte range holding data
COPY_BLOCK = 1 << 20


def data_extents(fd: int, size: int) -> Iterator[Segment]:
    """Yield the data extents [start, end) of the first size bytes of fd (holes skipped)."""
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # only a hole remains
                return
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):  # no hole support: all data
                yield off, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        off = end


def block_segments(extents: Iterator[Segment], block_size: int) -> Iterator[tuple[int, list[Segment]]]:
    """Group extents by block: yield (block index, data segments inside that block)."""
    current, segs = -1, []
    for start, end in extents:
        pos = start
        while pos < end:
            index = pos // block_size
            seg_end = min(end, (index + 1) * block_size)
            if index != current:
                if segs:
                    yield current, segs
                current, segs = index, []
            segs.append((pos, seg_end))
            pos = seg_end
    if segs:
        yield current, segs


def read_block(fd: int, buf: bytearray, block_off: int, length: int, segs: list[Segment]) -> None:
    """Fill buf[:length] with the range at block_off (a block or a segment): data read, gaps zeroed.

    Raises EOFError if the file is shorter than expected (it shrank while being read).
    """
    view = memoryview(buf)
    if not (len(segs) == 1 and segs[0] == (block_off, block_off + length)):
        view[:length] = bytes(length)
    for start, end in segs:
        pos = start
        while pos < end:
            n = os.preadv(fd, [view[pos - block_off : end - block_off]], pos)
            if n == 0:
                raise EOFError(f"unexpected end of file at offset {pos}")
            pos += n


def is_zero(buf: bytearray, length: int, zero: bytes) -> bool:
    """True if buf[:length] is all zeros (zero is a bytes of len(buf) zeros)."""
    if length == len(buf):
        return buf == zero
    return buf[:length] == zero[:length]


class ProgressReporter:
    """Throttled progress: calls back at most about every 1% and always at the end."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total, self.callback = total, callback
        self.step = max(1, total // 100)
        self.last = -1

    def update(self, done: int) -> None:
        if self.callback is not None and (self.last < 0 or done - self.last >= self.step):
            self.last = done
            self.callback(min(done, self.total), self.total)

    def finish(self) -> None:
        if self.callback is not None and self.last != self.total:
            self.last = self.total
            self.callback(self.total, self.total)


_SYNC_FILE_RANGE_WRITE = 2
_libc: Any = None


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing fd's dirty pages now (sync_file_range, asynchronous), so
    the final fsync of a large restore has little left to wait for. A no-op where unavailable."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
    if _libc and hasattr(_libc, "sync_file_range"):
        _libc.sync_file_range(
            ctypes.c_int(fd),
            ctypes.c_longlong(0),
            ctypes.c_longlong(0),
            ctypes.c_uint(_SYNC_FILE_RANGE_WRITE),
        )


@contextlib.contextmanager
def _atomic_file(dst: str | os.PathLike[str], size: int) -> Iterator[int]:
    """Yield an fd of a tmp file sized (sparse) to size; fsync and rename it onto dst on success."""
    dst = os.path.abspath(os.fspath(dst))
    directory = os.path.dirname(dst)
    tmp = os.path.join(directory, f".tmp-{secrets.token_hex(8)}-{os.path.basename(dst)[:100]}")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size)
        yield fd
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.rename(tmp, dst)
        fsync_dir(directory)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _sparse_copy(
    src_fd: int, src_size: int, write: Callable[[int, memoryview], None], reporter: ProgressReporter
) -> None:
    """Call write(offset, data) for every non-zero COPY_BLOCK of src (holes never read)."""
    buf, zero = bytearray(COPY_BLOCK), bytes(COPY_BLOCK)
    reporter.update(0)
    for index, segs in block_segments(data_extents(src_fd, src_size), COPY_BLOCK):
        off = index * COPY_BLOCK
        length = min(COPY_BLOCK, src_size - off)
        read_block(src_fd, buf, off, length, segs)
        if not is_zero(buf, length, zero):
            write(off, memoryview(buf)[:length])
        reporter.update(off + length)


def _pwrite_all(fd: int, off: int, data: memoryview) -> None:
    while data:
        n = os.pwrite(fd, data, off)
        data, off = data[n:], off + n


def create_empty(path: str | os.PathLike[str], size_bytes: int) -> None:
    """Create (or replace) path as a sparse file of size_bytes."""
    if size_bytes < 0:
        raise ValueError("size must be >= 0")
    with _atomic_file(path, size_bytes):
        pass


def import_image(
    src: str | os.PathLike[str],
    dst: str | os.PathLike[str],
    size_bytes: int,
    progress: Progress | None = None,
) -> None:
    """Copy image src into a new sparse dst of size_bytes (>= src size; the tail reads as zeros)."""
    with open(src, "rb") as f:
        src_size = os.fstat(f.fileno()).st_size
        if src_size > size_bytes:
            raise ValueError(f"image is {src_size} bytes, larger than the volume size {size_bytes}")
        reporter = ProgressReporter(size_bytes, progress)
        with _atomic_file(dst, size_bytes) as out:
            _sparse_copy(f.fileno(), src_size, lambda off, data: _pwrite_all(out, off, data), reporter)
    reporter.finish()


def _copy_range(src_fd: int, dst_fd: int, start: int, end: int) -> None:
    """Copy [start, end) in the kernel (copy_file_range); plain reads and writes where it can't."""
    pos = start
    try:
        while pos < end:
            n = os.copy_file_range(src_fd, dst_fd, min(end - pos, 1 << 30), pos, pos)
            if n == 0:
                raise EOFError(f"unexpected end of file at offset {pos}")
            pos += n
    except OSError as exc:
        if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise
        while pos < end:
            data = os.pread(src_fd, min(end - pos, COPY_BLOCK), pos)
            if not data:
                raise EOFError(f"unexpected end of file at offset {pos}") from None
            _pwrite_all(dst_fd, pos, memoryview(data))
            pos += len(data)


def copy_volume(
    src: str | os.PathLike[str], dst: str | os.PathLike[str], progress: Progress | None = None
) -> None:
    """Clone src to dst: its data extents are copied and its holes stay holes."""
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        reporter = ProgressReporter(size, progress)
        reporter.update(0)
        with _atomic_file(dst, size) as out:
            for start, end in data_extents(f.fileno(), size):
                _copy_range(f.fileno(), out, start, end)
                reporter.update(end)
    reporter.finish()


def export_volume(
    src: str | os.PathLike[str], dst_file: str | os.PathLike[str] | BinaryIO, progress: Progress | None = None
) -> None:
    """Write src's full logical size to dst_file.

    A path gets a sparse copy (tmp + rename). A writable binary file object gets every byte,
    zeros included, written sequentially from its current position (it may be a stream).
    """
    if isinstance(dst_file, (str, os.PathLike)):
        copy_volume(src, dst_file, progress)
        return
    with open(src, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        reporter = ProgressReporter(size, progress)
        pos = 0

        def write(off: int, data: memoryview) -> None:
            nonlocal pos
            _write_zeros(dst_file, off - pos)
            dst_file.write(data)
            pos = off + len(data)

        _sparse_copy(f.fileno(), size, write, reporter)
        _write_zeros(dst_file, size - pos)
    dst_file.flush()
    reporter.finish()


def _write_zeros(out: BinaryIO, count: int) -> None:
    chunk = bytes(min(count, COPY_BLOCK))
    while count > 0:
        n = min(count, len(chunk))
        out.write(chunk[:n] if n < len(chunk) else chunk)
        count -= n


def grow(path: str | os.PathLike[str], new_size_bytes: int) -> None:
    """Extend path to new_size_bytes (sparse tail); shrinking is refused."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        size = os.fstat(fd).st_size
        if new_size_bytes < size:
            raise ValueError(f"cannot shrink a volume ({size} -> {new_size_bytes} bytes)")
        if new_size_bytes > size:
            os.ftruncate(fd, new_size_bytes)
            os.fsync(fd)
    finally:
        os.close(fd)
