"""opc-retry-token records: (tenancy, token) -> the request it was first used for."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select

from bootvault.store.common import now
from bootvault.store.tables import retry_tokens as t


@dataclass
class RetryRecord:
    operation: str
    request_hash: str
    resource_id: str
    time_created: datetime


def find(conn: Connection, tenancy_id: str, token: str, not_before: datetime) -> RetryRecord | None:
    row = conn.execute(select(t).where(t.c.tenancy_id == tenancy_id, t.c.token == token)).first()
    if row is None:
        return None
    if row.time_created < not_before:
        conn.execute(delete(t).where(t.c.tenancy_id == tenancy_id, t.c.token == token))
        return None
    return RetryRecord(row.operation, row.request_hash, row.resource_id, row.time_created)


def remember(
    conn: Connection, tenancy_id: str, token: str, operation: str, request_hash: str, resource_id: str
) -> None:
    """Raises IntegrityError when a concurrent request stored the same token first."""
    conn.execute(
        insert(t).values(
            tenancy_id=tenancy_id,
            token=token,
            operation=operation,
            request_hash=request_hash,
            resource_id=resource_id,
            time_created=now(),
        )
    )
