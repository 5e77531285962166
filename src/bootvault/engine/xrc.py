"""Cross-region copy, the data side: transfer ids, reading a backup's blocks to send, and storing
received blocks under the destination's own keys.

Block ids are keyed BLAKE3 under a key of the region's own master key (and the tenancy's kmsKeyId),
so the same block has different ids in two regions. On the wire a block is named by its *transfer
id*: keyed BLAKE3 of its plaintext under a key both regions derive from their pairing secret and
the tenancy (service/regionlink.Peer.transfer_key). Neither region learns the other's ids or keys,
and a third region paired with only one of them cannot compare ids with the pair.

Blocks travel in frames, many to a request body:
    32-byte transfer id | u8 flags (1 = zstd) | u32 BE length | payload
The destination decompresses, checks that the payload hashes to its transfer id, then stores the
block like a backup does (its own block id, compression, AES-GCM under its own data keys, packs
and index objects) unless its scope already holds it.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import cast

import blake3
import zstandard

from bootvault.engine import codec
from bootvault.engine.errors import EngineError
from bootvault.engine.manifest import Manifest
from bootvault.engine.packs import PackWriter
from bootvault.engine.parts import RepoParts
from bootvault.engine.restore import run_restore

FRAME = struct.Struct(">32sBI")
FLAG_ZSTD = 1
BATCH_BYTES = 8 << 20  # a request body of blocks: few round trips, bounded memory on both sides


class BadFrame(EngineError):
    """A received block is malformed or does not match its transfer id."""


def transfer_id(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    return blake3.blake3(data, key=key).digest()


class _Tap:
    """A restore sink that hands each verified block to `prepare` in the restore's own threads
    (hashing and compressing run in parallel, outside any lock), then its result to `take`,
    serialised."""

    sparse = False

    def __init__(
        self, block_size: int, prepare: Callable[[int, bytes], object], take: Callable[[object], None]
    ) -> None:
        self.bs, self.prepare, self.take, self.lock = block_size, prepare, take, threading.Lock()

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        done = [
            self.prepare((offset + pos) // self.bs, bytes(view[pos : pos + self.bs]))
            for pos in range(0, len(view), self.bs)
        ]
        with self.lock:
            for item in done:
                self.take(item)

    def flush(self) -> None:
        pass


def each_block(
    parts: RepoParts,
    manifest: Manifest,
    prepare: Callable[[int, bytes], object],
    take: Callable[[object], None],
) -> None:
    """Read, decrypt and verify every block of `manifest` (RestoreError if one is damaged)."""
    run_restore(parts, manifest, _Tap(manifest.block_size, prepare, take))


def transfer_ids(parts: RepoParts, manifest: Manifest, key: bytes) -> dict[int, bytes]:
    """Block index -> transfer id of every stored block of the backup."""
    out: dict[int, bytes] = {}

    def take(item: object) -> None:
        index, tid = cast(tuple[int, bytes], item)
        out[index] = tid

    each_block(parts, manifest, lambda index, block: (index, transfer_id(key, block)), take)
    return out


@dataclass
class SendStats:
    blocks: int = 0
    payload_bytes: int = 0  # bytes of frames sent (what crosses the link, before TLS)
    plain_bytes: int = 0


_tls = threading.local()


def encode_frame(key: bytes, block: bytes) -> bytes:
    cctx = getattr(_tls, "cctx", None)
    if cctx is None:
        cctx = _tls.cctx = zstandard.ZstdCompressor(level=codec.ZSTD_LEVEL)
    packed = cctx.compress(block)
    flags = FLAG_ZSTD
    if len(packed) >= len(block):
        packed, flags = block, 0
    return FRAME.pack(transfer_id(key, block), flags, len(packed)) + packed


def send_blocks(
    parts: RepoParts,
    subset: Manifest,
    key: bytes,
    send: Callable[[bytes, SendStats], None],
    batch_bytes: int = BATCH_BYTES,
) -> SendStats:
    """Read the blocks of `subset` and hand them to `send` in bodies of about `batch_bytes`.
    `send` runs in a thread of its own, one body at a time, while the next body is read: the
    link and the destination work while the source reads (two bodies in memory at most)."""
    stats = SendStats()
    batch = bytearray()
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bv-xrc-send")
    pending: list[Future[None]] = []

    def ship() -> None:
        while pending and (len(pending) > 1 or pending[0].done()):
            pending.pop(0).result()  # raises the sender's error here
        body = bytes(batch)
        batch.clear()
        stats.payload_bytes += len(body)  # counted first: `send` paces on what it was given
        snapshot = SendStats(stats.blocks, stats.payload_bytes, stats.plain_bytes)
        pending.append(sender.submit(send, body, snapshot))

    def take(item: object) -> None:
        frame, size = cast(tuple[bytes, int], item)
        batch.extend(frame)
        stats.blocks += 1
        stats.plain_bytes += size
        if len(batch) >= batch_bytes:
            ship()

    try:
        each_block(parts, subset, lambda index, block: (encode_frame(key, block), len(block)), take)
        if batch:
            ship()
        for fut in pending:
            fut.result()
    finally:
        sender.shutdown(wait=True, cancel_futures=True)
    return stats


def frames(body: bytes, max_block: int) -> Iterator[tuple[bytes, bytes]]:
    """(transfer id, plaintext) of every frame of a body; BadFrame on anything malformed."""
    view, pos = memoryview(body), 0
    dctx = zstandard.ZstdDecompressor()
    while pos < len(view):
        if pos + FRAME.size > len(view):
            raise BadFrame("truncated frame header")
        tid, flags, length = FRAME.unpack_from(view, pos)
        pos += FRAME.size
        if flags & ~FLAG_ZSTD or pos + length > len(view) or length > max_block + 1024:
            raise BadFrame("malformed frame")
        payload = bytes(view[pos : pos + length])
        pos += length
        if flags & FLAG_ZSTD:
            try:
                payload = dctx.decompress(payload, max_output_size=max_block)
            except zstandard.ZstdError as exc:
                raise BadFrame(f"block does not decompress: {exc}") from None
        if len(payload) > max_block:
            raise BadFrame("block larger than the block size")
        yield tid, payload


def _received(parts: RepoParts, key: bytes, tid: bytes, block: bytes) -> tuple[bytes, bytes, bytes | None]:
    """(transfer id, local id, encoded blob or None if the scope holds it) of one received block."""
    if transfer_id(key, block) != tid:
        raise BadFrame(f"block {tid.hex()[:16]} does not match its transfer id (damaged in transit)")
    bid = codec.block_id(parts.keys, block)
    home = parts.index.lookup(bid)
    held = home is not None and home[0] not in parts.condemned
    return tid, bid, None if held else bytes(codec.encode(parts.keys, block, bid))


def store_received(parts: RepoParts, key: bytes, body: bytes, max_block: int) -> list[tuple[str, str]]:
    """Check and store the blocks of a body; returns (transfer id, local block id) hex pairs, all
    of them in whole packs (with index objects) by the time this returns. Blocks are checked and
    encoded in parallel (BLAKE3, zstd and AES-GCM release the GIL), packed in order."""
    parts.index.refresh(parts.store, parts.condemned)
    pairs: list[tuple[str, str]] = []
    packer = PackWriter(parts.store, parts.keys, uploaders=1, on_stored=parts.index.add_pack)
    try:
        with ThreadPoolExecutor(max_workers=max(1, parts.threads), thread_name_prefix="bv-xrc-recv") as pool:
            work = [pool.submit(_received, parts, key, tid, block) for tid, block in frames(body, max_block)]
            pending: set[bytes] = set()
            for fut in work:
                tid, bid, blob = fut.result()
                if blob is not None and bid not in pending:
                    packer.add(bid, blob)
                    pending.add(bid)
                pairs.append((tid.hex(), bid.hex()))
        packer.flush()
    finally:
        packer.close()
    return pairs


def present(parts: RepoParts, block_ids: list[str]) -> list[bool]:
    """Whether each (hex) block id is stored in the scope now, in a pack GC has not condemned."""
    parts.index.refresh(parts.store, parts.condemned)
    out = []
    for hexid in block_ids:
        home = parts.index.lookup(bytes.fromhex(hexid))
        out.append(home is not None and home[0] not in parts.condemned)
    return out
