"""Restore: rebuild a sparse volume file from a manifest, verifying every block."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from bootvault.blobstore import BlobStore, BlobStoreError, ObjectNotFound
from bootvault.engine import codec
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import Manifest
from bootvault.engine.volumes import ProgressReporter

IN_FLIGHT_PER_WORKER = 2


class RestoreError(Exception):
    """The restore failed; str() names the block, its offset and what is wrong."""


def _restore_block(
    store: BlobStore, keys: DataKeys, fd: int, manifest: Manifest, index: int, bid: bytes
) -> int:
    """Fetch, verify and pwrite one block; return its length."""
    off = index * manifest.block_size
    expected = min(manifest.block_size, manifest.logical_size - off)
    name = codec.object_name(keys, bid)
    where = f"block {index} (offset {off})"
    try:
        data = codec.decode(keys, store.get(name), bid)
    except ObjectNotFound:
        raise RestoreError(f"{where} is missing from the store: {name}") from None
    except codec.CorruptBlock as exc:
        raise RestoreError(f"{where} {exc.reason}: {name}") from None
    except BlobStoreError as exc:
        raise RestoreError(f"{where} could not be read from the store: {exc}") from exc
    if len(data) != expected:
        raise RestoreError(f"{where} has {len(data)} bytes, expected {expected}: {name}")
    view, pos = memoryview(data), off
    try:
        while view:
            n = os.pwrite(fd, view, pos)
            view, pos = view[n:], pos + n
    except OSError as exc:
        raise RestoreError(f"{where} could not be written to the target: {exc}") from exc
    return expected


def _restore_all(
    store: BlobStore, keys: DataKeys, manifest: Manifest, fd: int, reporter: ProgressReporter, workers: int
) -> None:
    limit = max(1, workers) * IN_FLIGHT_PER_WORKER
    inflight: deque[tuple[int, Future[int]]] = deque()
    bs = manifest.block_size

    def collect() -> None:
        index, fut = inflight.popleft()
        length = fut.result()
        reporter.update(inflight[0][0] * bs if inflight else index * bs + length)

    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="bv-restore") as pool:
        try:
            for index, bid in manifest.entries():
                while len(inflight) >= limit:
                    collect()
                inflight.append((index, pool.submit(_restore_block, store, keys, fd, manifest, index, bid)))
            while inflight:
                collect()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def run_restore(
    store: BlobStore,
    keys: DataKeys,
    manifest: Manifest,
    target_path: str | os.PathLike[str],
    *,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 2,
) -> None:
    """Create/truncate target_path to the manifest's logical size (sparse) and write its blocks.

    Raises RestoreError on any missing/corrupt block or I/O failure; the target is then incomplete.
    """
    try:
        fd = os.open(target_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise RestoreError(f"cannot open restore target {os.fspath(target_path)}: {exc}") from exc
    try:
        os.ftruncate(fd, 0)  # drop old contents so untouched ranges are holes
        os.ftruncate(fd, manifest.logical_size)
        reporter = ProgressReporter(manifest.logical_size, progress)
        reporter.update(0)
        _restore_all(store, keys, manifest, fd, reporter, workers)
        os.fsync(fd)
    except OSError as exc:
        raise RestoreError(f"cannot write restore target {os.fspath(target_path)}: {exc}") from exc
    finally:
        os.close(fd)
    reporter.finish()
