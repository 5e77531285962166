"""Restore: rebuild a sparse volume file from a manifest, verifying every block.

Block ids resolve to pack locations through the scope index; the blocks of one pack are read
with a few ranged reads (nearby blobs coalesced) and decoded in a bounded thread pool. Blocks
not in any pack are looked up as single objects (the engine-v1 layout)."""

from __future__ import annotations

import os
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from bootvault.blobstore import BlobStore, ObjectNotFound
from bootvault.engine import codec
from bootvault.engine.errors import EngineError
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import Manifest
from bootvault.engine.packs import CorruptIndex
from bootvault.engine.parts import RepoParts
from bootvault.engine.progress import ProgressReporter
from bootvault.engine.source import FileSink, VolumeSink

IN_FLIGHT_PER_WORKER = 2
MAX_GAP = 256 << 10  # read across gaps this small rather than issue another request
MAX_RUN = 16 << 20
PAGE = 4096
WRITE_BATCH = 1 << 20  # fewer, larger writes: syscalls are expensive on small VMs
ZERO_PAGE = bytes(PAGE)

Entry = tuple[int, int, int, bytes]  # offset in pack, length, block index, block id


class RestoreError(EngineError):
    """The restore failed; str() names the block, its offset and what is wrong."""


class _Target:
    """Where verified blocks go: a sink, or nowhere (None) when only verifying."""

    def __init__(self, sink: VolumeSink | None, manifest: Manifest) -> None:
        self.sink, self.bs, self.size = sink, manifest.block_size, manifest.logical_size

    def where(self, index: int) -> str:
        return f"block {index} (offset {index * self.bs})"

    def check(self, index: int, data: bytes, name: str) -> int:
        expected = min(self.bs, self.size - index * self.bs)
        if len(data) != expected:
            raise RestoreError(f"{self.where(index)} has {len(data)} bytes, expected {expected}: {name}")
        return expected

    def write(self, first: int, data: bytes | bytearray) -> None:
        """Write consecutive blocks starting at block `first`."""
        if self.sink is None:
            return
        try:
            if self.sink.sparse:
                _write_sparse(self.sink, data, first * self.bs)
            else:
                self.sink.write(first * self.bs, data)
        except OSError as exc:
            raise RestoreError(f"{self.where(first)} could not be written to the target: {exc}") from exc


def _write_sparse(sink: VolumeSink, data: bytes | bytearray, pos: int) -> None:
    """Write data at pos, leaving its all-zero 4 KiB pages unwritten (holes, as the source had)."""
    if data.find(ZERO_PAGE) < 0:  # the common case, decided by one fast scan
        sink.write(pos, data)
        return
    view, run = memoryview(data), -1
    for page in range(0, len(data), PAGE):
        end = min(page + PAGE, len(data))
        if data.startswith(ZERO_PAGE if end - page == PAGE else bytes(end - page), page, end):
            if run >= 0:
                sink.write(pos + run, view[run:page])
                run = -1
        elif run < 0:
            run = page
    if run >= 0:
        sink.write(pos + run, view[run:])


def _decode(
    keys: DataKeys, target: _Target, index: int, bid: bytes, blob: bytes | memoryview, name: str
) -> bytes:
    try:
        return codec.decode(keys, blob, bid)
    except codec.CorruptBlock as exc:
        raise RestoreError(f"{target.where(index)} {exc.reason}: {name}") from None


