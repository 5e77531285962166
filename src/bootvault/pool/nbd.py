"""NBD clients (libnbd) for the engine: a source that reads a point-in-time export.

Each thread gets its own connection: a libnbd handle serialises the calls made on it, and
QSD serves every connection of an export alike (`can_multi_conn`). libnbd's binding is imported
at the first connection, not with this module, so a bootvault without it still starts (only its
backups need it) and a backup says what is missing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING

from bootvault import external
from bootvault.pool.errors import PoolError

if TYPE_CHECKING:
    import nbd

ALLOCATION = "base:allocation"
STATE_HOLE, STATE_ZERO, STATE_DIRTY = 1, 2, 1
STATUS_STEP = 1 << 30  # ask block status for up to 1 GiB at a time; the server may answer less
MAX_REQUEST = 32 << 20  # QEMU's NBD server refuses larger requests


class LibnbdMissing(PoolError):
    """libnbd's Python binding is not installed; the message says how to get it."""


def libnbd() -> ModuleType:
    try:
        return external.import_nbd()
    except external.Missing as exc:
        raise LibnbdMissing(external.LIBNBD.missing_line(str(exc))) from exc


def dirty_context(bitmap: str) -> str:
    return f"qemu:dirty-bitmap:{bitmap}"


class Connections:
    """One libnbd handle per thread, all closed together."""

    def __init__(self, uri: str, contexts: tuple[str, ...] = ()) -> None:
        self.uri, self.contexts = uri, contexts
        self._local = threading.local()
        self._all: list[nbd.NBD] = []
        self._lock = threading.Lock()

    def handle(self) -> nbd.NBD:
        h = getattr(self._local, "h", None)
        if h is None:
            nbd = libnbd()
            h = nbd.NBD()
            for ctx in self.contexts:
                h.add_meta_context(ctx)
            try:
                h.connect_uri(self.uri)
            except nbd.Error as exc:
                raise PoolError(f"cannot open {self.uri}: {exc}") from exc
            self._local.h = h
            with self._lock:
                self._all.append(h)
        return h

    def close(self) -> None:
        with self._lock:
            handles, self._all = self._all, []
        if not handles:
            return
        nbd = libnbd()
        for h in handles:
            with contextlib.suppress(nbd.Error):
                h.shutdown()
        self._local = threading.local()  # the handles close when the last reference goes


class NbdSource:
    """The engine's view of a volume at one instant: its size, the block-aligned ranges worth
    reading, and reads.

    whole=True: the ranges cover every allocated cluster; the rest reads as zeros.
    whole=False: the ranges cover what a dirty bitmap marks changed since the parent backup;
    the rest is unchanged and taken from the parent's manifest."""

    def __init__(self, uri: str, *, block_size: int, bitmap: str | None = None) -> None:
        self.block_size = block_size
        self.context = dirty_context(bitmap) if bitmap else ALLOCATION
        self.whole = bitmap is None
        self._conns = Connections(uri, (self.context,))
        self._buffers = threading.local()  # read_many's buffer, one per thread
        main = self._conns.handle()
        if not main.can_meta_context(self.context):
            raise PoolError(f"{uri} does not offer {self.context}")
        self.size = main.get_size()
        self.bytes_listed = 0

    def _wanted(self, flags: int) -> bool:
        if self.whole:
            return not flags & STATE_ZERO  # holes and zero clusters read as zeros: skip them
        return bool(flags & STATE_DIRTY)

    def _status(self, offset: int) -> tuple[list[tuple[int, int]], int]:
        """Wanted ranges from one block-status call, and where the answer ended."""
        found: list[tuple[int, int]] = []
        reached = offset

        def callback(context: str, start: int, entries: list[int], err: object) -> int:
            nonlocal reached
            if context != self.context:
                return 0
            pos = start
            for length, flags in zip(entries[::2], entries[1::2], strict=True):
                if self._wanted(flags):
                    found.append((pos, pos + length))
                pos += length
            reached = pos
            return 0

        self._conns.handle().block_status(min(STATUS_STEP, self.size - offset), offset, callback)
        if reached <= offset:
            raise PoolError(f"block status made no progress at offset {offset}")
        return found, reached

    def extents(self) -> Iterator[tuple[int, int]]:
        """Block-aligned, merged [start, end) ranges to read, in order."""
        bs, cur = self.block_size, None
        offset = 0
        while offset < self.size:
            found, offset = self._status(offset)
            for start, end in found:
                a, b = start // bs * bs, min(-(-end // bs) * bs, self.size)
                if cur is not None and a <= cur[1]:
                    cur[1] = max(cur[1], b)
                    continue
                if cur is not None:
                    self.bytes_listed += cur[1] - cur[0]
                    yield cur[0], cur[1]
                cur = [a, b]
        if cur is not None:
            self.bytes_listed += cur[1] - cur[0]
            yield cur[0], cur[1]

    def read(self, offset: int, length: int) -> bytearray:
        h = self._conns.handle()
        if length <= MAX_REQUEST:
            data: bytearray = h.pread(length, offset)
            return data
        out = bytearray()
        for pos in range(offset, offset + length, MAX_REQUEST):
            out += h.pread(min(MAX_REQUEST, offset + length - pos), pos)
        return out

    def read_many(self, ranges: list[tuple[int, int]]) -> bytearray:
        """The bytes of the ranges one after another from offset 0, in this thread's buffer (it
        may be longer; the thread's next call reuses it: no allocation, no page to fault in).
        Every request is sent before the first answer is awaited: QSD answers them back to back,
        so many small scattered ranges (a dirty bitmap after random writes) cost about one round
        trip together instead of one each."""
        h, nbd = self._conns.handle(), libnbd()
        total = sum(end - start for start, end in ranges)
        buf: bytearray | None = getattr(self._buffers, "buf", None)
        if buf is None or len(buf) < total:
            buf = self._buffers.buf = bytearray(total)
        view, at, cookies = memoryview(buf), 0, []
        try:
            for start, end in ranges:
                for pos in range(start, end, MAX_REQUEST):
                    n = min(MAX_REQUEST, end - pos)
                    cookies.append(h.aio_pread(nbd.Buffer.from_buffer(view[at : at + n]), pos))
                    at += n
        finally:
            while h.aio_in_flight() > 0:  # the answers land in our buffer: wait for every one
                h.poll(-1)
        for cookie in cookies:
            h.aio_command_completed(cookie)  # raises the error of a request that failed
        return buf

    def close(self) -> None:
        self._conns.close()
