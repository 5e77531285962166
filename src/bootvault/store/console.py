"""Rows of the operator console: console users' credentials, sessions (kept by the SHA-256 of the
cookie's token) and the sign-in rate limit's counters (migration 0010)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from bootvault.store.tables import compartments, console_credentials, console_sessions
from bootvault.store.tables import console_sign_in_failures as failures


@dataclass(frozen=True)
class Credential:
    user_id: str
    tenancy_id: str
    name: str
    password_hash: str


@dataclass(frozen=True)
class SessionRow:
    user_id: str
    tenancy_id: str
    csrf_token: str
    time_created: datetime
    time_last_seen: datetime
    user_name: str


def add_credential(conn: Connection, cred: Credential, at: datetime) -> None:
    conn.execute(
        insert(console_credentials).values(
            user_id=cred.user_id,
            tenancy_id=cred.tenancy_id,
            name=cred.name,
            password_hash=cred.password_hash,
            time_created=at,
        )
    )


def credential_named(conn: Connection, name: str) -> Credential | None:
    row = conn.execute(select(console_credentials).where(console_credentials.c.name == name)).first()
    if row is None:
        return None
    return Credential(row.user_id, row.tenancy_id, row.name, row.password_hash)


def set_password_hash(conn: Connection, user_id: str, password_hash: str) -> None:
    conn.execute(
        update(console_credentials)
        .where(console_credentials.c.user_id == user_id)
        .values(password_hash=password_hash)
    )


def insert_session(
    conn: Connection, token_hash: str, cred: Credential, csrf_token: str, at: datetime
) -> None:
    conn.execute(
        insert(console_sessions).values(
            token_hash=token_hash,
            user_id=cred.user_id,
            tenancy_id=cred.tenancy_id,
            csrf_token=csrf_token,
            time_created=at,
            time_last_seen=at,
        )
    )


def get_session(conn: Connection, token_hash: str) -> SessionRow | None:
    s, c = console_sessions, console_credentials
    stmt = select(s, c.c.name).join(c, c.c.user_id == s.c.user_id).where(s.c.token_hash == token_hash)
    row = conn.execute(stmt).first()
    if row is None:
        return None
    return SessionRow(
        row.user_id, row.tenancy_id, row.csrf_token, row.time_created, row.time_last_seen, row.name
    )


def touch_session(conn: Connection, token_hash: str, at: datetime) -> None:
    conn.execute(
        update(console_sessions).where(console_sessions.c.token_hash == token_hash).values(time_last_seen=at)
    )


def delete_session(conn: Connection, token_hash: str) -> None:
    conn.execute(delete(console_sessions).where(console_sessions.c.token_hash == token_hash))


def delete_sessions_before(conn: Connection, created_before: datetime, seen_before: datetime) -> int:
    stmt = delete(console_sessions).where(
        (console_sessions.c.time_created < created_before) | (console_sessions.c.time_last_seen < seen_before)
    )
    return conn.execute(stmt).rowcount


def failures_of(conn: Connection, subject: str) -> tuple[datetime, int] | None:
    row = conn.execute(select(failures).where(failures.c.subject == subject)).first()
    return None if row is None else (row.window_start, row.failures)


def record_failure(conn: Connection, subject: str, window_start: datetime, count: int) -> None:
    """Set the subject's counter (a new window when window_start moved). Two first failures at
    once (PostgreSQL) both insert: the loser's savepoint rolls back and it updates instead."""
    values = {"window_start": window_start, "failures": count}
    if conn.execute(update(failures).where(failures.c.subject == subject).values(**values)).rowcount:
        return
    try:
        with conn.begin_nested():
            conn.execute(insert(failures).values(subject=subject, **values))
    except IntegrityError:
        conn.execute(update(failures).where(failures.c.subject == subject).values(**values))


def clear_failures(conn: Connection, subject: str) -> None:
    conn.execute(delete(failures).where(failures.c.subject == subject))


def compartments_of(conn: Connection, tenancy_id: str) -> list[tuple[str, str | None, str, datetime]]:
    """(id, parent id, name, time created) of every compartment of the tenancy, root first."""
    stmt = (
        select(compartments.c.id, compartments.c.parent_id, compartments.c.name, compartments.c.time_created)
        .where(compartments.c.tenancy_id == tenancy_id)
        .order_by(compartments.c.parent_id.is_not(None), compartments.c.name, compartments.c.id)
    )
    return [tuple(r) for r in conn.execute(stmt)]
