"""What every use case needs, built once per process by an entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from bootvault.blobstore import BlobStore, open_blobstore
from bootvault.config import Settings
from bootvault.engine.index import IndexCache
from bootvault.engine.keys import LocalKeyProvider
from bootvault.store.db import Database


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of an API request."""

    tenancy_id: str
    user_id: str


@dataclass
class Context:
    settings: Settings
    db: Database
    store: BlobStore
    keys: LocalKeyProvider
    indexes: IndexCache = field(default_factory=IndexCache)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Context:
        settings = settings.resolved()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(str(settings.database_url))
        if migrate:
            db.migrate()
        keys = LocalKeyProvider(settings.keys_dir)
        keys.ensure_master()
        return cls(settings=settings, db=db, store=open_blobstore(str(settings.store_url)), keys=keys)

    def volume_path(self, availability_domain: str, volume_id: str) -> Path:
        """Each availability domain has its own pool directory, as volumes are AD-local in OCI."""
        pool = availability_domain.replace(":", "_").replace("/", "_")
        return self.settings.volume_pool_dir / pool / f"{volume_id}.img"

    def close(self) -> None:
        self.db.dispose()
