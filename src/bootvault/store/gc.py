"""Packs the garbage collector has condemned, per scope."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from bootvault.store.tables import gc_condemned as t


def condemned(conn: Connection, scope: str) -> dict[str, datetime]:
    rows = conn.execute(select(t.c.pack_id, t.c.time_condemned).where(t.c.scope == scope))
    return {r.pack_id: r.time_condemned for r in rows}


def condemn(conn: Connection, scope: str, pack_ids: Iterable[str], at: datetime) -> None:
    rows = [{"scope": scope, "pack_id": p, "time_condemned": at} for p in pack_ids]
    if rows:
        conn.execute(insert(t), rows)


def forget(conn: Connection, scope: str, pack_ids: Iterable[str]) -> None:
    ids = list(pack_ids)
    if ids:
        conn.execute(delete(t).where(t.c.scope == scope, t.c.pack_id.in_(ids)))
