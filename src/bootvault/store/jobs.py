"""The job queue lives in the database: rows are claimed with a lease and renewed by heartbeats.

Restart rule for every job: a worker that dies stops renewing its lease; once the lease has
expired any worker may claim the job again (attempts counts the claims)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import aliased

from bootvault.domain.models import Job, JobKind, JobState
from bootvault.store.common import now
from bootvault.store.db import JOBS_CHANGED
from bootvault.store.tables import jobs as t

_ACTIVE = (JobState.QUEUED.value, JobState.RUNNING.value)
CHANNEL = "bootvault_jobs"


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
        result=row.result,
    )


def enqueue(
    conn: Connection, kind: JobKind, tenancy_id: str, resource_id: str, lane: str, ad: str | None = None
) -> str:
    job_id = uuid.uuid4().hex
    conn.execute(
        insert(t).values(
            id=job_id,
            kind=kind.value,
            tenancy_id=tenancy_id,
            resource_id=resource_id,
            lane=lane,
            availability_domain=ad,
            state=JobState.QUEUED.value,
            attempts=0,
            time_created=now(),
        )
    )
    announce(conn)
    return job_id


def enqueue_many(conn: Connection, items: list[tuple[JobKind, str, str, str, str | None]]) -> None:
    """Queue many jobs at once: (kind, tenancy, resource, lane, availability domain) each."""
    if not items:
        return
    ts = now()
    conn.execute(
        insert(t),
        [
            {
                "id": uuid.uuid4().hex,
                "kind": kind.value,
                "tenancy_id": tenancy_id,
                "resource_id": resource_id,
                "lane": lane,
                "availability_domain": ad,
                "state": JobState.QUEUED.value,
                "attempts": 0,
                "time_created": ts,
            }
            for kind, tenancy_id, resource_id, lane, ad in items
        ],
    )
    announce(conn)


def announce(conn: Connection) -> None:
    """Wake idle workers once this transaction commits: NOTIFY on PostgreSQL (every process),
    and the Database's in-process subscribers (see Database.write)."""
    conn.info[JOBS_CHANGED] = True
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"NOTIFY {CHANNEL}")


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


def claim(
    conn: Connection, owner: str, lease: timedelta, job_id: str | None = None, ads: list[str] | None = None
) -> Job | None:
    """Take the oldest runnable job whose lane has nothing older still active (or that one job),
    among those this worker can serve: jobs of the availability domains `ads` (None: any) and
    jobs bound to no availability domain."""
    ts = now()
    stmt = _claimable(ts)
    if ads is not None:
        stmt = stmt.where(or_(t.c.availability_domain.is_(None), t.c.availability_domain.in_(ads)))
    if job_id is not None:
        stmt = stmt.where(t.c.id == job_id)
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
            time_started=ts,
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


def finish(
    conn: Connection,
    job_id: str,
    owner: str,
    state: JobState,
    error: str | None = None,
    result: str | None = None,
) -> bool:
    outcome = conn.execute(
        update(t)
        .where(t.c.id == job_id, t.c.lease_owner == owner, t.c.state == JobState.RUNNING.value)
        .values(state=state.value, last_error=error, result=result, lease_expires_at=None)
    )
    if outcome.rowcount == 1:
        announce(conn)  # the next job of its lane may run now
    return outcome.rowcount == 1


def get(conn: Connection, job_id: str) -> Job:
    return _from_row(conn.execute(select(t).where(t.c.id == job_id)).one())


def active_for_resource(conn: Connection, resource_id: str) -> list[Job]:
    rows = conn.execute(select(t).where(t.c.resource_id == resource_id, t.c.state.in_(_ACTIVE)))
    return [_from_row(r) for r in rows]


def oldest_running_start(conn: Connection, kinds: list[JobKind]) -> datetime | None:
    """When the longest-running job of these kinds began (None if none is running)."""
    stmt = select(func.min(t.c.time_started)).where(
        t.c.state == JobState.RUNNING.value, t.c.kind.in_([k.value for k in kinds])
    )
    return conn.execute(stmt).scalar()


def has_active(conn: Connection, kind: JobKind) -> bool:
    stmt = select(func.count()).where(t.c.kind == kind.value, t.c.state.in_(_ACTIVE))
    return bool(conn.execute(stmt).scalar())


def last_queued(conn: Connection, kind: JobKind) -> datetime | None:
    stmt = select(func.max(t.c.time_created)).where(t.c.kind == kind.value)
    return conn.execute(stmt).scalar()


def counts_by_kind_and_state(conn: Connection) -> list[tuple[str, str, int]]:
    """(kind, state, jobs) for the queue metrics."""
    rows = conn.execute(select(t.c.kind, t.c.state, func.count()).group_by(t.c.kind, t.c.state))
    return [(kind, state, count) for kind, state, count in rows]
