"""Named PostgreSQL advisory locks, transaction-scoped, for work that one process at a time may do
across a cluster. SQLite needs none: its writers are serialised already, so both calls are free
there. The numbers are arbitrary but fixed: every process of every release must agree on them."""

from __future__ import annotations

import enum

from sqlalchemy import Connection


class Lock(enum.IntEnum):
    MIGRATE = 74207311  # Database.migrate: one migration at a time
    MAINTENANCE_QUEUE = 74207312  # the periodic GC and verify jobs are queued once
    SCHEDULER = 74207313  # one policy scheduler transaction at a time


def hold(conn: Connection, lock: Lock) -> None:
    """Wait for the lock; it is released when the transaction ends."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({int(lock)})")


def try_hold(conn: Connection, lock: Lock) -> bool:
    """Take the lock if no other transaction holds it."""
    if conn.dialect.name != "postgresql":
        return True
    return bool(conn.exec_driver_sql(f"SELECT pg_try_advisory_xact_lock({int(lock)})").scalar())
