"""Backup: image a volume source into content-addressed, encrypted blocks plus a manifest.

The source is a volume frozen at one instant (pool/snapshot.py) and lists the block-aligned
ranges worth reading: every allocated range, or only those a dirty bitmap marks changed since
the parent backup. Pool threads read 2 MiB segments (each thread has its own connection), skip
zero blocks, hash every block, and compress and encrypt the ones the scope does not hold yet;
the main thread appends those to packs in volume order, and packs upload in the background.
Blocks outside the listed ranges are zeros (a whole read) or the parent's (a dirty read), so
every manifest names every non-zero block and restores on its own.
"""

from __future__ import annotations

import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Set
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from bootvault.engine import codec
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import ID_LEN, Manifest, save_manifest
from bootvault.engine.packs import PackWriter
from bootvault.engine.parts import RepoParts
from bootvault.engine.progress import ProgressReporter
from bootvault.engine.source import BatchSource, Extent, VolumeSource

IN_FLIGHT_EXTRA = 2  # tasks queued beyond one per thread (each holds a segment and its blobs)
UPLOADERS = 2  # packs being stored at once, each a 16 MiB buffer: what bounds the worker's RSS
SEGMENT = 2 << 20  # bytes read per task: large reads, few tasks, per-block work stays in C

Decision = tuple[int, bytes, bytearray | None, int]  # block index, id, encoded blob if new, length


@dataclass
class BackupResult:
    manifest: Manifest
    logical_size: int
    blocks_total: int
    blocks_new: int
    bytes_new: int
    bytes_referenced: int
    bytes_read: int = 0
    bytes_deduplicated: int = 0  # plaintext of blocks read that the scope already held
    packs_written: int = 0


@dataclass
class _Pass:
    """Accumulates the manifest entries of the blocks read, and counters."""

    indices: array[int] = field(default_factory=lambda: array("Q"))
    ids: bytearray = field(default_factory=bytearray)
    blocks_new: int = 0
    bytes_new: int = 0
    bytes_referenced: int = 0
    bytes_read: int = 0
    bytes_known: int = 0


