"""Keyset pagination: an opaque page token holds the last row's sort value and id."""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Column, Connection, Select, and_, or_

from bootvault.domain.errors import InvalidArgument
from bootvault.store.tables import UtcDateTime


def encode_token(value: Any, ident: str) -> str:
    raw = json.dumps([value.isoformat() if isinstance(value, datetime) else value, ident])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_token(token: str, is_time: bool) -> tuple[Any, str]:
    try:
        padded = token + "=" * (-len(token) % 4)
        value, ident = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(ident, str):
            raise ValueError("id")
        return (datetime.fromisoformat(value) if is_time else str(value)), ident
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise InvalidArgument("Invalid page: the page token is not one this service issued.") from exc


def keyset_page(
    conn: Connection,
    stmt: Select[Any],
    sort_col: Column[Any],
    id_col: Column[Any],
    *,
    descending: bool,
    limit: int,
    page: str | None,
) -> tuple[list[Any], str | None]:
    """Run `stmt` ordered by (sort_col, id) and return one page plus the next token, if any."""
    is_time = isinstance(sort_col.type, UtcDateTime)
    key = sort_col.collate("C") if conn.dialect.name == "postgresql" and not is_time else sort_col
    if page:
        value, last_id = decode_token(page, is_time)
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
    return rows, encode_token(getattr(last, sort_col.name), getattr(last, id_col.name))
