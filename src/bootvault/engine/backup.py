"""Backup: image a sparse volume file into content-addressed, encrypted blocks plus a manifest.

The main thread maps data extents and reads blocks into a small set of reused buffers; a
bounded pool (at most 2 blocks in flight per worker) hashes, compresses, encrypts and puts.
Consistency is checked with stat signatures around the whole read (see _stable_stat).
"""

from __future__ import annotations

import os
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from bootvault.blobstore import BlobStore
from bootvault.engine import codec
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import Manifest, save_manifest
from bootvault.engine.volumes import ProgressReporter, block_segments, data_extents, is_zero, read_block

RACY_NS = 50_000_000  # a timestamp younger than this may hide a same-tick write
MAX_SETTLE_S = 1.0  # give up waiting for a quiet volume after this long
IN_FLIGHT_PER_WORKER = 2


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


class _Uploader:
    """Worker-side block processing shared by all attempts of one backup."""

    def __init__(self, store: BlobStore, keys: DataKeys, full: bool) -> None:
        self.store, self.keys, self.full = store, keys, full
        self._present: set[bytes] = set()  # ids known stored (or being stored) during this run
        self._lock = threading.Lock()

    def _claim(self, bid: bytes) -> bool:
        with self._lock:
            if bid in self._present:
                return False
            self._present.add(bid)
            return True

    def process(self, buf: bytearray, length: int, parent_id: bytes | None) -> tuple[bytes, int]:
        """Return (block id, stored bytes written: 0 if the block was already there)."""
        data = memoryview(buf)[:length]
        bid = codec.block_id(self.keys, data)
        if (not self.full and bid == parent_id) or not self._claim(bid):
            return bid, 0
        name = codec.object_name(self.keys, bid)
        try:
            if self.store.exists(name):
                return bid, 0
            blob = codec.encode(self.keys, data, bid)
            self.store.put(name, blob)
        except BaseException:
            with self._lock:
                self._present.discard(bid)
            raise
        return bid, len(blob)


def _one_pass(
    fd: int,
    size: int,
    block_size: int,
    uploader: _Uploader,
    parent: Manifest | None,
    workers: int,
    reporter: ProgressReporter,
) -> _Pass:
    """Read every data block once, feeding the pool; results are collected in index order."""
    out = _Pass()
    zero = bytes(block_size)
    limit = max(1, workers) * IN_FLIGHT_PER_WORKER
    free: list[bytearray] = []
    inflight: deque[tuple[int, int, bytearray, Future[tuple[bytes, int]]]] = deque()

    def collect() -> None:
        index, length, buf, fut = inflight.popleft()
        bid, stored = fut.result()
        out.indices.append(index)
        out.ids.extend(bid)
        out.bytes_referenced += length
        if stored:
            out.blocks_new += 1
            out.bytes_new += stored
        free.append(buf)
        reporter.update(inflight[0][0] * block_size if inflight else index * block_size + length)

    reporter.update(0)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bv-backup") as pool:
        try:
            for index, segs in block_segments(data_extents(fd, size), block_size):
                while len(inflight) >= limit:
                    collect()
                buf = free.pop() if free else bytearray(block_size)
                off = index * block_size
                length = min(block_size, size - off)
                try:
                    read_block(fd, buf, off, length, segs)
                except EOFError as exc:
                    raise _Torn(str(exc)) from None
                if is_zero(buf, length, zero):
                    free.append(buf)
                    if not inflight:
                        reporter.update(off + length)
                    continue
                parent_id = parent.block_id(index) if parent is not None else None
                inflight.append((index, length, buf, pool.submit(uploader.process, buf, length, parent_id)))
            while inflight:
                collect()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    return out


def _attempt(
    path: str,
    block_size: int,
    uploader: _Uploader,
    parent: Manifest | None,
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
            result = _one_pass(fd, before.st_size, block_size, uploader, parent, workers, reporter)
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
    block_size: int = 1 << 20,
    progress: Callable[[int, int], None] | None = None,
    max_attempts: int = 3,
    workers: int = 2,
) -> BackupResult:
    """Image volume_path consistently, store new blocks, then save the manifest as the last step.

    Incremental (full=False) trusts blocks whose id equals the parent's id at the same index;
    full=True checks every block against the store and re-stores missing ones.
    """
    if block_size <= 0:
        raise ValueError("block_size must be positive")
    if parent is not None and (full or parent.block_size != block_size):
        parent = None  # a FULL never trusts the parent; a different block size can't be compared
    path = os.fspath(volume_path)
    uploader = _Uploader(store, keys, full)
    for _ in range(max(1, max_attempts)):
        got = _attempt(path, block_size, uploader, parent, workers, progress)
        if got is None:
            continue
        out, size, image_time = got
        manifest = Manifest(size, block_size, out.indices, bytes(out.ids))
        save_manifest(store, keys, manifest_name, manifest)
        return BackupResult(
            manifest, size, len(out.indices), out.blocks_new, out.bytes_new, out.bytes_referenced, image_time
        )
    n = max(1, max_attempts)
    raise VolumeChanged(
        f"the volume changed {n} time{'s' if n != 1 else ''} while it was being imaged; "
        "stop writing to it (e.g. stop the instance) and retry the backup"
    )
