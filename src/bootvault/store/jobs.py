"""The job queue lives in the database: rows are claimed with a lease and renewed by heartbeats.

Restart rule for every job: a worker that dies stops renewing its lease; once the lease has
expired any worker may claim the job again (attempts counts the claims)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, insert, or_, select, update
from sqlalchemy.orm import aliased

from bootvault.domain.models import Job, JobKind, JobState
from bootvault.store.common import now
from bootvault.store.tables import jobs as t

_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)


def _from_row(row: Any) -> Job:
    return Job(
        id=row.id,
        kind=JobKind(row.kind),
        tenancy_id=row.tenancy_id,
        resource_id=row.resource_id,
        lane=row.lane,
        state=JobState(row.state),
        attempts=row.attempts,
        time_created=row.time_created,
        lease_owner=row.lease_owner,
        lease_expires_at=row.lease_expires_at,
        last_error=row.last_error,
    )


def enqueue(conn: Connection, kind: JobKind, tenancy_id: str, resource_id: str, lane: str) -> str:
    job_id = uuid.uuid4().hex
    conn.execute(
        insert(t).values(
            id=job_id,
            kind=kind.value,
            tenancy_id=tenancy_id,
            resource_id=resource_id,
            lane=lane,
            state=JobState.QUEUED.value,
            attempts=0,
            time_created=now(),
        )
    )
    return job_id


def _claimable(ts: Any) -> Any:
    older = aliased(t)
    blocked_by_older = exists().where(
        older.c.lane == t.c.lane,
        older.c.state.in_(_ACTIVE),
        or_(
            older.c.time_created < t.c.time_created,
            and_(older.c.time_created == t.c.time_created, older.c.id < t.c.id),
        ),
    )
    free = or_(
        t.c.state == JobState.QUEUED.value,
        and_(t.c.state == JobState.RUNNING.value, t.c.lease_expires_at < ts),
    )
    return select(t).where(free, ~blocked_by_older).order_by(t.c.time_created, t.c.id).limit(1)


def claim(conn: Connection, owner: str, lease: timedelta) -> Job | None:
    """Take the oldest runnable job whose lane has nothing older still active."""
    ts = now()
    stmt = _claimable(ts)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True, of=t)
    row = conn.execute(stmt).first()
    if row is None:
        return None
    conn.execute(
        update(t)
        .where(t.c.id == row.id)
        .values(
            state=JobState.RUNNING.value,
            lease_owner=owner,
            lease_expires_at=ts + lease,
            attempts=row.attempts + 1,
        )
    )
    return _from_row(conn.execute(select(t).where(t.c.id == row.id)).one())


def renew(conn: Connection, job_id: str, owner: str, lease: timedelta) -> bool:
    """Extend the lease; False means another worker owns the job now."""
    result = conn.execute(
        update(t)
        .where(t.c.id == job_id, t.c.lease_owner == owner, t.c.state == JobState.RUNNING.value)
        .values(lease_expires_at=now() + lease)
    )
    return result.rowcount == 1


def finish(conn: Connection, job_id: str, owner: str, state: JobState, error: str | None = None) -> bool:
    result = conn.execute(
        update(t)
        .where(t.c.id == job_id, t.c.lease_owner == owner, t.c.state == JobState.RUNNING.value)
        .values(state=state.value, last_error=error, lease_expires_at=None)
    )
    return result.rowcount == 1


def active_for_resource(conn: Connection, resource_id: str) -> list[Job]:
    rows = conn.execute(select(t).where(t.c.resource_id == resource_id, t.c.state.in_(_ACTIVE)))
    return [_from_row(r) for r in rows]
