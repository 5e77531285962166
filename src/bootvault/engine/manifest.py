"""Versioned, encrypted backup manifest: which block id sits at which block index.

Plaintext body (before zstd + AES-GCM):
    b"BVMF" | u32 BE header length | JSON header | entries
JSON header: {"format": 1, "logical_size": int, "block_size": int, "count": n}
v1 entries: n little-endian u64 block indices (strictly increasing), then n 32-byte block ids.
Envelope: b"BVMN" | envelope version (1 byte) | 12-byte nonce | AES-GCM(zstd(body)),
AAD = envelope header + the object name, so a manifest cannot be swapped for another.
Absent indices are all-zero blocks.
"""

from __future__ import annotations

import bisect
import json
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import zstandard

from bootvault.blobstore import BlobStore
from bootvault.engine import envelope
from bootvault.engine.errors import EngineError
from bootvault.engine.keys import DataKeys

FORMAT_VERSION = 1
ID_LEN = 32
_BODY_MAGIC = b"BVMF"
_ENV_MAGIC = b"BVMN"
_ENV_VERSION = 1
_NONCE = 12


class CorruptManifest(EngineError):
    """The manifest cannot be decrypted, parsed or validated."""


@dataclass(frozen=True)
class Manifest:
    logical_size: int
    block_size: int
    indices: array[int] = field(repr=False)  # array('Q'), strictly increasing
    ids: bytes = field(repr=False)  # len(indices) * 32 bytes, ids in index order
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.block_size <= 0 or self.logical_size < 0:
            raise ValueError("block_size must be > 0 and logical_size >= 0")
        if len(self.ids) != ID_LEN * len(self.indices):
            raise ValueError("ids length does not match indices")
        idx = self.indices
        if any(idx[i] >= idx[i + 1] for i in range(len(idx) - 1)):
            raise ValueError("block indices must be strictly increasing")
        if idx and idx[-1] >= self.block_count:
            raise ValueError(f"block index {idx[-1]} beyond the volume ({self.block_count} blocks)")

    @classmethod
    def from_entries(
        cls, logical_size: int, block_size: int, entries: Iterable[tuple[int, bytes]]
    ) -> Manifest:
        indices, ids = array("Q"), bytearray()
        for index, bid in entries:
            indices.append(index)
            ids += bid
        return cls(logical_size, block_size, indices, bytes(ids))

    @property
    def block_count(self) -> int:
        """Number of blocks covering the logical size (the last may be partial)."""
        return -(-self.logical_size // self.block_size)

    def __len__(self) -> int:
        return len(self.indices)

    def entries(self) -> Iterator[tuple[int, bytes]]:
        """(block index, block id) of every non-zero block, in index order."""
        for n, index in enumerate(self.indices):
            yield index, self.ids[n * ID_LEN : (n + 1) * ID_LEN]

    def block_id(self, index: int) -> bytes | None:
        """Id of the block at index, or None if that block is all zeros."""
        n = bisect.bisect_left(self.indices, index)
        if n < len(self.indices) and self.indices[n] == index:
            return self.ids[n * ID_LEN : (n + 1) * ID_LEN]
        return None


def _le_indices(indices: array[int]) -> bytes:
    if sys.byteorder == "little":
        return indices.tobytes()
    swapped = array("Q", indices)
    swapped.byteswap()
    return swapped.tobytes()


def serialize(manifest: Manifest) -> bytes:
    """Plaintext body (uncompressed, unencrypted)."""
    header = json.dumps(
        {
            "format": FORMAT_VERSION,
            "logical_size": manifest.logical_size,
            "block_size": manifest.block_size,
            "count": len(manifest),
        },
        separators=(",", ":"),
    ).encode()
    return b"".join(
        (_BODY_MAGIC, len(header).to_bytes(4, "big"), header, _le_indices(manifest.indices), manifest.ids)
    )


def _parse_v1(header: dict[str, Any], payload: bytes) -> Manifest:
    count = header["count"]
    if not isinstance(count, int) or count < 0 or len(payload) != count * (8 + ID_LEN):
        raise CorruptManifest("entry table has the wrong length")
    indices = array("Q")
    indices.frombytes(payload[: 8 * count])
    if sys.byteorder != "little":
        indices.byteswap()
    return Manifest(header["logical_size"], header["block_size"], indices, payload[8 * count :], 1)


SUPPORTED_VERSIONS: dict[int, Callable[[dict[str, Any], bytes], Manifest]] = {1: _parse_v1}


def parse(body: bytes) -> Manifest:
    """Inverse of serialize; raise CorruptManifest on anything malformed."""
    if body[:4] != _BODY_MAGIC or len(body) < 8:
        raise CorruptManifest("not a bootvault manifest")
    hlen = int.from_bytes(body[4:8], "big")
    try:
        header = json.loads(body[8 : 8 + hlen])
        parser = SUPPORTED_VERSIONS.get(header["format"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptManifest(f"unreadable manifest header: {exc}") from None
    if parser is None:
        raise CorruptManifest(f"unsupported manifest format version {header['format']!r}")
    try:
        return parser(header, body[8 + hlen :])
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptManifest(f"invalid manifest: {exc}") from None


def _envelope_header() -> bytes:
    return _ENV_MAGIC + bytes((_ENV_VERSION,))


def save_manifest(store: BlobStore, keys: DataKeys, name: str, manifest: Manifest) -> None:
    """Compress, encrypt (bound to name) and store the manifest at name."""
    packed = zstandard.ZstdCompressor(level=3).compress(serialize(manifest))
    store.put(name, envelope.seal(keys.enc_key, _envelope_header(), name.encode(), packed))


def load_manifest(store: BlobStore, keys: DataKeys, name: str) -> Manifest:
    """Fetch and verify a manifest; raise ObjectNotFound or CorruptManifest."""
    try:
        packed = envelope.open_sealed(keys.enc_key, _envelope_header(), name.encode(), store.get(name))
    except envelope.InvalidEnvelope as exc:
        raise CorruptManifest(f"manifest {name}: {exc}") from None
    try:
        body = zstandard.ZstdDecompressor().decompress(packed)
    except zstandard.ZstdError as exc:
        raise CorruptManifest(f"manifest {name} failed to decompress: {exc}") from None
    return parse(body)
