"""Pack files: many encoded blocks in one write-once object, plus an encrypted index object per pack.

An object store holds few large objects instead of millions of small ones (restic-style packs).
Each blob inside a pack is a self-contained codec blob (its AAD binds it to its block id), so a
pack is just the blobs concatenated after a small header. The pack's index object, written only
after the pack itself, lists (block id, offset, length) for every blob in it:

    packs/<scope>/<hh>/<pack id>     b"BVPK" | version | blobs...
    index/<scope>/<pack id>          encrypted, zstd-compressed array of (id, offset u32, length u32)
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import zstandard

from bootvault.blobstore import BlobStore
from bootvault.engine import envelope
from bootvault.engine.errors import EngineError
from bootvault.engine.keys import DataKeys

PACK_MAGIC = b"BVPK\x01"
INDEX_MAGIC = b"BVIX\x01"
ENTRY = struct.Struct("<32sII")
MAX_BLOB = (1 << 20) + 64  # a 1 MiB block stored raw plus its header, nonce and tag
PACK_TARGET = 16 << 20  # measured: large enough that one fsync per pack is noise, small enough to stream


def pack_name(scope: str, pack_id: str) -> str:
    return f"packs/{scope}/{pack_id[:2]}/{pack_id}"


def index_name(scope: str, pack_id: str) -> str:
    return f"index/{scope}/{pack_id}"


def pack_id_of(name: str) -> str:
    return name.rsplit("/", 1)[-1]


class CorruptIndex(EngineError):
    """An index object failed authentication or does not parse."""


def encode_index(keys: DataKeys, pack_id: str, entries: list[tuple[bytes, int, int]]) -> bytes:
    body = zstandard.ZstdCompressor(level=3).compress(b"".join(ENTRY.pack(*e) for e in entries))
    return envelope.seal(keys.enc_key, INDEX_MAGIC, pack_id.encode(), body)


def decode_index(keys: DataKeys, pack_id: str, blob: bytes) -> list[tuple[bytes, int, int]]:
    try:
        body = envelope.open_sealed(keys.enc_key, INDEX_MAGIC, pack_id.encode(), blob)
        raw = zstandard.ZstdDecompressor().decompress(body)
    except (envelope.InvalidEnvelope, zstandard.ZstdError) as exc:
        raise CorruptIndex(f"index of pack {pack_id} is corrupted ({exc})") from None
    if len(raw) % ENTRY.size:
        raise CorruptIndex(f"index of pack {pack_id} has a truncated entry")
    return [ENTRY.unpack_from(raw, off) for off in range(0, len(raw), ENTRY.size)]


@dataclass
class SealedPack:
    """A pack being filled: `buf` is allocated once at full size and filled up to `size`, so adding a
    blob is one copy and the buffer never grows (growing re-copies everything added so far)."""

    pack_id: str
    buf: mmap.mmap  # page-aligned, so a local store can hand it to the disk as it is (O_DIRECT)
    size: int = 0
    entries: list[tuple[bytes, int, int]] = field(default_factory=list)

    @property
    def data(self) -> memoryview:
        return memoryview(self.buf)[: self.size]


class PackWriter:
    """Collects encoded blobs into packs and uploads sealed packs in the background.

    At most `max_inflight` sealed packs wait for upload (bounded memory). `on_stored` is called,
    from an upload thread, with each pack's entries once its index object is written."""

    def __init__(
        self,
        store: BlobStore,
        keys: DataKeys,
        *,
        target: int | None = None,
        uploaders: int = 2,
        on_stored: Callable[[str, list[tuple[bytes, int, int]]], None] | None = None,
    ) -> None:
        self.store, self.keys = store, keys
        self.target = target or PACK_TARGET
        self.on_stored = on_stored
        self._pool = ThreadPoolExecutor(max_workers=uploaders, thread_name_prefix="bv-pack")
        self._inflight: list[Future[None]] = []
        self._max_inflight = uploaders  # with the open pack: uploaders + 1 buffers of 16 MiB
        self._lock = threading.Lock()
        self._spare: list[mmap.mmap] = []
        self._current = self._new_pack()
        self.packs_written = 0
        self.bytes_written = 0

    def _new_pack(self, room: int = 0) -> SealedPack:
        size = max(self.target + MAX_BLOB, room)
        with self._lock:  # reuse an uploaded pack's buffer: no fresh pages to fault in
            buf = self._spare.pop() if self._spare and len(self._spare[-1]) >= size else None
        if buf is None:  # pages faulted in by mmap itself, outside the GIL, not by each blob's copy
            buf = mmap.mmap(-1, size, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0))
        pack = SealedPack(os.urandom(16).hex(), buf)
        pack.buf[: len(PACK_MAGIC)] = PACK_MAGIC
        pack.size = len(PACK_MAGIC)
        return pack

    def add(self, bid: bytes, blob: bytes | bytearray) -> None:
        pack = self._current
        end = pack.size + len(blob)
        if end > len(pack.buf):  # a blob larger than MAX_BLOB (huge blocks): start a pack for it
            self._seal()
            pack = self._current = self._new_pack(len(PACK_MAGIC) + len(blob))
            end = pack.size + len(blob)
        pack.entries.append((bid, pack.size, len(blob)))
        pack.buf[pack.size : end] = blob
        pack.size = end
        if pack.size >= self.target:
            self._seal()

    def _seal(self) -> None:
        pack, self._current = self._current, self._new_pack()
        if len(pack.entries) == 0:
            return
        while len(self._inflight) >= self._max_inflight:
            self._inflight.pop(0).result()
        self._inflight.append(self._pool.submit(self._upload, pack))

    def _upload(self, pack: SealedPack) -> None:
        scope = self.keys.scope
        self.store.put(pack_name(scope, pack.pack_id), pack.data)
        # The index goes second: an index entry never points at a pack that is not whole.
        self.store.put(index_name(scope, pack.pack_id), encode_index(self.keys, pack.pack_id, pack.entries))
        with self._lock:
            self.packs_written += 1
            self.bytes_written += pack.size
            if len(pack.buf) == self.target + MAX_BLOB:
                self._spare.append(pack.buf)
        if self.on_stored:
            self.on_stored(pack.pack_id, pack.entries)

    def flush(self) -> None:
        """Seal the open pack and wait for every upload; raises the first upload error."""
        self._seal()
        try:
            for fut in self._inflight:
                fut.result()
        finally:
            self._inflight.clear()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
