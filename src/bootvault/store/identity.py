"""Tenancies, users, API keys, compartments and key-provider key records."""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, insert, select

from bootvault.domain.models import ApiKey, Compartment
from bootvault.store import rawread
from bootvault.store.common import now
from bootvault.store.tables import api_keys, compartments, kms_keys, tenancies, users


def create_tenancy(conn: Connection, tenancy_id: str, name: str) -> None:
    ts = now()
    conn.execute(insert(tenancies).values(id=tenancy_id, name=name, time_created=ts))
    # The tenancy is also its own root compartment, as in OCI.
    conn.execute(
        insert(compartments).values(
            id=tenancy_id, tenancy_id=tenancy_id, parent_id=None, name=name, time_created=ts
        )
    )


def create_user(conn: Connection, user_id: str, tenancy_id: str, name: str) -> None:
    conn.execute(insert(users).values(id=user_id, tenancy_id=tenancy_id, name=name, time_created=now()))


def add_api_key(conn: Connection, key: ApiKey) -> None:
    conn.execute(
        insert(api_keys).values(
            user_id=key.user_id,
            fingerprint=key.fingerprint,
            tenancy_id=key.tenancy_id,
            public_key_pem=key.public_key_pem,
            time_created=now(),
        )
    )


_FIND_API_KEY = select(api_keys).where(
    api_keys.c.user_id == bindparam("user_id"),
    api_keys.c.fingerprint == bindparam("fingerprint"),
    api_keys.c.tenancy_id == bindparam("tenancy_id"),
)
_GET_COMPARTMENT = select(compartments).where(compartments.c.id == bindparam("ident"))


def find_api_key(conn: Connection, tenancy_id: str, user_id: str, fingerprint: str) -> ApiKey | None:
    params = {"user_id": user_id, "fingerprint": fingerprint, "tenancy_id": tenancy_id}
    row = conn.execute(_FIND_API_KEY, params).first()
    if row is None:
        return None
    return ApiKey(row.tenancy_id, row.user_id, row.fingerprint, row.public_key_pem)


def create_compartment(conn: Connection, comp: Compartment) -> None:
    conn.execute(
        insert(compartments).values(
            id=comp.id,
            tenancy_id=comp.tenancy_id,
            parent_id=comp.parent_id,
            name=comp.name,
            time_created=comp.time_created,
        )
    )


def get_compartment(conn: Connection, compartment_id: str) -> Compartment | None:
    row = rawread.first(conn, _GET_COMPARTMENT, {"ident": compartment_id})
    if row is None:
        return None
    return Compartment(row.id, row.tenancy_id, row.parent_id, row.name, row.time_created)


def create_kms_key(conn: Connection, key_id: str, tenancy_id: str, display_name: str, wrapped: bytes) -> None:
    conn.execute(
        insert(kms_keys).values(
            id=key_id,
            tenancy_id=tenancy_id,
            display_name=display_name,
            time_created=now(),
            wrapped_key=wrapped,
        )
    )


def wrapped_kms_key(conn: Connection, key_id: str) -> bytes | None:
    return conn.execute(select(kms_keys.c.wrapped_key).where(kms_keys.c.id == key_id)).scalar()


def kms_key_tenancy(conn: Connection, key_id: str) -> str | None:
    return conn.execute(select(kms_keys.c.tenancy_id).where(kms_keys.c.id == key_id)).scalar()


def lock_tenancy(conn: Connection, tenancy_id: str) -> None:
    """Serialise quota checks of one tenancy (PostgreSQL; SQLite writers are serial already)."""
    if conn.dialect.name == "postgresql":
        conn.execute(select(tenancies.c.id).where(tenancies.c.id == tenancy_id).with_for_update())