def _segments(extents: list[Extent], block_size: int) -> Iterator[Extent]:
    """Split the ranges into SEGMENT-sized, block-aligned reads."""
    step = max(block_size, SEGMENT // block_size * block_size)
    for start, end in extents:
        for seg in range(start, end, step):
            yield seg, min(seg + step, end)


def _tasks(extents: list[Extent], block_size: int) -> Iterator[list[Extent]]:
    """Reads grouped into tasks of about SEGMENT bytes: many small scattered extents (a dirty
    bitmap after random writes) make one task, not one each, so per-task costs stay small."""
    group: list[Extent] = []
    size = 0
    for seg in _segments(extents, block_size):
        if group and size + seg[1] - seg[0] > SEGMENT:
            yield group
            group, size = [], 0
        group.append(seg)
        size += seg[1] - seg[0]
    if group:
        yield group


class _BlockWorker:
    """Per-block decisions, run in pool threads: zero? known? else encode for a pack."""

    def __init__(
        self, keys: DataKeys, block_size: int, index: ScopeIndex, parent: Manifest | None, condemned: Set[str]
    ) -> None:
        self.keys, self.block_size, self.index, self.parent = keys, block_size, index, parent
        self.condemned = condemned  # a block found only in a condemned pack must be stored again
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
        return home is not None and home[0] not in self.condemned

    def task(self, source: VolumeSource, reads: list[Extent]) -> list[Decision]:
        """Read and decide every block of a task's ranges, in order."""
        out: list[Decision] = []
        if isinstance(source, BatchSource):  # all of the task's reads in flight at once
            buf, at = source.read_many(reads), 0
            for start, end in reads:
                out += self.segment(start, end - start, buf, at)
                at += end - start
            return out
        for start, end in reads:
            data = source.read(start, end - start)
            if len(data) != end - start:
                raise EOFError(f"read {len(data)} bytes at offset {start}, expected {end - start}")
            out += self.segment(start, end - start, data, 0)
        return out

    def segment(self, start: int, length: int, buf: bytes | bytearray, at: int) -> list[Decision]:
        """(block index, id, encoded blob if new else None, plaintext length) per non-zero block
        of the segment read at volume offset start, held in buf[at : at + length]."""
        out = []
        view, bs, zero = memoryview(buf), self.block_size, self.zero
        for off in range(0, length, bs):
            end = min(off + bs, length)
            # startswith compares in place (memcmp); == on a memoryview slice goes byte by byte.
            if buf.startswith(zero if end - off == bs else zero[: end - off], at + off, at + end):
                continue
            block = view[at + off : at + end]
            index = (start + off) // bs
            bid = codec.block_id(self.keys, block)
            known = (self.parent is not None and self.parent.block_id(index) == bid) or self._stored(bid)
            blob = None if known or not self._claim(bid) else codec.encode(self.keys, block, bid)
            out.append((index, bid, blob, len(block)))
        return out


def _one_pass(
    source: VolumeSource,
    extents: list[Extent],
    worker: _BlockWorker,
    packer: PackWriter,
    workers: int,
    reporter: ProgressReporter,
) -> _Pass:
    """Read every listed segment once; the pool reads, hashes and encodes; results are packed
    in order."""
    out = _Pass()
    limit = max(1, workers) + IN_FLIGHT_EXTRA
    inflight: deque[tuple[int, Future[list[Decision]]]] = deque()

    def collect() -> None:
        length, fut = inflight.popleft()
        for index, bid, blob, size in fut.result():
            out.indices.append(index)
            out.ids.extend(bid)
            out.bytes_referenced += size
            if blob is not None:
                packer.add(bid, blob)
                out.blocks_new += 1
                out.bytes_new += len(blob)
            else:
                out.bytes_known += size
        out.bytes_read += length
        reporter.update(out.bytes_read)

    reporter.update(0)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bv-backup") as pool:
        try:
            for reads in _tasks(extents, worker.block_size):
                while len(inflight) >= limit:
                    collect()
                length = sum(end - start for start, end in reads)
                inflight.append((length, pool.submit(worker.task, source, reads)))
            while inflight:
                collect()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return out


def _with_unread_from_parent(
    out: _Pass, extents: list[Extent], parent: Manifest, size: int, bs: int
) -> _Pass:
    """Merge the blocks read with the parent's blocks outside the ranges read (unchanged)."""
    merged = _Pass(
        blocks_new=out.blocks_new,
        bytes_new=out.bytes_new,
        bytes_read=out.bytes_read,
        bytes_known=out.bytes_known,
    )
    covered = [(a // bs, -(-b // bs)) for a, b in extents]
    last_block = -(-size // bs)
    read_n, cov = 0, 0
    for index, bid in parent.entries():
        if index >= last_block:
            break
        while cov < len(covered) and covered[cov][1] <= index:
            cov += 1
        if cov < len(covered) and covered[cov][0] <= index:
            continue  # read anew: the read entry (if non-zero) wins
        while read_n < len(out.indices) and out.indices[read_n] < index:
            _take(merged, out.indices[read_n], out.ids[read_n * ID_LEN : (read_n + 1) * ID_LEN], 0)
            read_n += 1
        _take(merged, index, bid, min(bs, size - index * bs))
    while read_n < len(out.indices):
        _take(merged, out.indices[read_n], out.ids[read_n * ID_LEN : (read_n + 1) * ID_LEN], 0)
        read_n += 1
    merged.bytes_referenced += out.bytes_referenced
    return merged


def _take(out: _Pass, index: int, bid: bytes | bytearray, length: int) -> None:
    out.indices.append(index)
    out.ids.extend(bid)
    out.bytes_referenced += length


def run_backup(
    source: VolumeSource,
    parts: RepoParts,
    manifest_name: str,
    *,
    parent: Manifest | None,
    full: bool,
    progress: Callable[[int, int], None] | None = None,
) -> BackupResult:
    """Store the source's new blocks in packs, then save the manifest last.

    Every block already in the scope's index (or, for an incremental, equal to the parent's block
    at the same place) is referenced, not stored again. A FULL ignores the parent for that and
    first drops index entries whose pack object has gone missing, so such blocks are stored anew.
    A source that lists only changed ranges (whole=False) needs the parent: the rest is its.
    Blocks found only in packs the collector has condemned (`parts.condemned`) are stored again.
    """
    store, keys, index, block_size = parts.store, parts.keys, parts.index, parts.block_size
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    if not source.whole and (parent is None or parent.block_size != block_size):
        raise ValueError("a source of changed ranges needs the parent manifest, at the same block size")
    unread_from = None if source.whole else parent
    if parent is not None and (full or parent.block_size != block_size):
        parent = None  # a FULL never trusts the parent; a different block size can't be compared
    index.refresh(store, parts.condemned)
    if full:
        index.verify_packs(store)
    worker = _BlockWorker(keys, block_size, index, parent, parts.condemned)
    packer = PackWriter(
        store, keys, uploaders=max(1, min(UPLOADERS, parts.threads)), on_stored=index.add_pack
    )
    extents = list(source.extents())
    reporter = ProgressReporter(sum(b - a for a, b in extents), progress)
    try:
        out = _one_pass(source, extents, worker, packer, parts.threads, reporter)
        if unread_from is not None:
            out = _with_unread_from_parent(out, extents, unread_from, source.size, block_size)
        packer.flush()  # every new block is in a whole pack before the manifest names it
        manifest = Manifest(source.size, block_size, out.indices, bytes(out.ids))
        save_manifest(store, keys, manifest_name, manifest)
    finally:
        packer.close()
    reporter.finish()
    return BackupResult(
        manifest,
        source.size,
        len(out.indices),
        out.blocks_new,
        out.bytes_new,
        out.bytes_referenced,
        bytes_read=out.bytes_read,
        bytes_deduplicated=out.bytes_known,
        packs_written=packer.packs_written,
    )
