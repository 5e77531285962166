"""Boot volume backup rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, func, insert, or_, select

from bootvault.domain.lifecycle import BACKUP, BACKUP_IN_PROGRESS
from bootvault.domain.models import BackupState, BackupType, BootVolumeBackup, SourceType
from bootvault.domain.retention import Retention, RetentionDuration
from bootvault.store.common import LifecycleRows, fetch_row, tag_columns, tags_from_row
from bootvault.store.paging import Position, keyset_statement, run_page
from bootvault.store.tables import boot_volume_backups as t

_COLUMNS = [
    "id",
    "tenancy_id",
    "compartment_id",
    "boot_volume_id",
    "display_name",
    "time_request_received",
    "time_created",
    "time_imaged",
    "etag",
    "size_in_gbs",
    "kms_key_id",
    "image_id",
    "percent_complete",
    "logical_size_bytes",
    "unique_size_bytes",
    "lifecycle_details",
    "source_boot_volume_backup_id",
    "expiration_time",
    "schedule_retention_seconds",
]


def _retention(row: Any) -> Retention:
    period = None
    if row.retention_unit is not None:
        period = RetentionDuration(row.retention_unit, row.retention_amount)
    return Retention(
        period=period,
        lock=row.is_retention_lock_enabled,
        prevent_deletion=row.is_prevent_deletion_enabled,
        legal_hold=row.is_indefinite_retention_enabled,
        expires_at=row.time_retention_expires_at,
    )


def retention_columns(r: Retention) -> dict[str, Any]:
    return {
        "retention_unit": r.period.unit if r.period else None,
        "retention_amount": r.period.amount if r.period else None,
        "is_retention_lock_enabled": r.lock,
        "is_prevent_deletion_enabled": r.prevent_deletion,
        "is_indefinite_retention_enabled": r.legal_hold,
        "time_retention_expires_at": r.expires_at,
    }


def _from_row(row: Any) -> BootVolumeBackup:
    return BootVolumeBackup(
        **{name: getattr(row, name) for name in _COLUMNS},
        lifecycle_state=BackupState(row.lifecycle_state),
        type=BackupType(row.type),
        source_type=SourceType(row.source_type),
        tags=tags_from_row(row),
        retention=_retention(row),
    )


def _values(b: BootVolumeBackup) -> dict[str, Any]:
    return {
        **{name: getattr(b, name) for name in _COLUMNS},
        "lifecycle_state": b.lifecycle_state.value,
        "type": b.type.value,
        "source_type": b.source_type.value,
        **tag_columns(b.tags),
        **retention_columns(b.retention),
    }


def insert_backup(conn: Connection, b: BootVolumeBackup) -> None:
    conn.execute(insert(t).values(**_values(b)))


def insert_backups(conn: Connection, items: list[BootVolumeBackup]) -> None:
    if items:
        conn.execute(insert(t), [_values(b) for b in items])


_RECORDS: dict[int, tuple[Any, BootVolumeBackup]] = {}  # id(row) -> (the row, its record)
RECORDS_MAX = 4096


def _record(row: Any) -> BootVolumeBackup:
    """The record of a row. Rows read through rawread (by key, list pages) come from its memo, so
    one content is one row object, and its record (frozen) is built once; the entry holds the
    row, so its id is not reused while the entry lives."""
    entry = _RECORDS.get(id(row))
    if entry is not None and entry[0] is row:
        return entry[1]
    record = _from_row(row)
    if len(_RECORDS) >= RECORDS_MAX:
        _RECORDS.clear()
    _RECORDS[id(row)] = row, record
    return record


def get_backup(conn: Connection, backup_id: str, *, lock: bool = False) -> BootVolumeBackup | None:
    row = fetch_row(conn, t, backup_id, lock=lock)
    return _record(row) if row else None


_rows = LifecycleRows(t, BACKUP)
update_backup = _rows.update  # columns other than the state
move_backup = _rows.move  # the state, by an event of domain/lifecycle.BACKUP (refused: Conflict)


def count_in_progress(conn: Connection, volume_id: str) -> int:
    states = [s.value for s in BACKUP_IN_PROGRESS]
    stmt = select(func.count()).where(t.c.boot_volume_id == volume_id, t.c.lifecycle_state.in_(states))
    return int(conn.execute(stmt).scalar() or 0)


def latest_available(conn: Connection, volume_id: str, kms_key_id: str | None) -> BootVolumeBackup | None:
    """The newest AVAILABLE backup of a volume under the same key: the parent of an incremental."""
    stmt = select(t).where(
        t.c.boot_volume_id == volume_id,
        t.c.lifecycle_state == BackupState.AVAILABLE.value,
        t.c.kms_key_id.is_(None) if kms_key_id is None else t.c.kms_key_id == kms_key_id,
    )
    row = conn.execute(stmt.order_by(t.c.time_created.desc()).limit(1)).first()
    return _from_row(row) if row else None


@dataclass
class BackupFilter:
    compartment_id: str
    boot_volume_id: str | None = None
    display_name: str | None = None
    source_boot_volume_backup_id: str | None = None
    lifecycle_state: BackupState | None = None


_LIST_STATEMENTS: dict[tuple[Any, ...], Select[Any]] = {}


def _list_statement(shape: tuple[Any, ...]) -> Select[Any]:
    """The statement of one query shape (which filters, which sort, first page or not), with
    bind parameters for every value; built once per shape (see store/paging.py)."""
    stmt = _LIST_STATEMENTS.get(shape)
    if stmt is None:
        dialect, volume, name, source, state, by_name, descending, paged = shape
        stmt = select(t).where(
            t.c.tenancy_id == bindparam("tenancy_id"), t.c.compartment_id == bindparam("compartment_id")
        )
        for present, col in (
            (volume, t.c.boot_volume_id),
            (name, t.c.display_name),
            (source, t.c.source_boot_volume_backup_id),
            (state, t.c.lifecycle_state),
        ):
            if present:
                stmt = stmt.where(col == bindparam(col.name))
        sort_col = t.c.display_name if by_name else t.c.time_created
        stmt = keyset_statement(stmt, sort_col, t.c.id, descending=descending, paged=paged, dialect=dialect)
        _LIST_STATEMENTS[shape] = stmt
    return stmt


def list_backups(
    conn: Connection,
    tenancy_id: str,
    flt: BackupFilter,
    *,
    sort_by_name: bool,
    descending: bool,
    limit: int,
    after: Position | None,
) -> tuple[list[BootVolumeBackup], Position | None]:
    params = {
        "tenancy_id": tenancy_id,
        "compartment_id": flt.compartment_id,
        "boot_volume_id": flt.boot_volume_id or None,
        "display_name": flt.display_name,
        "source_boot_volume_backup_id": flt.source_boot_volume_backup_id or None,
        "lifecycle_state": flt.lifecycle_state.value if flt.lifecycle_state else None,
    }
    shape = (
        conn.dialect.name,
        params["boot_volume_id"] is not None,
        params["display_name"] is not None,
        params["source_boot_volume_backup_id"] is not None,
        params["lifecycle_state"] is not None,
        sort_by_name,
        descending,
        after is not None,
    )
    sort_col = t.c.display_name if sort_by_name else t.c.time_created
    rows, last = run_page(conn, _list_statement(shape), params, sort_col, t.c.id, limit=limit, after=after)
    return [_record(r) for r in rows], last


def expired(conn: Connection, at: datetime, limit: int) -> list[BootVolumeBackup]:
    """Backups whose expirationTime has passed and that are not plainly held (the caller still
    asks Retention.blocker); locked on PostgreSQL, skipping rows another transaction holds."""
    held = or_(
        t.c.is_indefinite_retention_enabled.is_(True),
        and_(
            t.c.time_retention_expires_at > at,
            or_(t.c.is_retention_lock_enabled.is_(True), t.c.is_prevent_deletion_enabled.is_(True)),
        ),
    )
    stmt = (
        select(t)
        .where(
            t.c.expiration_time <= at,
            t.c.lifecycle_state.in_([BackupState.AVAILABLE.value, BackupState.FAULTY.value]),
            ~held,
        )
        .order_by(t.c.expiration_time)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [_from_row(r) for r in conn.execute(stmt)]


def all_backups(conn: Connection) -> list[BootVolumeBackup]:
    return [_from_row(r) for r in conn.execute(select(t))]


def count_live(conn: Connection, tenancy_id: str) -> int:
    """Backups of a tenancy that hold (or will hold) data: everything but TERMINATED."""
    stmt = select(func.count()).where(
        t.c.tenancy_id == tenancy_id, t.c.lifecycle_state != BackupState.TERMINATED.value
    )
    return int(conn.execute(stmt).scalar() or 0)
