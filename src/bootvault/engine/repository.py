"""One scope's repository: the blob store, the scope's data keys, its block index and the packs
the collector has condemned. The service builds one per job (Context.repository) instead of
handing a dozen arguments to each engine call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bootvault.blobstore import BlobStore
from bootvault.engine.backup import BackupResult, run_backup
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys
from bootvault.engine.manifest import Manifest, load_manifest
from bootvault.engine.restore import verify_manifest
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
