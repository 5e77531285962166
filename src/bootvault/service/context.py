"""What every use case needs, built once per process by an entry point."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bootvault.blobstore import BlobStore, open_blobstore
from bootvault.config import Settings
from bootvault.engine.index import IndexCache
from bootvault.engine.keys import KeyRing, master_from_file, parse_master
from bootvault.store import identity
from bootvault.store.db import Database


@dataclass(frozen=True)
class Caller:
    """The authenticated principal of an API request."""

    tenancy_id: str
    user_id: str


def _master_key(settings: Settings) -> bytes:
    if settings.master_key:
        return parse_master(settings.master_key)
    if settings.master_key_file:
        return master_from_file(settings.master_key_file, create=False)
    return master_from_file(settings.keys_dir / "master.key", create=True)  # embedded default


def _wrapped_loader(db: Database) -> Callable[[str], bytes | None]:
    def load(key_id: str) -> bytes | None:
        with db.read() as conn:
            return identity.wrapped_kms_key(conn, key_id)

    return load


@dataclass
class Context:
    settings: Settings
    db: Database
    store: BlobStore
    keys: KeyRing
    indexes: IndexCache = field(default_factory=IndexCache)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Context:
        settings = settings.resolved()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(str(settings.database_url))
        if migrate:
            db.migrate()
        return cls(
            settings=settings,
            db=db,
            store=open_blobstore(str(settings.store_url)),
            keys=KeyRing(_master_key(settings), _wrapped_loader(db)),
        )

    def volume_path(self, availability_domain: str, volume_id: str) -> Path:
        """Each availability domain has its own pool directory, as volumes are AD-local in OCI."""
        return self.settings.pool_dir(availability_domain) / f"{volume_id}.img"

    def close(self) -> None:
        self.db.dispose()
