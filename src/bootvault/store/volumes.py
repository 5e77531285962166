"""Boot volume rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, func, insert, select

from bootvault.domain.lifecycle import VOLUME, VOLUME_FILLING
from bootvault.domain.models import BootVolume, VolumeSource, VolumeState
from bootvault.store.common import LifecycleRows, fetch_row, tag_columns, tags_from_row
from bootvault.store.paging import Position, keyset_page
from bootvault.store.tables import boot_volumes as t


def _from_row(row: Any) -> BootVolume:
    return BootVolume(
        id=row.id,
        tenancy_id=row.tenancy_id,
        compartment_id=row.compartment_id,
        availability_domain=row.availability_domain,
        display_name=row.display_name,
        lifecycle_state=VolumeState(row.lifecycle_state),
        size_in_gbs=row.size_in_gbs,
        time_created=row.time_created,
        etag=row.etag,
        tags=tags_from_row(row),
        source_type=VolumeSource(row.source_type) if row.source_type else None,
        source_id=row.source_id,
        kms_key_id=row.kms_key_id,
        vpus_per_gb=row.vpus_per_gb,
        is_hydrated=row.is_hydrated,
        image_id=row.image_id,
        lifecycle_details=row.lifecycle_details,
        attachment_uri=row.attachment_uri,
        time_attached=row.time_attached,
        hydration_percent=row.hydration_percent,
        xrc_kms_key_id=row.xrc_kms_key_id,
    )


def insert_volume(conn: Connection, vol: BootVolume) -> None:
    conn.execute(
        insert(t).values(
            id=vol.id,
            tenancy_id=vol.tenancy_id,
            compartment_id=vol.compartment_id,
            availability_domain=vol.availability_domain,
            display_name=vol.display_name,
            lifecycle_state=vol.lifecycle_state.value,
            size_in_gbs=vol.size_in_gbs,
            time_created=vol.time_created,
            etag=vol.etag,
            source_type=vol.source_type.value if vol.source_type else None,
            source_id=vol.source_id,
            kms_key_id=vol.kms_key_id,
            vpus_per_gb=vol.vpus_per_gb,
            is_hydrated=vol.is_hydrated,
            image_id=vol.image_id,
            lifecycle_details=vol.lifecycle_details,
            xrc_kms_key_id=vol.xrc_kms_key_id,
            **tag_columns(vol.tags),
        )
    )


def get_volume(conn: Connection, volume_id: str, *, lock: bool = False) -> BootVolume | None:
    row = fetch_row(conn, t, volume_id, lock=lock)
    return _from_row(row) if row else None


def get_volumes(
    conn: Connection, volume_ids: list[str], *, share_lock: bool = False
) -> dict[str, BootVolume]:
    """Volumes by id; share_lock holds them against a concurrent delete (PostgreSQL FOR SHARE)."""
    if not volume_ids:
        return {}
    stmt = select(t).where(t.c.id.in_(volume_ids))
    if share_lock and conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(read=True)
    return {row.id: _from_row(row) for row in conn.execute(stmt)}


_rows = LifecycleRows(t, VOLUME)
update_volume = _rows.update  # columns other than the state
move_volume = _rows.move  # the state, by an event of domain/lifecycle.VOLUME (refused: Conflict)


def list_volumes(
    conn: Connection,
    tenancy_id: str,
    *,
    compartment_id: str | None,
    availability_domain: str | None,
    limit: int,
    after: Position | None,
) -> tuple[list[BootVolume], Position | None]:
    stmt = select(t).where(t.c.tenancy_id == tenancy_id)
    if compartment_id:
        stmt = stmt.where(t.c.compartment_id == compartment_id)
    if availability_domain:
        stmt = stmt.where(t.c.availability_domain == availability_domain)
    rows, last = keyset_page(conn, stmt, t.c.time_created, t.c.id, descending=False, limit=limit, after=after)
    return [_from_row(r) for r in rows], last


def count_restoring_from(conn: Connection, source_id: str) -> int:
    """Volumes still being filled from `source_id` (a backup being restored or a volume cloned)."""
    busy = [s.value for s in VOLUME_FILLING]
    stmt = select(func.count()).where(t.c.source_id == source_id, t.c.lifecycle_state.in_(busy))
    return int(conn.execute(stmt).scalar() or 0)


def attached_volumes(conn: Connection, availability_domains: list[str]) -> list[BootVolume]:
    """Volumes served to a machine in these availability domains (what daemons must exist)."""
    stmt = select(t).where(t.c.attachment_uri.is_not(None), t.c.availability_domain.in_(availability_domains))
    return [_from_row(r) for r in conn.execute(stmt)]


def usage(conn: Connection, tenancy_id: str) -> tuple[int, int]:
    """(count, total sizeInGBs) of a tenancy's volumes that are not TERMINATED."""
    stmt = select(func.count(), func.coalesce(func.sum(t.c.size_in_gbs), 0)).where(
        t.c.tenancy_id == tenancy_id, t.c.lifecycle_state != VolumeState.TERMINATED.value
    )
    count, gbs = conn.execute(stmt).one()
    return int(count), int(gbs)


def hydrating_from(conn: Connection, source_id: str) -> list[str]:
    """Volumes still reading their data from `source_id` (a backup) while they hydrate."""
    stmt = select(t.c.id).where(
        t.c.source_id == source_id,
        t.c.is_hydrated.is_(False),
        t.c.lifecycle_state == VolumeState.AVAILABLE.value,
    )
    return [row.id for row in conn.execute(stmt)]
