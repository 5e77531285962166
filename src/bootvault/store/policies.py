"""Backup policy, assignment and scheduled-run rows."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bootvault.domain.policies import PolicyAssignment, Schedule, VolumeBackupPolicy
from bootvault.store.common import fetch_row, tag_columns, tags_from_row, update_with_etag
from bootvault.store.paging import Position, keyset_page
from bootvault.store.tables import scheduled_runs as runs
from bootvault.store.tables import volume_backup_policies as t
from bootvault.store.tables import volume_backup_policy_assignments as a


def _policy(row: Any) -> VolumeBackupPolicy:
    return VolumeBackupPolicy(
        id=row.id,
        display_name=row.display_name,
        schedules=[Schedule.from_json(s) for s in row.schedules],
        time_created=row.time_created,
        etag=row.etag,
        tenancy_id=row.tenancy_id,
        compartment_id=row.compartment_id,
        destination_region=row.destination_region,
        tags=tags_from_row(row),
    )


def insert_policy(conn: Connection, p: VolumeBackupPolicy) -> None:
    conn.execute(
        insert(t).values(
            id=p.id,
            tenancy_id=p.tenancy_id,
            compartment_id=p.compartment_id,
            display_name=p.display_name,
            schedules=[s.to_json() for s in p.schedules],
            destination_region=p.destination_region,
            time_created=p.time_created,
            etag=p.etag,
            **tag_columns(p.tags),
        )
    )


def get_policy(
    conn: Connection, policy_id: str, *, lock: bool = False, share: bool = False
) -> VolumeBackupPolicy | None:
    """A user-defined policy; `lock` for a change, `share` to keep it from being deleted meanwhile
    (row locks on PostgreSQL; SQLite serialises writers anyway)."""
    if share and conn.dialect.name == "postgresql":
        row = conn.execute(select(t).where(t.c.id == policy_id).with_for_update(read=True)).first()
    else:
        row = fetch_row(conn, t, policy_id, lock=lock)
    return _policy(row) if row else None


def get_policies(conn: Connection, policy_ids: Iterable[str]) -> dict[str, VolumeBackupPolicy]:
    ids = list(set(policy_ids))
    return {row.id: _policy(row) for row in conn.execute(select(t).where(t.c.id.in_(ids)))} if ids else {}


def update_policy(
    conn: Connection, policy_id: str, values: dict[str, Any], expected_etag: str | None = None
) -> str | None:
    if "schedules" in values:
        values = {**values, "schedules": [s.to_json() for s in values["schedules"]]}
    return update_with_etag(conn, t, policy_id, values, expected_etag)


def delete_policy(conn: Connection, policy_id: str) -> None:
    conn.execute(delete(t).where(t.c.id == policy_id))


def list_policies(
    conn: Connection, tenancy_id: str, compartment_id: str, limit: int, after: Position | None
) -> tuple[list[VolumeBackupPolicy], Position | None]:
    stmt = select(t).where(t.c.tenancy_id == tenancy_id, t.c.compartment_id == compartment_id)
    rows, last = keyset_page(conn, stmt, t.c.time_created, t.c.id, descending=False, limit=limit, after=after)
    return [_policy(r) for r in rows], last


def _assignment(row: Any) -> PolicyAssignment:
    return PolicyAssignment(
        id=row.id,
        tenancy_id=row.tenancy_id,
        asset_id=row.asset_id,
        policy_id=row.policy_id,
        time_created=row.time_created,
        etag=row.etag,
        next_run_at=row.next_run_at,
        xrc_kms_key_id=row.xrc_kms_key_id,
    )


def insert_assignment(conn: Connection, x: PolicyAssignment) -> None:
    conn.execute(
        insert(a).values(
            id=x.id,
            tenancy_id=x.tenancy_id,
            asset_id=x.asset_id,
            policy_id=x.policy_id,
            time_created=x.time_created,
            etag=x.etag,
            xrc_kms_key_id=x.xrc_kms_key_id,
            next_run_at=x.next_run_at,
        )
    )


def get_assignment(conn: Connection, assignment_id: str, *, lock: bool = False) -> PolicyAssignment | None:
    row = fetch_row(conn, a, assignment_id, lock=lock)
    return _assignment(row) if row else None


def assignment_of_asset(conn: Connection, asset_id: str) -> PolicyAssignment | None:
    row = conn.execute(select(a).where(a.c.asset_id == asset_id)).first()
    return _assignment(row) if row else None


def delete_assignment(conn: Connection, assignment_id: str) -> None:
    conn.execute(delete(a).where(a.c.id == assignment_id))


def delete_assignment_of_asset(conn: Connection, asset_id: str) -> None:
    conn.execute(delete(a).where(a.c.asset_id == asset_id))


def count_assignments(conn: Connection, policy_id: str) -> int:
    return int(conn.execute(select(func.count()).where(a.c.policy_id == policy_id)).scalar() or 0)


def reschedule_policy(conn: Connection, policy_id: str, next_run_at: datetime | None, now: datetime) -> None:
    """A policy's schedules changed: its assignments next run at `next_run_at`, except those whose
    due time has come already (the scheduler handles that one with the new schedules)."""
    conn.execute(
        update(a)
        .where(a.c.policy_id == policy_id, (a.c.next_run_at.is_(None)) | (a.c.next_run_at > now))
        .values(next_run_at=next_run_at)
    )


def due_assignments(conn: Connection, now: datetime, limit: int) -> list[PolicyAssignment]:
    """Assignments whose next due time has come, oldest first (locked on PostgreSQL, skipping rows
    another scheduler holds)."""
    stmt = select(a).where(a.c.next_run_at <= now).order_by(a.c.next_run_at, a.c.id).limit(limit)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [_assignment(r) for r in conn.execute(stmt)]


def set_next_runs(conn: Connection, by_time: dict[datetime | None, list[str]]) -> None:
    for when, ids in by_time.items():
        conn.execute(update(a).where(a.c.id.in_(ids)).values(next_run_at=when))


def claim_runs(conn: Connection, rows: list[dict[str, Any]]) -> set[str]:
    """Insert run rows; returns the backup ids whose row went in. A (volume, due time) another
    scheduler recorded already is left alone (ON CONFLICT DO NOTHING), so its backup is never
    made twice."""
    if not rows:
        return set()
    postgres = conn.dialect.name == "postgresql"
    statement = postgresql.insert(runs) if postgres else sqlite.insert(runs)
    conn.execute(statement.on_conflict_do_nothing(), rows)  # executemany: compiled once
    ours = [r["backup_id"] for r in rows if r["backup_id"] is not None]
    if not ours:
        return set()
    return set(conn.execute(select(runs.c.backup_id).where(runs.c.backup_id.in_(ours))).scalars())


def runs_of(conn: Connection, asset_id: str) -> list[Any]:
    return list(conn.execute(select(runs).where(runs.c.asset_id == asset_id).order_by(runs.c.due_time)))


def prune_runs(conn: Connection, before: datetime) -> int:
    return conn.execute(delete(runs).where(runs.c.due_time < before)).rowcount
