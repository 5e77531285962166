"""Helpers shared by the repositories: etags, compare-and-set updates, row mapping."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, Table, bindparam, select, update

from bootvault.domain.errors import Conflict, EtagMismatch
from bootvault.domain.lifecycle import Lifecycle
from bootvault.domain.models import Tags
from bootvault.store import rawread


def now() -> datetime:
    return datetime.now(UTC)


def new_etag() -> str:
    return secrets.token_hex(16)


def tags_from_row(row: Any) -> Tags:
    return Tags(freeform=dict(row.freeform_tags or {}), defined=dict(row.defined_tags or {}))


def tag_columns(tags: Tags) -> dict[str, Any]:
    return {"freeform_tags": tags.freeform, "defined_tags": tags.defined}


_FETCH: dict[tuple[str, bool], Select[Any]] = {}


def fetch_row(conn: Connection, table: Table, ident: str, *, lock: bool = False) -> Any | None:
    lock = lock and conn.dialect.name == "postgresql"
    stmt = _FETCH.get((table.name, lock))
    if stmt is None:  # built once: building a statement costs more than a lookup by key on SQLite
        stmt = select(table).where(table.c.id == bindparam("ident"))
        if lock:
            stmt = stmt.with_for_update()
        _FETCH[(table.name, lock)] = stmt
    return rawread.first(conn, stmt, {"ident": ident})


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


def _transition(
    conn: Connection,
    table: Table,
    lifecycle: Lifecycle[Any],
    ident: str,
    event: str,
    values: dict[str, Any] | None = None,
    *,
    expected_etag: str | None = None,
) -> str:
    """Move row `ident` by `event` of `lifecycle`, with `values`, by compare-and-set on its
    current state (and on `expected_etag` when given); returns the new etag. A state the event
    may not start from is refused with Conflict, a stale etag with EtagMismatch, and nothing
    changes."""
    move = lifecycle.move(event)
    etag = new_etag()
    sources = [state.value for state in move.sources]
    stmt = update(table).where(table.c.id == ident, table.c.lifecycle_state.in_(sources))
    if expected_etag is not None:
        stmt = stmt.where(table.c.etag == expected_etag)
    if (
        conn.execute(stmt.values(**(values or {}), lifecycle_state=move.target.value, etag=etag)).rowcount
        == 1
    ):
        return etag
    row = conn.execute(select(table.c.lifecycle_state, table.c.etag).where(table.c.id == ident)).first()
    if row is not None and row.lifecycle_state in sources:
        raise EtagMismatch(EtagMismatch.IF_MATCH)
    raise Conflict(lifecycle.refusal(ident, event, None if row is None else row.lifecycle_state))


@dataclass(frozen=True)
class LifecycleRows:
    """A table whose rows have a lifecycle: their columns change by `update`, their state only by
    `move` (an event of `lifecycle`, by compare-and-set)."""

    table: Table
    lifecycle: Lifecycle[Any]

    def update(
        self, conn: Connection, ident: str, values: dict[str, Any], expected_etag: str | None = None
    ) -> str | None:
        """Columns other than the state; None when no row (or no row with that etag) changed."""
        if "lifecycle_state" in values:
            raise ValueError(f"{self.table.name}: the state changes only by an event (move)")
        return update_with_etag(conn, self.table, ident, values, expected_etag)

    def move(
        self,
        conn: Connection,
        ident: str,
        event: str,
        values: dict[str, Any] | None = None,
        expected_etag: str | None = None,
    ) -> str:
        """Row `ident` by `event`; refused: Conflict (or EtagMismatch), and nothing changes."""
        return _transition(
            conn, self.table, self.lifecycle, ident, event, values, expected_etag=expected_etag
        )
