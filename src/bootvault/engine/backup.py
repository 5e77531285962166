"""Backup: image a sparse volume file into content-addressed, encrypted blocks plus a manifest.

The main thread maps data extents and reads 4 MiB block-aligned segments into a few reused
buffers; a bounded pool (2 segments in flight per worker) skips zero blocks, hashes every block,
and compresses and encrypts the ones the scope does not hold yet. The main thread appends those
to packs in order; packs upload in the background. Consistency is checked with stat signatures
around the whole read (see _stable_stat).
"""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bootvault.blobstore import BlobStore
from bootvault.engine import codec
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import Manifest, save_manifest
from bootvault.engine.packs import PackWriter
from bootvault.engine.volumes import ProgressReporter, Segment, data_extents, read_block

RACY_NS = 50_000_000  # a timestamp younger than this may hide a same-tick write
MAX_SETTLE_S = 1.0  # give up waiting for a quiet volume after this long
IN_FLIGHT_PER_WORKER = 2
DEFAULT_BLOCK_SIZE = 64 << 10  # change-detection granularity; see docs/architecture.md


class VolumeChanged(Exception):
    """The volume kept changing while being imaged; no consistent image was obtained."""


class _Torn(Exception):
    """Internal: this attempt saw the file change under it."""


@dataclass
class BackupResult:
    manifest: Manifest
    logical_size: int
    blocks_total: int
    blocks_new: int
    bytes_new: int
    bytes_referenced: int
    image_time: datetime
    packs_written: int = 0


@dataclass
class _Pass:
    """Accumulates one attempt's manifest entries and counters."""

    indices: array = field(default_factory=lambda: array("Q"))
    ids: bytearray = field(default_factory=bytearray)
    blocks_new: int = 0
    bytes_new: int = 0
    bytes_referenced: int = 0


def _signature(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_dev)


def _stable_stat(path: str) -> tuple[os.stat_result, datetime]:
    """stat path, waiting until its timestamps are older than RACY_NS (racy-git trick).

    Kernel timestamps are coarse: a write in the same tick as our stat could leave mtime
    unchanged. Once mtime/ctime are clearly in the past, any later write moves them.
    Returns the stat and the UTC instant it was taken.
    """
    deadline = time.monotonic() + MAX_SETTLE_S
    while True:
        taken = datetime.now(UTC)
        st = os.stat(path)
        age = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns)
        if age >= RACY_NS or time.monotonic() >= deadline:
            return st, taken
        time.sleep(min(RACY_NS - age, RACY_NS) / 1e9)  # bounded even if mtime is in the future
        again = os.stat(path)
        if _signature(again) == _signature(st):
            return again, taken  # unchanged since `taken`: the image instant stands


SEGMENT = 4 << 20  # bytes read per task: large reads, few tasks, per-block work stays in C


