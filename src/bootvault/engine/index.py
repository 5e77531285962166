"""The scope index: which pack holds each stored block, rebuilt from the index objects.

A worker keeps one ScopeIndex per (tenancy, key) scope and refreshes it before each job, loading
only index objects it has not seen and forgetting those that were removed (by repacking)."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Set
from concurrent.futures import ThreadPoolExecutor

from bootvault.blobstore import BlobStore, ObjectNotFound
from bootvault.engine.keys import DataKeys
from bootvault.engine.packs import decode_index, index_name, pack_id_of, pack_name

Location = tuple[str, int, int]  # pack id, offset, length


class ScopeIndex:
    """Block id -> (pack, offset, length). Packs the collector has condemned rank last: they only
    answer for blocks that no other pack holds."""

    def __init__(self, keys: DataKeys) -> None:
        self.keys = keys
        self._where: dict[bytes, Location] = {}
        self._packs: dict[str, list[tuple[bytes, int, int]]] = {}
        self._condemned: set[str] = set()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._where)

    def lookup(self, bid: bytes) -> Location | None:
        return self._where.get(bid)

    def home(self, bid: bytes) -> str | None:
        """The pack that answers for the block, if any."""
        where = self._where.get(bid)
        return None if where is None else where[0]

    def packs(self) -> list[tuple[str, list[tuple[bytes, int, int]]]]:
        with self._lock:
            return list(self._packs.items())

    def entries(self, pack_id: str) -> list[tuple[bytes, int, int]]:
        with self._lock:
            return list(self._packs.get(pack_id, []))

    def pack_ids(self) -> set[str]:
        with self._lock:
            return set(self._packs)

    def add_pack(self, pack_id: str, entries: Iterable[tuple[bytes, int, int]]) -> None:
        with self._lock:
            kept = list(entries)
            self._packs[pack_id] = kept
            if pack_id in self._condemned:
                for bid, offset, length in kept:
                    self._where.setdefault(bid, (pack_id, offset, length))
            else:
                for bid, offset, length in kept:
                    home = self._where.get(bid)
                    if home is None or home[0] in self._condemned:
                        self._where[bid] = (pack_id, offset, length)

    def _rebuild(self) -> None:
        """Recompute every block's home: live packs first, condemned ones only fill gaps."""
        self._where = {}
        ordered = sorted(self._packs.items(), key=lambda item: item[0] in self._condemned)
        for pack_id, entries in ordered:
            for bid, offset, length in entries:
                self._where.setdefault(bid, (pack_id, offset, length))

    def drop_packs(self, pack_ids: Iterable[str]) -> None:
        """Forget packs; blocks that also live in another pack keep that location."""
        with self._lock:
            dropped = [self._packs.pop(p) for p in list(pack_ids) if p in self._packs]
            if dropped:
                self._rebuild()

    def refresh(
        self,
        store: BlobStore,
        condemned: Set[str] = frozenset(),
        *,
        drop_condemned: bool = False,
        threads: int = 8,
    ) -> None:
        """Sync with the store: load new index objects, forget removed packs, and rank the
        `condemned` ones last (or forget them too, with `drop_condemned`)."""
        listed = {pack_id_of(n) for n in store.list(f"index/{self.keys.scope}/")}
        if drop_condemned:
            listed.difference_update(condemned)
        self.drop_packs(self.pack_ids() - listed)
        ranked_last: set[str] = set() if drop_condemned else set(condemned)
        with self._lock:
            if ranked_last != self._condemned:
                self._condemned = ranked_last
                self._rebuild()
        new = sorted(listed - self.pack_ids())

        def load(pack_id: str) -> tuple[str, list[tuple[bytes, int, int]] | None]:
            try:
                return pack_id, decode_index(
                    self.keys, pack_id, store.get(index_name(self.keys.scope, pack_id))
                )
            except ObjectNotFound:
                return pack_id, None  # removed between list and get

        with ThreadPoolExecutor(max_workers=threads) as pool:
            for pack_id, entries in pool.map(load, new):
                if entries is not None:
                    self.add_pack(pack_id, entries)

    def verify_packs(self, store: BlobStore) -> set[str]:
        """Forget packs whose index exists but whose pack object is gone; returns their ids.

        Such an index object is garbage (a pack is always written before its index), so it is
        removed too, and nothing resolves a block to the lost pack again."""
        present = {pack_id_of(n) for n in store.list(f"packs/{self.keys.scope}/")}
        missing = self.pack_ids() - present
        for pack_id in missing:
            store.delete(index_name(self.keys.scope, pack_id))
        self.drop_packs(missing)
        return missing

    def pack_object(self, pack_id: str) -> str:
        return pack_name(self.keys.scope, pack_id)


class IndexCache:
    """One ScopeIndex per scope for the life of a worker process."""

    def __init__(self) -> None:
        self._scopes: dict[str, ScopeIndex] = {}
        self._lock = threading.Lock()

    def get(self, keys: DataKeys) -> ScopeIndex:
        with self._lock:
            index = self._scopes.get(keys.scope)
            if index is None:
                index = self._scopes[keys.scope] = ScopeIndex(keys)
            return index
