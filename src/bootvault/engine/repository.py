"""The only way to the data. `Repositories` is opened once per process (open_repositories): the
blob store, and each scope's block index cached for the life of the process. `Repository` is one
scope's view (a tenancy and its key): backup, restore, verify, the hydration reader, retention,
garbage collection and the blocks of a cross-region copy all go through it. Its parts are
private: the engine modules it calls take them as a RepoParts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from bootvault.blobstore import BlobStore, open_blobstore
from bootvault.engine import xrc
from bootvault.engine.backup import BackupResult, run_backup
from bootvault.engine.gc import GcResult, collect_garbage
from bootvault.engine.index import IndexCache
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import Manifest, load_manifest, save_manifest
from bootvault.engine.packs import index_name, pack_name
from bootvault.engine.parts import RepoParts
from bootvault.engine.reader import BackupReader
from bootvault.engine.restore import restore_to_file, verify_manifest
from bootvault.engine.source import VolumeSource

Progress = Callable[[int, int], None]


def manifest_name(backup_id: str) -> str:
    """Where a backup's manifest lives (the one place that spells it)."""
    return f"manifests/{backup_id}"


class Repositories:
    """Every scope's data, in one blob store."""

    def __init__(self, store: BlobStore, block_size: int, threads: int) -> None:
        self._store, self._block_size, self._threads = store, block_size, threads
        self._indexes = IndexCache()

    def scope(self, keys: DataKeys, condemned: Mapping[str, datetime]) -> Repository:
        """One scope's repository; `condemned` maps the packs GC has condemned to when it did."""
        index = self._indexes.get(keys)
        parts = RepoParts(self._store, keys, index, frozenset(condemned), self._block_size, self._threads)
        return Repository(parts, condemned)

    def delete_manifest(self, backup_id: str) -> None:
        """Delete a backup: its manifest only (no keys needed); GC frees its blocks later."""
        self._store.delete(manifest_name(backup_id))

    def probe(self) -> None:
        """Raise if the object store cannot be reached (the readiness check)."""
        self._store.exists("readyz-probe")


def open_repositories(store_url: str, *, block_size: int, threads: int) -> Repositories:
    return Repositories(open_blobstore(store_url), block_size, threads)


class Repository:
    """One scope's data (built by Repositories.scope, for the service by Context.repository)."""

    def __init__(self, parts: RepoParts, condemned: Mapping[str, datetime]) -> None:
        self._parts = parts
        self._condemned = dict(condemned)  # pack id -> when GC condemned it

    @property
    def scope(self) -> str:
        return self._parts.keys.scope

    def manifest(self, backup_id: str) -> Manifest:
        return load_manifest(self._parts.store, self._parts.keys, manifest_name(backup_id))

    def save_manifest(self, backup_id: str, manifest: Manifest) -> None:
        save_manifest(self._parts.store, self._parts.keys, manifest_name(backup_id), manifest)

    def backup(
        self,
        source: VolumeSource,
        backup_id: str,
        *,
        parent: Manifest | None,
        full: bool,
        progress: Progress | None = None,
    ) -> BackupResult:
        name = manifest_name(backup_id)
        return run_backup(source, self._parts, name, parent=parent, full=full, progress=progress)

    def restore_to_file(self, manifest: Manifest, path: Path, progress: Progress | None = None) -> None:
        """The backup's bytes into a raw file. Zero pages inside stored blocks are written as
        data: scanning every block for them costs more than the few KiB they would save."""
        restore_to_file(self._parts, manifest, path, sparse=False, progress=progress)

    def verify(self, manifest: Manifest, progress: Progress | None = None) -> None:
        verify_manifest(self._parts, manifest, progress=progress)

    def reader(self, backup_id: str) -> BackupReader:
        """Random access to a backup's bytes (the data behind an instant restore)."""
        p = self._parts
        p.index.refresh(p.store, p.condemned)
        return BackupReader(p.store, p.keys, p.index, self.manifest(backup_id))

    def objects_of(self, backup_id: str) -> list[str]:
        """Every object a backup's restore reads: its manifest, and the pack each of its blocks
        is read from (with the pack's index object)."""
        p = self._parts
        wanted = {bid for _, bid in self.manifest(backup_id).entries()}
        p.index.refresh(p.store, p.condemned)
        homes = (p.index.lookup(bid) for bid in wanted)  # where a restore reads each block
        packs = sorted({home[0] for home in homes if home is not None})
        return [manifest_name(backup_id)] + [
            n for pack in packs for n in (pack_name(self.scope, pack), index_name(self.scope, pack))
        ]

    def retain(self, backup_id: str, until: datetime) -> str:
        """Object-store retention until `until` on everything the backup needs (see objects_of)."""
        names = self.objects_of(backup_id)
        applied = sum(1 for name in names if self._parts.store.retain_until(name, until))
        if not applied:
            return "the object store has no object lock: the service alone protects the backup"
        return f"retention until {until.isoformat()} on {applied} of {len(names)} objects"

    def collect_garbage(self, live: list[str], pinned: list[str], cutoff: datetime) -> GcResult:
        """One GC run (engine/gc.py) keeping the blocks of the `live` backups (and never repacking
        those of the `pinned` ones); the packs it deletes leave the cached index too."""
        p = self._parts
        live_names = [manifest_name(b) for b in live]
        pinned_names = [manifest_name(b) for b in pinned]
        result = collect_garbage(p.store, p.keys, live_names, self._condemned, cutoff, pinned_names)
        p.index.drop_packs(result.deleted)
        return result

    # -- cross-region copy (engine/xrc.py) --------------------------------------------------

    def transfer_ids(self, manifest: Manifest, key: bytes) -> dict[int, bytes]:
        return xrc.transfer_ids(self._parts, manifest, key)

    def send_blocks(
        self, subset: Manifest, key: bytes, send: Callable[[bytes, xrc.SendStats], None], batch_bytes: int
    ) -> xrc.SendStats:
        return xrc.send_blocks(self._parts, subset, key, send, batch_bytes)

    def store_received(self, key: bytes, body: bytes, max_block: int) -> list[tuple[str, str]]:
        return xrc.store_received(self._parts, key, body, max_block)

    def present(self, block_ids: list[str]) -> list[bool]:
        return xrc.present(self._parts, block_ids)