def _data_ranges(fd: int, size: int, block_size: int) -> Iterator[tuple[int, int, list[Segment]]]:
    """Block-aligned ranges [start, end) covering the data extents, with the extents inside them.

    Holes are never read; a block that is partly hole is read with its hole part zeroed."""
    cur: list[Any] | None = None
    for start, end in data_extents(fd, size):
        a = start // block_size * block_size
        b = min(-(-end // block_size) * block_size, size)
        if cur is not None and a <= cur[1]:
            cur[1] = max(cur[1], b)
            cur[2].append((start, end))
            continue
        if cur is not None:
            yield cur[0], cur[1], cur[2]
        cur = [a, b, [(start, end)]]
    if cur is not None:
        yield cur[0], cur[1], cur[2]


def _segments(fd: int, size: int, block_size: int) -> Iterator[tuple[int, int, list[Segment]]]:
    """Split the data ranges into SEGMENT-sized, block-aligned reads."""
    step = max(block_size, SEGMENT // block_size * block_size)
    for start, end, extents in _data_ranges(fd, size, block_size):
        for seg in range(start, end, step):
            seg_end = min(seg + step, end)
            inside = [(max(s, seg), min(e, seg_end)) for s, e in extents if s < seg_end and e > seg]
            yield seg, seg_end, inside


class _BlockWorker:
    """Per-block decisions, run in pool threads: zero? known? else encode for a pack."""

    def __init__(
        self, keys: DataKeys, block_size: int, index: ScopeIndex, parent: Manifest | None, avoid: set[str]
    ) -> None:
        self.keys, self.block_size, self.index, self.parent = keys, block_size, index, parent
        self.avoid = avoid  # condemned packs: a block found only there must be stored again
        self.zero = bytes(block_size)
        self._pending: set[bytes] = set()
        self._lock = threading.Lock()

    def _claim(self, bid: bytes) -> bool:
        with self._lock:
            if bid in self._pending:
                return False
            self._pending.add(bid)
            return True

    def _stored(self, bid: bytes) -> bool:
        home = self.index.lookup(bid)
        return home is not None and home[0] not in self.avoid

    def segment(self, start: int, buf: bytearray, length: int) -> list[tuple[int, bytes, bytes | None, int]]:
        """(block index, id, encoded blob if new else None, plaintext length) per non-zero block."""
        out = []
        view, bs, zero = memoryview(buf), self.block_size, self.zero
        for off in range(0, length, bs):
            end = min(off + bs, length)
            # startswith compares in place (memcmp); == on a memoryview slice goes byte by byte.
            if buf.startswith(zero if end - off == bs else zero[: end - off], off, end):
                continue
            block = view[off:end]
            index = (start + off) // bs
            bid = codec.block_id(self.keys, block)
            known = (self.parent is not None and self.parent.block_id(index) == bid) or self._stored(bid)
            blob = None if known or not self._claim(bid) else codec.encode(self.keys, block, bid)
            out.append((index, bid, blob, len(block)))
        return out


def _one_pass(
    fd: int, size: int, worker: _BlockWorker, packer: PackWriter, workers: int, reporter: ProgressReporter
) -> _Pass:
    """Read every data segment once; the pool hashes and encodes; results are packed in order."""
    out = _Pass()
    limit = max(1, workers) * IN_FLIGHT_PER_WORKER
    seg_size = max(worker.block_size, SEGMENT // worker.block_size * worker.block_size)
    free: list[bytearray] = []
    inflight: deque[tuple[int, int, bytearray, Future[list[tuple[int, bytes, bytes | None, int]]]]] = deque()

    def collect() -> None:
        _, end, buf, fut = inflight.popleft()
        for index, bid, blob, length in fut.result():
            out.indices.append(index)
            out.ids.extend(bid)
            out.bytes_referenced += length
            if blob is not None:
                packer.add(bid, blob)
                out.blocks_new += 1
                out.bytes_new += len(blob)
        free.append(buf)
        reporter.update(end)

    reporter.update(0)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bv-backup") as pool:
        try:
            for start, end, inside in _segments(fd, size, worker.block_size):
                while len(inflight) >= limit:
                    collect()
                buf = free.pop() if free else bytearray(seg_size)
                try:
                    read_block(fd, buf, start, end - start, inside)
                except EOFError as exc:  # the file shrank under us: a torn image
                    raise _Torn(str(exc)) from None
                inflight.append((start, end, buf, pool.submit(worker.segment, start, buf, end - start)))
            while inflight:
                collect()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return out


def _attempt(
    path: str,
    worker: _BlockWorker,
    packer: PackWriter,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> tuple[_Pass, int, datetime] | None:
    """One imaging attempt; None if the volume changed while it was read."""
    before, image_time = _stable_stat(path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _signature(os.fstat(fd)) != _signature(before):
            return None
        reporter = ProgressReporter(before.st_size, progress)
        try:
            result = _one_pass(fd, before.st_size, worker, packer, workers, reporter)
        except _Torn:
            return None
    finally:
        os.close(fd)
    if _signature(os.stat(path)) != _signature(before):
        return None
    reporter.finish()
    return result, before.st_size, image_time


def run_backup(
    volume_path: str | os.PathLike[str],
    store: BlobStore,
    keys: DataKeys,
    manifest_name: str,
    *,
    parent: Manifest | None,
    full: bool,
    index: ScopeIndex | None = None,
    exclude_packs: set[str] | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: Callable[[int, int], None] | None = None,
    max_attempts: int = 3,
    workers: int = 2,
) -> BackupResult:
    """Image volume_path consistently, store new blocks in packs, then save the manifest last.

    Every block already in the scope's index (or, for an incremental, equal to the parent's block
    at the same place) is referenced, not stored again. A FULL ignores the parent and first drops
    index entries whose pack object has gone missing, so such blocks are stored anew.
    `exclude_packs` are packs the collector has condemned: they are never deduplicated against.
    """
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    if parent is not None and (full or parent.block_size != block_size):
        parent = None  # a FULL never trusts the parent; a different block size can't be compared
    index = index if index is not None else ScopeIndex(keys)
    avoid = set(exclude_packs or ())
    index.refresh(store, demote=avoid)
    if full:
        index.verify_packs(store)
    worker = _BlockWorker(keys, block_size, index, parent, avoid)
    packer = PackWriter(store, keys, uploaders=max(1, workers), on_stored=index.add_pack)
    path = os.fspath(volume_path)
    try:
        for _ in range(max(1, max_attempts)):
            got = _attempt(path, worker, packer, workers, progress)
            if got is None:
                continue
            out, size, image_time = got
            packer.flush()  # every new block is in a whole pack before the manifest names it
            manifest = Manifest(size, block_size, out.indices, bytes(out.ids))
            save_manifest(store, keys, manifest_name, manifest)
            return BackupResult(
                manifest,
                size,
                len(out.indices),
                out.blocks_new,
                out.bytes_new,
                out.bytes_referenced,
                image_time,
                packs_written=packer.packs_written,
            )
        packer.flush()
    finally:
        packer.close()
    n = max(1, max_attempts)
    raise VolumeChanged(
        f"the volume changed {n} time{'s' if n != 1 else ''} while it was being imaged; "
        "stop writing to it (e.g. stop the instance) and retry the backup"
    )
