"""Helpers shared by the repositories: etags, compare-and-set updates, row mapping."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, select, update

from bootvault.domain.models import Tags


def now() -> datetime:
    return datetime.now(UTC)


def new_etag() -> str:
    return secrets.token_hex(16)


def tags_from_row(row: Any) -> Tags:
    return Tags(freeform=dict(row.freeform_tags or {}), defined=dict(row.defined_tags or {}))


def tag_columns(tags: Tags) -> dict[str, Any]:
    return {"freeform_tags": tags.freeform, "defined_tags": tags.defined}


def fetch_row(conn: Connection, table: Table, ident: str, *, lock: bool = False) -> Any | None:
    stmt = select(table).where(table.c.id == ident)
    if lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    return conn.execute(stmt).first()


def update_with_etag(
    conn: Connection, table: Table, ident: str, values: dict[str, Any], expected_etag: str | None = None
) -> str | None:
    """Apply `values` and mint a new etag. Returns the new etag, or None if the row is gone
    or its etag no longer equals `expected_etag` (compare-and-set, safe across processes)."""
    etag = new_etag()
    stmt = update(table).where(table.c.id == ident).values(**values, etag=etag)
    if expected_etag is not None:
        stmt = stmt.where(table.c.etag == expected_etag)
    result = conn.execute(stmt)
    return etag if result.rowcount == 1 else None
