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
from dataclasses import dataclass

import blake3
import zstandard

from bootvault.engine import codec
from bootvault.engine.errors import EngineError
from bootvault.engine.manifest import Manifest
from bootvault.engine.packs import PackWriter
from bootvault.engine.repository import Repository
from bootvault.engine.restore import run_restore

FRAME = struct.Struct(">32sBI")
FLAG_ZSTD = 1
BATCH_BYTES = 8 << 20  # a request body of blocks: few round trips, bounded memory on both sides


class BadFrame(EngineError):
    """A received block is malformed or does not match its transfer id."""


def transfer_id(key: bytes, data: bytes | bytearray | memoryview) -> bytes:
    return blake3.blake3(data, key=key).digest()


class _Tap:
    """A restore sink that hands each verified block (index, plaintext) to a callback, in
    whatever order the restore's threads produce them (the callback is serialised)."""

    sparse = False

    def __init__(self, block_size: int, each: Callable[[int, bytes], None]) -> None:
        self.bs, self.each, self.lock = block_size, each, threading.Lock()

    def write(self, offset: int, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        with self.lock:
            for pos in range(0, len(view), self.bs):
                self.each((offset + pos) // self.bs, bytes(view[pos : pos + self.bs]))

    def flush(self) -> None:
        pass


def each_block(repo: Repository, manifest: Manifest, each: Callable[[int, bytes], None]) -> None:
    """Read, decrypt and verify every block of `manifest` (RestoreError if one is damaged)."""
    run_restore(
        repo.store,
        repo.keys,
        manifest,
        _Tap(manifest.block_size, each),
        index=repo.index,
        condemned=repo.condemned,
        workers=repo.threads,
    )


def transfer_ids(repo: Repository, manifest: Manifest, key: bytes) -> dict[int, bytes]:
    """Block index -> transfer id of every stored block of the backup."""
    out: dict[int, bytes] = {}

    def each(index: int, block: bytes) -> None:
        out[index] = transfer_id(key, block)

    each_block(repo, manifest, each)
    return out


@dataclass
class SendStats:
    blocks: int = 0
    payload_bytes: int = 0  # bytes of frames sent (what crosses the link, before TLS)
    plain_bytes: int = 0


def send_blocks(
    repo: Repository,
    subset: Manifest,
    key: bytes,
    send: Callable[[bytes, SendStats], None],
    batch_bytes: int = BATCH_BYTES,
) -> SendStats:
    """Read the blocks of `subset` and hand them to `send` in bodies of about `batch_bytes`."""
    stats = SendStats()
    batch = bytearray()
    cctx = zstandard.ZstdCompressor(level=codec.ZSTD_LEVEL)

    def each(index: int, block: bytes) -> None:
        packed = cctx.compress(block)
        flags = FLAG_ZSTD
        if len(packed) >= len(block):
            packed, flags = block, 0
        batch.extend(FRAME.pack(transfer_id(key, block), flags, len(packed)))
        batch.extend(packed)
        stats.blocks += 1
        stats.plain_bytes += len(block)
        if len(batch) >= batch_bytes:
            flush()

    def flush() -> None:
        stats.payload_bytes += len(batch)  # counted first: `send` paces on what it was given
        send(bytes(batch), stats)
        batch.clear()

    each_block(repo, subset, each)
    if batch:
        flush()
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


def store_received(repo: Repository, key: bytes, body: bytes, max_block: int) -> list[tuple[str, str]]:
    """Check and store the blocks of a body; returns (transfer id, local block id) hex pairs, all
    of them in whole packs (with index objects) by the time this returns."""
    repo.index.refresh(repo.store, demote=repo.condemned)
    pairs: list[tuple[str, str]] = []
    packer = PackWriter(repo.store, repo.keys, uploaders=1, on_stored=repo.index.add_pack)
    try:
        pending: set[bytes] = set()
        for tid, block in frames(body, max_block):
            if transfer_id(key, block) != tid:
                raise BadFrame(f"block {tid.hex()[:16]} does not match its transfer id (damaged in transit)")
            bid = codec.block_id(repo.keys, block)
            home = repo.index.lookup(bid)
            if (home is None or home[0] in repo.condemned) and bid not in pending:
                packer.add(bid, codec.encode(repo.keys, block, bid))
                pending.add(bid)
            pairs.append((tid.hex(), bid.hex()))
        packer.flush()
    finally:
        packer.close()
    return pairs


def present(repo: Repository, block_ids: list[str]) -> list[bool]:
    """Whether each (hex) block id is stored in the scope now, in a pack GC has not condemned."""
    repo.index.refresh(repo.store, demote=repo.condemned)
    out = []
    for hexid in block_ids:
        home = repo.index.lookup(bytes.fromhex(hexid))
        out.append(home is not None and home[0] not in repo.condemned)
    return out