def _restore_run(store: BlobStore, keys: DataKeys, target: _Target, name: str, run: list[Entry]) -> int:
    """Read one coalesced range of a pack and write every block in it."""
    start = run[0][0]
    length = run[-1][0] + run[-1][1] - start
    try:
        data = store.get_range(name, start, length)
    except ObjectNotFound:
        raise RestoreError(f"{target.where(run[0][2])} is missing from the store: {name} is gone") from None
    done, view = 0, memoryview(data)
    batch, first = bytearray(), -1  # consecutive blocks go out in one write of up to WRITE_BATCH
    for offset, size, index, bid in run:
        blob = view[offset - start : offset - start + size]
        if len(blob) != size:
            raise RestoreError(f"{target.where(index)} is truncated in the store: {name}")
        block = _decode(keys, target, index, bid, blob, name)
        done += target.check(index, block, name)
        if batch and (index != first + len(batch) // target.bs or len(batch) >= WRITE_BATCH):
            target.write(first, batch)
            batch = bytearray()
        if not batch:
            first = index
        batch += block
    if batch:
        target.write(first, batch)
    return done


def _restore_object(store: BlobStore, keys: DataKeys, target: _Target, index: int, bid: bytes) -> int:
    """A block stored as its own object (engine v1), or nowhere at all."""
    name = codec.object_name(keys, bid)
    try:
        blob = store.get(name)
    except ObjectNotFound:
        raise RestoreError(
            f"{target.where(index)} is missing from the store: no pack or object holds block {bid.hex()[:16]}"
        ) from None
    block = _decode(keys, target, index, bid, blob, name)
    done = target.check(index, block, name)
    target.write(index, block)
    return done


def _runs(entries: list[Entry]) -> Iterator[list[Entry]]:
    entries.sort()
    run: list[Entry] = []
    for entry in entries:
        if run and (entry[0] - (run[-1][0] + run[-1][1]) > MAX_GAP or entry[0] - run[0][0] > MAX_RUN):
            yield run
            run = []
        run.append(entry)
    if run:
        yield run


def _plan(manifest: Manifest, index: ScopeIndex) -> Iterator[tuple[Callable[..., int], tuple[Any, ...]]]:
    by_pack: dict[str, list[Entry]] = defaultdict(list)
    for block, bid in manifest.entries():
        loc = index.lookup(bid)
        if loc is None:
            yield _restore_object, (block, bid)
        else:
            by_pack[loc[0]].append((loc[1], loc[2], block, bid))
    for pack_id, entries in by_pack.items():
        for run in _runs(entries):
            yield _restore_run, (index.pack_object(pack_id), run)


def _restore_all(parts: RepoParts, manifest: Manifest, target: _Target, reporter: ProgressReporter) -> None:
    workers = max(1, parts.threads)
    limit = workers * IN_FLIGHT_PER_WORKER
    inflight: deque[Future[int]] = deque()
    done = 0

    def collect() -> None:
        nonlocal done
        done += inflight.popleft().result()
        reporter.update(done)

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bv-restore") as pool:
        try:
            for fn, args in _plan(manifest, parts.index):
                while len(inflight) >= limit:
                    collect()
                inflight.append(pool.submit(fn, parts.store, parts.keys, target, *args))
            while inflight:
                collect()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _refresh(parts: RepoParts) -> None:
    try:
        parts.index.refresh(parts.store, parts.condemned)
    except CorruptIndex as exc:
        raise RestoreError(f"the store's index is damaged: {exc}") from exc


def run_restore(
    parts: RepoParts,
    manifest: Manifest,
    sink: VolumeSink,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write every block of the manifest into sink (at least its logical size, reading as zeros
    where nothing is written), then flush it.

    Raises RestoreError on any missing/corrupt block or I/O failure; the target is then incomplete.
    A store that cannot be reached raises its BlobStoreError: that is an outage, not damaged data.
    """
    _refresh(parts)
    reporter = ProgressReporter(min(len(manifest) * manifest.block_size, manifest.logical_size), progress)
    reporter.update(0)
    _restore_all(parts, manifest, _Target(sink, manifest), reporter)
    try:
        sink.flush()
    except OSError as exc:
        raise RestoreError(f"cannot flush the restore target: {exc}") from exc
    reporter.finish()


def restore_to_file(
    parts: RepoParts,
    manifest: Manifest,
    path: str | os.PathLike[str],
    *,
    sparse: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Restore into a raw file, holes where the backup has none stored (the base of a hydrating
    volume, tests and tools); `sparse` also leaves the zero pages of stored blocks as holes."""
    try:
        sink = FileSink(path, manifest.logical_size, sparse=sparse)
    except OSError as exc:
        raise RestoreError(f"cannot open restore target {os.fspath(path)}: {exc}") from exc
    try:
        run_restore(parts, manifest, sink, progress=progress)
    finally:
        sink.close()


def verify_manifest(
    parts: RepoParts, manifest: Manifest, *, progress: Callable[[int, int], None] | None = None
) -> None:
    """Re-read, decrypt and re-hash every block a manifest references; raise RestoreError on the
    first one that is missing or corrupt. Writes nothing."""
    _refresh(parts)
    reporter = ProgressReporter(min(len(manifest) * manifest.block_size, manifest.logical_size), progress)
    _restore_all(parts, manifest, _Target(None, manifest), reporter)
    reporter.finish()
