"""Aggregate reads behind the console's dashboard, per (tenancy, compartment). Each is one
statement over the indexes of migration 0008 (state counts read ix_backups_state_time)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Connection, func, select

from bootvault.domain.lifecycle import BACKUP_IN_PROGRESS
from bootvault.domain.models import BackupState, BootVolume, BootVolumeBackup, VolumeState
from bootvault.domain.policies import PolicyAssignment
from bootvault.store.backups import _record
from bootvault.store.policies import _assignment
from bootvault.store.tables import boot_volume_backups as b
from bootvault.store.tables import boot_volumes as v
from bootvault.store.tables import volume_backup_policy_assignments as a
from bootvault.store.volumes import _from_row as _volume


def _backups_in(tenancy_id: str, compartment_id: str) -> Any:
    return (b.c.tenancy_id == tenancy_id) & (b.c.compartment_id == compartment_id)


def state_totals(conn: Connection, tenancy_id: str, compartment_id: str) -> dict[str, tuple[int, int, int]]:
    """state -> (backups, logical bytes, bytes stored), in one pass over ix_backups_state_sizes.
    The stored bytes are what each backup added (new blocks, compressed and encrypted), so over
    the AVAILABLE backups their sum is the space the compartment's backups hold, and logical /
    stored is the deduplication and compression factor."""
    stmt = (
        select(
            b.c.lifecycle_state,
            func.count(),
            func.coalesce(func.sum(b.c.logical_size_bytes), 0),
            func.coalesce(func.sum(b.c.unique_size_bytes), 0),
        )
        .where(_backups_in(tenancy_id, compartment_id))
        .group_by(b.c.lifecycle_state)
    )
    return {state: (int(n), int(logical), int(stored)) for state, n, logical, stored in conn.execute(stmt)}


def backups_in_states(
    conn: Connection, tenancy_id: str, compartment_id: str, states: Iterable[BackupState], limit: int
) -> list[BootVolumeBackup]:
    """The newest backups in these states (running ones, failures): one statement per state, so
    each reads ix_backups_state_time backwards and stops after `limit` rows (with IN, SQLite
    walked the whole compartment in time order)."""
    found: list[BootVolumeBackup] = []
    for state in states:
        stmt = (
            select(b)
            .where(_backups_in(tenancy_id, compartment_id), b.c.lifecycle_state == state.value)
            .order_by(b.c.time_created.desc(), b.c.id.desc())
            .limit(limit)
        )
        found.extend(_record(r) for r in conn.execute(stmt))
    found.sort(key=lambda x: (x.time_created, x.id), reverse=True)
    return found[:limit]


def running_backups(
    conn: Connection, tenancy_id: str, compartment_id: str, limit: int
) -> list[BootVolumeBackup]:
    return backups_in_states(conn, tenancy_id, compartment_id, BACKUP_IN_PROGRESS, limit)


def daily_series(conn: Connection, tenancy_id: str, compartment_id: str) -> list[tuple[str, int, int]]:
    """(day, backups created that day, bytes they added) for the backups that still hold data
    (AVAILABLE), oldest day first: the console draws their running totals."""
    day = func.date(b.c.time_created)
    stmt = (
        select(day, func.count(), func.coalesce(func.sum(b.c.unique_size_bytes), 0))
        .where(_backups_in(tenancy_id, compartment_id), b.c.lifecycle_state == BackupState.AVAILABLE.value)
        .group_by(day)
        .order_by(day)
    )
    return [(str(d), int(n), int(s)) for d, n, s in conn.execute(stmt)]


def volumes_where(
    conn: Connection, tenancy_id: str, compartment_id: str, *conditions: Any
) -> list[BootVolume]:
    stmt = (
        select(v)
        .where(v.c.tenancy_id == tenancy_id, v.c.compartment_id == compartment_id, *conditions)
        .order_by(v.c.time_created.desc())
        .limit(50)
    )
    return [_volume(r) for r in conn.execute(stmt)]


def busy_volumes(conn: Connection, tenancy_id: str, compartment_id: str) -> list[BootVolume]:
    """Volumes being restored, cloned, grown or hydrated."""
    busy = [VolumeState.RESTORING.value, VolumeState.PROVISIONING.value]
    hydrating = (v.c.lifecycle_state == VolumeState.AVAILABLE.value) & v.c.is_hydrated.is_(False)
    return volumes_where(conn, tenancy_id, compartment_id, v.c.lifecycle_state.in_(busy) | hydrating)


def faulty_volumes(conn: Connection, tenancy_id: str, compartment_id: str) -> list[BootVolume]:
    return volumes_where(conn, tenancy_id, compartment_id, v.c.lifecycle_state == VolumeState.FAULTY.value)


def next_runs(
    conn: Connection, tenancy_id: str, compartment_id: str, limit: int
) -> list[tuple[PolicyAssignment, str]]:
    """(assignment, volume name) of the compartment's volumes with a policy, soonest due first."""
    stmt = (
        select(a, v.c.display_name.label("volume_name"))
        .join(v, v.c.id == a.c.asset_id)
        .where(
            a.c.tenancy_id == tenancy_id,
            v.c.compartment_id == compartment_id,
            a.c.next_run_at.is_not(None),
        )
        .order_by(a.c.next_run_at)
        .limit(limit)
    )
    return [(_assignment(r), r.volume_name) for r in conn.execute(stmt)]


def assignments_of(conn: Connection, asset_ids: list[str]) -> dict[str, PolicyAssignment]:
    if not asset_ids:
        return {}
    stmt = select(a).where(a.c.asset_id.in_(asset_ids))
    return {r.asset_id: _assignment(r) for r in conn.execute(stmt)}


def assignments_of_policy(conn: Connection, tenancy_id: str, policy_id: str) -> list[tuple[str, str]]:
    """(volume id, volume name) of the tenancy's volumes that have this policy."""
    stmt = (
        select(v.c.id, v.c.display_name)
        .join(a, a.c.asset_id == v.c.id)
        .where(a.c.tenancy_id == tenancy_id, a.c.policy_id == policy_id)
        .order_by(v.c.display_name, v.c.id)
        .limit(1000)
    )
    return [(r.id, r.display_name) for r in conn.execute(stmt)]
