"""What an engine operation on one scope works with, in one value: the blob store, the scope's
data keys and block index, the packs the collector has condemned, and the block size and threads
of the job. The Repository (engine/repository.py) holds one and hands it to the engine modules."""

from __future__ import annotations

from collections.abc import Set
from dataclasses import dataclass, field

from bootvault.blobstore import BlobStore
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys

DEFAULT_BLOCK_SIZE = 64 << 10  # change-detection granularity; see docs/architecture.md


@dataclass(frozen=True)
class RepoParts:
    store: BlobStore
    keys: DataKeys
    index: ScopeIndex
    condemned: Set[str] = field(default_factory=frozenset)  # never deduplicated against
    block_size: int = DEFAULT_BLOCK_SIZE
    threads: int = 2
