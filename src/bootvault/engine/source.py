"""What the engine reads and writes volumes through: a source (a volume at one instant) and a
sink (a new volume being filled). The pool implements both over NBD (pool/nbd.py); the raw-file
versions here serve tests, tools and images outside the pool."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from typing import Protocol, runtime_checkable

from bootvault.engine.progress import start_writeback

Extent = tuple[int, int]  # [start, end) in bytes


class VolumeSource(Protocol):
    size: int
    whole: bool  # True: unlisted ranges read as zeros; False: they equal the parent backup's

    def extents(self) -> Iterator[Extent]:
        """Block-aligned, merged, increasing ranges worth reading."""
        ...

    def read(self, offset: int, length: int) -> bytes | bytearray:
        """Exactly `length` bytes at offset; safe to call from several threads."""
        ...


@runtime_checkable
class BatchSource(Protocol):
    """A source that reads several ranges in one go faster than one by one (over a network,
    one round trip for all of them)."""

    def read_many(self, ranges: list[Extent]) -> bytearray:
        """The bytes of the [start, end) ranges one after another from offset 0 (the buffer may
        be longer), valid until the same thread's next call."""
        ...


class VolumeSink(Protocol):
    sparse: bool  # True: ranges never written read as zeros, so zero pages need no write

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None: ...

    def flush(self) -> None: ...


def data_extents(fd: int, size: int) -> Iterator[Extent]:
    """The data extents [start, end) of the first size bytes of fd (holes skipped)."""
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


def aligned(extents: Iterator[Extent], block_size: int, size: int) -> Iterator[Extent]:
    """Round extents out to whole blocks and merge those that touch."""
    cur: list[int] | None = None
    for start, end in extents:
        a, b = start // block_size * block_size, min(-(-end // block_size) * block_size, size)
        if cur is not None and a <= cur[1]:
            cur[1] = max(cur[1], b)
            continue
        if cur is not None:
            yield cur[0], cur[1]
        cur = [a, b]
    if cur is not None:
        yield cur[0], cur[1]


class FileSource:
    """A raw image file read whole (holes skipped). Nothing freezes it: callers make sure no
    one writes it meanwhile."""

    whole = True

    def __init__(self, path: str | os.PathLike[str], block_size: int) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.size = os.fstat(self.fd).st_size
        self.block_size = block_size

    def extents(self) -> Iterator[Extent]:
        return aligned(data_extents(self.fd, self.size), self.block_size, self.size)

    def read(self, offset: int, length: int) -> bytearray:
        buf = bytearray(length)
        view, pos = memoryview(buf), 0
        while pos < length:
            n = os.preadv(self.fd, [view[pos:]], offset + pos)
            if n == 0:
                raise EOFError(f"unexpected end of file at offset {offset + pos}")
            pos += n
        return buf

    def close(self) -> None:
        os.close(self.fd)


class FileSink:
    """A raw file of `size` bytes, truncated first so that unwritten ranges are holes. Writeback
    starts as data arrives, so the final fsync has little left to wait for. `sparse` also leaves
    the all-zero 4 KiB pages of stored blocks as holes, at the cost of scanning every block."""

    WRITEBACK_EVERY = 64 << 20

    def __init__(self, path: str | os.PathLike[str], size: int, *, sparse: bool = True) -> None:
        self.sparse = sparse
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.ftruncate(self.fd, 0)
        os.ftruncate(self.fd, size)
        self._unflushed = 0
        self._kick: Callable[[int], None] = start_writeback

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self.fd, view, offset)
            view, offset = view[n:], offset + n
        self._unflushed += len(data)
        if self._unflushed >= self.WRITEBACK_EVERY:
            self._unflushed = 0
            self._kick(self.fd)

    def flush(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
