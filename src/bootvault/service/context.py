"""What every use case needs, built once per process by an entry point."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from bootvault.config import Settings
from bootvault.engine.keys import KeyRing, master_from_file, parse_master
from bootvault.engine.repository import Repositories, Repository, open_repositories
from bootvault.fsutil import make_private_dir
from bootvault.pool import VolumePool
from bootvault.service.pagetokens import PageTokens
from bootvault.store import gc, identity
from bootvault.store.db import Database, database_unreachable


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
    repositories: Repositories  # the only way to the data (engine/repository.py)
    keys: KeyRing
    # (tenancy, user, fingerprint) -> (ApiKey, expiry on time.monotonic()); see service/identity.py
    api_key_cache: dict[tuple[str, str, str], tuple[Any, float]] = field(default_factory=dict)

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Context:
        settings = settings.resolved()
        make_private_dir(settings.data_dir)
        db = Database(str(settings.database_url))
        if migrate:
            db.migrate()
        return cls(
            settings=settings,
            db=db,
            repositories=open_repositories(
                str(settings.store_url), block_size=settings.block_size, threads=settings.engine_threads
            ),
            keys=KeyRing(_master_key(settings), _wrapped_loader(db)),
        )

    @cached_property
    def pool(self) -> VolumePool:
        s = self.settings
        assert s.run_dir is not None
        return VolumePool(dict(s.volume_pools), s.data_dir / "volumes", s.run_dir, s.block_size, s.as_env())

    @cached_property
    def page_tokens(self) -> PageTokens:
        return PageTokens(self.keys.derive("page-tokens"))

    def repository(self, tenancy_id: str, kms_key_id: str | None) -> Repository:
        """The engine's view of one scope: keys, cached index, and the packs GC has condemned."""
        keys = self.keys.data_keys(tenancy_id, kms_key_id)
        with self.db.read() as conn:
            condemned = gc.condemned(conn, keys.scope)
        return self.repositories.scope(keys, condemned)

    def close(self) -> None:
        self.db.dispose()


def transient_database_error(error: BaseException) -> bool:
    """An error that means the database is unreachable for now: the API answers 503, a job is
    left for another attempt."""
    return database_unreachable(error)
