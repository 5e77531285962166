"""Random access to a backup's bytes, fetched from the store on demand: the data behind an
instant restore (pool/backing.py serves it over NBD while the volume hydrates).

Every block is verified as it is decoded (AES-GCM, then its keyed hash), so a read returns the
backup's exact bytes or raises ReadError: never zeros or stale bytes for data that cannot be
fetched. Reads mostly go forward, so a miss fetches the run of the same pack that follows it in
volume order (up to READ_AHEAD bytes, one ranged GET) and keeps the encoded blobs in a bounded
cache; blocks are decoded only when read.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

from bootvault.blobstore import BlobStore, ObjectNotFound
from bootvault.engine import codec
from bootvault.engine.errors import EngineError
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import ID_LEN, Manifest

READ_AHEAD = 4 << 20
CACHE_BYTES = 64 << 20  # blocks kept for reads to come (decoded ahead when there is a spare core)
DECODERS = 2
MAX_GAP = 256 << 10


class ReadError(EngineError):
    """A block of the backup could not be fetched or failed its check; str() names it."""


class BackupReader:
    def __init__(self, store: BlobStore, keys: DataKeys, index: ScopeIndex, manifest: Manifest) -> None:
        self.store, self.keys, self.index, self.manifest = store, keys, index, manifest
        self.size, self.bs = manifest.logical_size, manifest.block_size
        self._cache: OrderedDict[int, bytes | Future[bytes]] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()
        self._decoders = ThreadPoolExecutor(DECODERS, thread_name_prefix="bv-read")

    # -- layout ----------------------------------------------------------------------------

    def _position(self, block: int) -> int | None:
        """Where `block` is in the manifest, or None if it is all zeros."""
        n = bisect.bisect_left(self.manifest.indices, block)
        if n < len(self.manifest.indices) and self.manifest.indices[n] == block:
            return n
        return None

    def _bid(self, n: int) -> bytes:
        return self.manifest.ids[n * ID_LEN : (n + 1) * ID_LEN]

    def extents_in(self, start: int, end: int) -> Iterator[tuple[int, int, bool]]:
        """The runs of extents() that overlap [start, end), found without a scan from 0."""
        first = bisect.bisect_left(self.manifest.indices, start // self.bs)
        pos = start
        for n in range(first, len(self.manifest.indices)):
            block = self.manifest.indices[n]
            b_start, b_end = block * self.bs, min((block + 1) * self.bs, self.size)
            if b_start >= end:
                break
            if b_start > pos:
                yield pos, b_start - pos, False
            yield max(pos, b_start), b_end - max(pos, b_start), True
            pos = b_end
        if pos < end:
            yield pos, end - pos, False

    def extents(self) -> Iterator[tuple[int, int, bool]]:
        """(offset, length, is_data) runs covering the volume: holes where the backup has none."""
        return self.extents_in(0, self.size)

    # -- reading ---------------------------------------------------------------------------

    def read_into(self, buf: memoryview, offset: int) -> None:
        """Fill buf with the backup's bytes at offset (a range within the volume)."""
        if offset < 0 or offset + len(buf) > self.size:
            raise ReadError(f"read of {len(buf)} bytes at {offset} is outside the volume ({self.size})")
        pos, end = offset, offset + len(buf)
        while pos < end:
            block = pos // self.bs
            b_start = block * self.bs
            b_end = min(b_start + self.bs, self.size)
            take_end = min(end, b_end)
            data = self.block(block)
            out = buf[pos - offset : take_end - offset]
            if data is None:
                out[:] = bytes(len(out))
            else:
                out[:] = data[pos - b_start : take_end - b_start]
            pos = take_end

    def block(self, block: int) -> bytes | None:
        """The plaintext of one block (None: zeros), verified."""
        n = self._position(block)
        if n is None:
            return None
        bid = self._bid(n)
        ahead = self._cached(block)
        if ahead is not None:  # decoded (or being decoded) ahead of this read
            return ahead.result()
        return self._decode(block, bid, self._fetch(n, block, bid))

    def _decode(self, block: int, bid: bytes, blob: bytes) -> bytes:
        try:
            return codec.decode(self.keys, blob, bid)
        except codec.CorruptBlock as exc:
            raise ReadError(f"block {block} (offset {block * self.bs}) {exc.reason}") from None

    def _cached(self, block: int) -> Future[bytes] | None:
        with self._lock:
            entry = self._cache.pop(block, None)
            if entry is not None:
                self._cached_bytes -= self.bs
            return entry  # type: ignore[return-value]

    def _remember(self, blobs: dict[int, tuple[bytes, bytes]]) -> None:
        """Decode the rest of a fetched run in the background: reads mostly go forward."""
        with self._lock:
            for block, (bid, blob) in blobs.items():
                if block in self._cache:
                    continue
                self._cache[block] = self._decoders.submit(self._decode, block, bid, blob)
                self._cached_bytes += self.bs
            while self._cached_bytes > CACHE_BYTES and self._cache:
                _, old = self._cache.popitem(last=False)
                old.cancel()  # type: ignore[union-attr]
                self._cached_bytes -= self.bs

    def _fetch(self, n: int, block: int, bid: bytes) -> bytes:
        where = self.index.lookup(bid)
        if where is None:  # engine v1: a block stored as its own object
            try:
                return self.store.get(codec.object_name(self.keys, bid))
            except ObjectNotFound:
                raise ReadError(
                    f"block {block} (offset {block * self.bs}) is missing from the store"
                ) from None
        pack, off, length = where
        run = self._run_after(n, pack, off, length)
        start, stop = run[0][1], run[-1][1] + run[-1][2]
        name = self.index.pack_object(pack)
        try:
            data = self.store.get_range(name, start, stop - start)
        except ObjectNotFound:
            raise ReadError(f"block {block} (offset {block * self.bs}) is missing: {name} is gone") from None
        if len(data) != stop - start:
            raise ReadError(f"block {block} (offset {block * self.bs}) is truncated in the store: {name}")
        view = memoryview(data)
        wanted = bytes(view[off - start : off - start + length])
        self._remember(
            {
                b: (self._bid(n + i), bytes(view[o - start : o - start + ln]))
                for i, (b, o, ln) in enumerate(run)
                if i > 0
            }
        )
        return wanted

    def _run_after(self, n: int, pack: str, off: int, length: int) -> list[tuple[int, int, int]]:
        """(block, offset, length) of this block and the following ones stored after it in the
        same pack, close enough to come in the same ranged read."""
        run = [(self.manifest.indices[n], off, length)]
        end = off + length
        for m in range(n + 1, len(self.manifest.indices)):
            where = self.index.lookup(self._bid(m))
            if where is None or where[0] != pack or where[1] < end or where[1] - end > MAX_GAP:
                break
            if where[1] + where[2] - off > READ_AHEAD:
                break
            run.append((self.manifest.indices[m], where[1], where[2]))
            end = where[1] + where[2]
        return run
