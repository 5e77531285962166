"""Garbage collection of one scope: mark what live manifests reference, then condemn, repack
and (after a grace period) sweep packs, in two phases so concurrent backups and restores stay safe.

Phase 1 (this run)  packs with no live block are *condemned*; packs that are mostly dead have
                    their live blobs copied into new packs (blobs are self-contained, so no
                    re-encryption) and are condemned too.
Phase 2 (a later run) a condemned pack is deleted (its index object first, then the pack) only
                    when it was condemned before `cutoff`, which the caller sets to the earlier
                    of now - grace and the start of the oldest job still running. A pack that a
                    live manifest needs again is rescued instead.
Backups never deduplicate against condemned packs (RepoParts.condemned), so a block
that only lives in a condemned pack is stored again by any backup that starts after condemning.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from bootvault.blobstore import BlobStore, ObjectNotFound
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import load_manifest
from bootvault.engine.packs import PACK_MAGIC, PackWriter, decode_index, index_name, pack_name

REPACK_BELOW = 0.8  # repack a pack when less than this share of its blob bytes is still live


@dataclass
class GcResult:
    live_blocks: int = 0
    condemned: set[str] = field(default_factory=set)  # newly condemned this run
    rescued: set[str] = field(default_factory=set)  # previously condemned, needed again
    deleted: set[str] = field(default_factory=set)
    deleted_bytes: int = 0
    repacked_packs: int = 0
    repacked_bytes: int = 0


def _mark(store: BlobStore, keys: DataKeys, manifests: list[str]) -> set[bytes]:
    live: set[bytes] = set()
    for name in manifests:
        try:
            manifest = load_manifest(store, keys, name)
        except ObjectNotFound:
            continue  # deleted since the caller listed it
        live.update(bid for _, bid in manifest.entries())
    return live


def _pack_usage(index: ScopeIndex, live: set[bytes]) -> dict[str, tuple[int, int]]:
    """pack id -> (live blob bytes, total blob bytes); a block counts where the index finds it."""
    usage: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for pack_id, entries in index.packs():
        slot = usage[pack_id]
        for bid, offset, length in entries:
            slot[1] += length
            if bid in live and index.lookup(bid) == (pack_id, offset, length):
                slot[0] += length
    return {k: (v[0], v[1]) for k, v in usage.items()}


def _repack(store: BlobStore, keys: DataKeys, index: ScopeIndex, packs: list[str], live: set[bytes]) -> int:
    """Copy the live blobs of `packs` into new packs; returns the bytes copied."""
    copied = 0
    writer = PackWriter(store, keys, uploaders=2, on_stored=index.add_pack)
    try:
        for pack_id in packs:
            entries = sorted(
                e for e in index.entries(pack_id) if e[0] in live and index.home(e[0]) == pack_id
            )
            for bid, offset, length in entries:
                blob = store.get_range(pack_name(keys.scope, pack_id), offset, length)
                writer.add(bid, blob)
                copied += length
        writer.flush()
    finally:
        writer.close()
    return copied


def collect_garbage(
    store: BlobStore,
    keys: DataKeys,
    live_manifests: list[str],
    condemned: dict[str, datetime],
    cutoff: datetime,
    pinned_manifests: list[str] | None = None,
) -> GcResult:
    """One GC run for a scope. `condemned` maps pack id -> when it was condemned (the caller
    persists the result: add `result.condemned`, drop `result.rescued` and `result.deleted`).
    Packs holding a block of a `pinned_manifests` backup (retention lock, legal hold; also live)
    are never repacked, so their objects, which may carry an object-store retention date, stay
    exactly where the lock put them."""
    result = GcResult()
    index = ScopeIndex(keys)
    index.refresh(store, set(condemned), drop_condemned=True)  # never a block's home
    live = _mark(store, keys, live_manifests)
    result.live_blocks = len(live)
    homeless = {bid for bid in live if index.lookup(bid) is None}
    for pack_id, since in condemned.items():
        try:
            entries = decode_index(keys, pack_id, store.get(index_name(keys.scope, pack_id)))
        except ObjectNotFound:
            result.deleted.add(pack_id)  # already gone: forget the record
            continue
        if any(bid in homeless for bid, _, _ in entries):
            result.rescued.add(pack_id)  # a backup that began before condemning still needs it
        elif since < cutoff:
            _sweep(store, keys, pack_id, result)
    usage = _pack_usage(index, live)
    empty = {p for p, (alive, _) in usage.items() if alive == 0}
    pinned = _mark(store, keys, pinned_manifests or [])
    sparse = sorted(
        p
        for p, (alive, total) in usage.items()
        if 0 < alive < REPACK_BELOW * total and not any(e[0] in pinned for e in index.entries(p))
    )
    if sparse:
        result.repacked_bytes = _repack(store, keys, index, sparse, live)
        result.repacked_packs = len(sparse)
    result.condemned = empty | set(sparse)
    return result


def _sweep(store: BlobStore, keys: DataKeys, pack_id: str, result: GcResult) -> None:
    name = pack_name(keys.scope, pack_id)
    try:
        size = store.size(name) - len(PACK_MAGIC)
    except ObjectNotFound:
        size = 0
    store.delete(index_name(keys.scope, pack_id))  # first: no reader resolves blocks to it any more
    store.delete(name)
    result.deleted.add(pack_id)
    result.deleted_bytes += max(size, 0)
