"""Cross-region copy, the destination's side: what a region does when a peer (or itself, for a
same-region copy) copies a backup into it. Called by the region protocol routes and, for a copy
to the same region, directly by the source's job. Every step is idempotent: a resumed copy
repeats them safely.

- create: the new backup, CREATING, under an OCID the source minted with this region's segment,
  and the copy's work request (same id as in the source region);
- missing: which transfer ids this region cannot serve from its own blocks;
- blocks: check, re-encrypt under this region's keys and store received blocks, then record
  their transfer ids (only after their packs are whole); progress follows;
- commit: the manifest, in this region's block ids; then AVAILABLE;
- fail: the backup goes FAULTY and the work request FAILED, with the source's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bootvault.domain.errors import Conflict, InvalidArgument, NotFound, RelatedNotFound
from bootvault.domain.models import BackupState, BackupType, BootVolumeBackup, SourceType, Tags, WorkRequest
from bootvault.engine.manifest import Manifest
from bootvault.engine.xrc import BadFrame
from bootvault.service import quotas
from bootvault.service.context import Context
from bootvault.store import backups, identity, workrequests
from bootvault.store import regions as xrc_repo
from bootvault.store.common import new_etag, now

OPERATION = "CopyBootVolumeBackup"


@dataclass
class CopyOrder:
    """What the source tells the destination about the copy (JSON on the region protocol)."""

    work_request_id: str
    backup_id: str  # the new backup's OCID, minted by the source with this region's segment
    tenancy_id: str
    compartment_id: str
    boot_volume_id: str
    source_backup_id: str
    source_region: str
    type: str
    size_in_gbs: int | None
    image_id: str | None
    display_name: str
    kms_key_id: str | None
    freeform_tags: dict[str, Any]
    defined_tags: dict[str, Any]
    time_imaged: str | None  # the source image's instant (ISO)
    schedule_retention_seconds: int | None = None


def resources(backup_id: str, action: str) -> list[dict[str, Any]]:
    return [
        {
            "entityType": "bootVolumeBackup",
            "actionType": action,
            "identifier": backup_id,
            "entityUri": f"/20160918/bootVolumeBackups/{backup_id}",
        }
    ]


def create(ctx: Context, order: CopyOrder) -> BootVolumeBackup:
    region = ctx.settings.region
    if order.backup_id.split(".")[3:4] != [region]:
        raise InvalidArgument(f"the copy's id {order.backup_id} is not an id of region {region}")
    with ctx.db.write() as conn:
        existing = backups.get_backup(conn, order.backup_id)
        if existing is not None:  # a repeated create (resumed job, retried call)
            if existing.tenancy_id != order.tenancy_id:
                raise NotFound()
            return existing
        comp = identity.get_compartment(conn, order.compartment_id)
        if comp is None or comp.tenancy_id != order.tenancy_id:
            raise RelatedNotFound(
                f"Compartment {order.compartment_id} is unknown in region {region}: is the tenancy paired?"
            )
        if (
            order.kms_key_id is not None
            and identity.kms_key_tenancy(conn, order.kms_key_id) != order.tenancy_id
        ):
            raise RelatedNotFound(
                f"kmsKeyId {order.kms_key_id} not found or not authorized in region {region}."
            )
        quotas.check_backups(ctx, conn, order.tenancy_id)
        received = now()
        backup = BootVolumeBackup(
            id=order.backup_id,
            tenancy_id=order.tenancy_id,
            compartment_id=order.compartment_id,
            boot_volume_id=order.boot_volume_id,
            display_name=order.display_name,
            lifecycle_state=BackupState.CREATING,
            type=BackupType(order.type),
            source_type=SourceType.MANUAL,
            time_request_received=received,
            time_created=received,
            etag=new_etag(),
            size_in_gbs=order.size_in_gbs,
            kms_key_id=order.kms_key_id,
            image_id=order.image_id,
            tags=Tags(dict(order.freeform_tags), dict(order.defined_tags)),
            source_boot_volume_backup_id=order.source_backup_id,
            schedule_retention_seconds=order.schedule_retention_seconds,
            lifecycle_details=f"copying from {order.source_region}",
        )
        backups.insert_backup(conn, backup)
        if order.source_region != region:  # a same-region copy has its one row in this database
            workrequests.insert_wr(conn, copy_work_request(order, region, received))
        return backup


def copy_work_request(order: CopyOrder, destination: str, accepted: datetime) -> WorkRequest:
    return WorkRequest(
        id=order.work_request_id,
        tenancy_id=order.tenancy_id,
        compartment_id=order.compartment_id,
        operation_type=OPERATION,
        status="ACCEPTED",
        percent_complete=0.0,
        time_accepted=accepted,
        resources=resources(order.backup_id, "CREATED"),
        source_region=order.source_region,
        destination_region=destination,
        source_id=order.source_backup_id,
        target_id=order.backup_id,
        kms_key_id=order.kms_key_id,
        display_name=order.display_name,
    )


def _copying(ctx: Context, backup_id: str, tenancy_id: str) -> BootVolumeBackup:
    with ctx.db.read() as conn:
        backup = backups.get_backup(conn, backup_id)
    if backup is None or backup.tenancy_id != tenancy_id or backup.source_boot_volume_backup_id is None:
        raise NotFound()
    if backup.lifecycle_state != BackupState.CREATING:
        raise Conflict(f"Boot volume backup {backup_id} is {backup.lifecycle_state}, not being copied.")
    return backup


def missing(ctx: Context, backup_id: str, tenancy_id: str, tids: list[bytes]) -> list[bytes]:
    """The transfer ids this region cannot serve from blocks it holds (for this backup's key)."""
    backup = _copying(ctx, backup_id, tenancy_id)
    repo = ctx.repository(tenancy_id, backup.kms_key_id)
    hexes = [t.hex() for t in tids]
    with ctx.db.read() as conn:
        known = xrc_repo.known_transfers(conn, repo.scope, hexes)
    have = dict(zip(known, repo.present(list(known.values())), strict=True))
    return [t for t, h in zip(tids, hexes, strict=True) if not have.get(h, False)]


def receive(ctx: Context, backup_id: str, tenancy_id: str, key: bytes, body: bytes, percent: float) -> int:
    backup = _copying(ctx, backup_id, tenancy_id)
    repo = ctx.repository(tenancy_id, backup.kms_key_id)
    try:
        pairs = repo.store_received(key, body, max(ctx.settings.block_size, 1 << 20))
    except BadFrame as exc:  # malformed or damaged in transit: the sender's request is refused
        raise InvalidArgument(str(exc)) from None
    with ctx.db.write() as conn:
        xrc_repo.remember_transfers(conn, repo.scope, pairs)
        backups.update_backup(conn, backup_id, {"percent_complete": int(min(99, percent))})
        _wr_progress(conn, backup_id, percent)
    return len(pairs)


def _wr_progress(conn: Any, backup_id: str, percent: float, message: str | None = None) -> None:
    for wr in workrequests.by_target(conn, backup_id):
        workrequests.progress(conn, wr.id, min(99.0, percent), message)


def started(ctx: Context, backup_id: str, tenancy_id: str, message: str) -> None:
    _copying(ctx, backup_id, tenancy_id)
    with ctx.db.write() as conn:
        _wr_progress(conn, backup_id, 0.0, message)


def commit(
    ctx: Context,
    backup_id: str,
    tenancy_id: str,
    header: dict[str, Any],
    indices: list[int],
    tids: list[bytes],
) -> list[bytes]:
    """Write the copy's manifest and make it AVAILABLE; or return the transfer ids still missing."""
    backup = _copying(ctx, backup_id, tenancy_id)
    repo = ctx.repository(tenancy_id, backup.kms_key_id)
    hexes = sorted({t.hex() for t in tids})
    with ctx.db.read() as conn:
        known = xrc_repo.known_transfers(conn, repo.scope, hexes)
    ok = dict(zip(known, repo.present(list(known.values())), strict=True))
    lacking = [h for h in hexes if not ok.get(h, False)]
    if lacking:
        return [bytes.fromhex(h) for h in lacking]
    entries = [(i, bytes.fromhex(known[t.hex()])) for i, t in zip(indices, tids, strict=True)]
    manifest = Manifest.from_entries(int(header["logical_size"]), int(header["block_size"]), entries)
    repo.save_manifest(backup_id, manifest)
    imaged = datetime.fromisoformat(header["time_imaged"]) if header.get("time_imaged") else now()
    values: dict[str, Any] = {
        "percent_complete": 100,
        "time_imaged": imaged,
        "logical_size_bytes": manifest.logical_size,
        "unique_size_bytes": int(header.get("bytes_received", 0)),
        "lifecycle_details": None,
    }
    if backup.schedule_retention_seconds is not None:
        values["expiration_time"] = imaged + timedelta(seconds=backup.schedule_retention_seconds)
    with ctx.db.write() as conn:
        backups.move_backup(conn, backup_id, "completed", values)
        for wr in workrequests.by_target(conn, backup_id):
            workrequests.finish(conn, wr.id, "SUCCEEDED")
    return []


def fail(ctx: Context, backup_id: str, tenancy_id: str, reason: str) -> None:
    with ctx.db.write() as conn:
        backup = backups.get_backup(conn, backup_id)
        if backup is None or backup.tenancy_id != tenancy_id:
            return
        if backup.lifecycle_state == BackupState.CREATING:
            backups.move_backup(conn, backup_id, "failed", {"lifecycle_details": reason})
        for wr in workrequests.by_target(conn, backup_id):
            workrequests.finish(conn, wr.id, "FAILED", reason)


def get(ctx: Context, backup_id: str, tenancy_id: str) -> BootVolumeBackup:
    with ctx.db.read() as conn:
        backup = backups.get_backup(conn, backup_id)
    if backup is None or backup.tenancy_id != tenancy_id:
        raise NotFound()
    return backup


def expire_stalled(ctx: Context) -> int:
    """Copies into this region whose source has not been heard from for copy_stall_seconds
    (its worker cannot reach us, or it is gone): FAULTY, their work requests FAILED. A source
    that comes back finds the copy FAULTY and fails its job (the copy is refused as not CREATING)."""
    before = now() - timedelta(seconds=ctx.settings.copy_stall_seconds)
    with ctx.db.read() as conn:
        stalled = workrequests.stalled_incoming(conn, ctx.settings.region, before)
    for wr in stalled:
        if wr.target_id:
            silent = ctx.settings.copy_stall_seconds
            fail(
                ctx,
                wr.target_id,
                wr.tenancy_id,
                f"The source region {wr.source_region} sent nothing for {silent:g} s.",
            )
    return len(stalled)
