"""Keyset pagination over (sort column, id). Page tokens themselves are the service's
(service/pagetokens.py): the store takes and returns positions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Select, and_, or_

from bootvault.store.tables import UtcDateTime

Position = tuple[Any, str]


def keyset_page(
    conn: Connection,
    stmt: Select[Any],
    sort_col: Column[Any],
    id_col: Column[Any],
    *,
    descending: bool,
    limit: int,
    after: Position | None,
) -> tuple[list[Any], Position | None]:
    """Run `stmt` ordered by (sort_col, id) from after `after`; one page and, if more rows
    follow, the position of its last row."""
    is_time = isinstance(sort_col.type, UtcDateTime)
    key = sort_col.collate("C") if conn.dialect.name == "postgresql" and not is_time else sort_col
    if after is not None:
        value, last_id = after
        if descending:
            stmt = stmt.where(or_(key < value, and_(sort_col == value, id_col < last_id)))
        else:
            stmt = stmt.where(or_(key > value, and_(sort_col == value, id_col > last_id)))
    order = (key.desc(), id_col.desc()) if descending else (key.asc(), id_col.asc())
    rows = list(conn.execute(stmt.order_by(*order).limit(limit + 1)))
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, (getattr(last, sort_col.name), getattr(last, id_col.name))
