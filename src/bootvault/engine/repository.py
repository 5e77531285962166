"""One scope's repository: the blob store, the scope's data keys, its block index and the packs
the collector has condemned. The service builds one per job (Context.repository) instead of
handing a dozen arguments to each engine call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bootvault.blobstore import BlobStore
from bootvault.engine.backup import BackupResult, run_backup
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import Manifest, load_manifest
from bootvault.engine.packs import index_name, pack_name
from bootvault.engine.restore import restore_to_file, verify_manifest
from bootvault.engine.source import VolumeSource

Progress = Callable[[int, int], None]


def manifest_name(backup_id: str) -> str:
    """Where a backup's manifest lives (the one place that spells it)."""
    return f"manifests/{backup_id}"


@dataclass
class Repository:
    store: BlobStore
    keys: DataKeys
    index: ScopeIndex
    condemned: set[str]
    block_size: int
    threads: int

    def manifest(self, backup_id: str) -> Manifest:
        return load_manifest(self.store, self.keys, manifest_name(backup_id))

    def delete_manifest(self, backup_id: str) -> None:
        self.store.delete(manifest_name(backup_id))

    def backup(
        self,
        source: VolumeSource,
        backup_id: str,
        *,
        parent: Manifest | None,
        full: bool,
        progress: Progress | None = None,
    ) -> BackupResult:
        return run_backup(
            source,
            self.store,
            self.keys,
            manifest_name(backup_id),
            parent=parent,
            full=full,
            index=self.index,
            exclude_packs=self.condemned,
            block_size=self.block_size,
            progress=progress,
            workers=self.threads,
        )

    def objects_of(self, backup_id: str) -> list[str]:
        """Every object a backup's restore reads: its manifest, and the pack each of its blocks
        is read from (with the pack's index object)."""
        wanted = {bid for _, bid in self.manifest(backup_id).entries()}
        self.index.refresh(self.store, demote=self.condemned)
        homes = (self.index.lookup(bid) for bid in wanted)  # where a restore reads each block
        packs = sorted({home[0] for home in homes if home is not None})
        scope = self.keys.scope
        return [manifest_name(backup_id)] + [
            n for p in packs for n in (pack_name(scope, p), index_name(scope, p))
        ]

    def retain(self, backup_id: str, until: datetime) -> str:
        """Object-store retention until `until` on everything the backup needs (see objects_of)."""
        names = self.objects_of(backup_id)
        applied = sum(1 for name in names if self.store.retain_until(name, until))
        if not applied:
            return "the object store has no object lock: the service alone protects the backup"
        return f"retention until {until.isoformat()} on {applied} of {len(names)} objects"

    def restore_to_file(self, manifest: Manifest, path: Path, progress: Progress | None = None) -> None:
        """The backup's bytes into a raw file. Zero pages inside stored blocks are written as
        data: scanning every block for them costs more than the few KiB they would save."""
        restore_to_file(
            self.store,
            self.keys,
            manifest,
            path,
            sparse=False,
            index=self.index,
            condemned=self.condemned,
            progress=progress,
            workers=self.threads,
        )

    def verify(self, manifest: Manifest, progress: Progress | None = None) -> None:
        verify_manifest(
            self.store,
            self.keys,
            manifest,
            index=self.index,
            condemned=self.condemned,
            progress=progress,
            workers=self.threads,
        )
