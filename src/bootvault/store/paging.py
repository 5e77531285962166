"""Keyset pagination over (sort column, id). Page tokens themselves are the service's
(service/pagetokens.py): the store takes and returns positions.

A page's statement takes its values as bind parameters (`page_value`, `page_id`, `page_limit`),
so a caller can build it once per query shape and reuse it: building and hashing a SQLAlchemy
statement costs more than running a small query on SQLite."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Connection, Integer, Select, bindparam, or_

from bootvault.store import rawread
from bootvault.store.tables import UtcDateTime

Position = tuple[Any, str]


def keyset_statement(
    stmt: Select[Any],
    sort_col: Column[Any],
    id_col: Column[Any],
    *,
    descending: bool,
    paged: bool,
    dialect: str,
) -> Select[Any]:
    """`stmt` ordered by (sort_col, id), limited to `page_limit` rows and, when `paged`, starting
    after the position (`page_value`, `page_id`)."""
    is_time = isinstance(sort_col.type, UtcDateTime)
    key = sort_col.collate("C") if dialect == "postgresql" and not is_time else sort_col
    if paged:
        # Rows after (value, last_id): key beyond value, or key equal and id beyond last_id. The
        # leading `key <= value` (or >=) is the same condition restated as a range the index can
        # seek to; without it a page deep in a listing scanned every row before it.
        value = bindparam("page_value", type_=sort_col.type)
        last_id = bindparam("page_id", type_=id_col.type)
        if descending:
            stmt = stmt.where(key <= value, or_(key < value, id_col < last_id))
        else:
            stmt = stmt.where(key >= value, or_(key > value, id_col > last_id))
    order = (key.desc(), id_col.desc()) if descending else (key.asc(), id_col.asc())
    return stmt.order_by(*order).limit(bindparam("page_limit", type_=Integer))


def run_page(
    conn: Connection,
    stmt: Select[Any],
    params: dict[str, Any],
    sort_col: Column[Any],
    id_col: Column[Any],
    *,
    limit: int,
    after: Position | None,
) -> tuple[list[Any], Position | None]:
    """Run a statement of keyset_statement (built with paged=after is not None, and kept by the
    caller) for one page; the rows and, if more rows follow, the position of its last row."""
    rows = rawread.rows(conn, stmt, _page_params(params, limit, after))
    return _last_position(rows, sort_col, id_col, limit)


def _page_params(params: dict[str, Any], limit: int, after: Position | None) -> dict[str, Any]:
    """`params` plus the page's own binds: one row more than the page (it says whether more
    follow), and the position to start after."""
    params = {**params, "page_limit": limit + 1}
    if after is not None:
        params["page_value"], params["page_id"] = after
    return params


def _last_position(
    rows: list[Any], sort_col: Column[Any], id_col: Column[Any], limit: int
) -> tuple[list[Any], Position | None]:
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    last = rows[-1]
    return rows, (getattr(last, sort_col.name), getattr(last, id_col.name))


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
    """Run `stmt` (built anew by the caller) ordered by (sort_col, id) from after `after`; one
    page and, if more rows follow, the position of its last row."""
    full = keyset_statement(
        stmt, sort_col, id_col, descending=descending, paged=after is not None, dialect=conn.dialect.name
    )
    rows = list(conn.execute(full, _page_params({}, limit, after)))
    return _last_position(rows, sort_col, id_col, limit)
