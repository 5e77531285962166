"""Boot volume backup use cases, shared by the API and the worker."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection

from bootvault.domain import ocid
from bootvault.domain.errors import Conflict, EtagMismatch, IncorrectState, NotFound, RelatedNotFound
from bootvault.domain.lifecycle import BACKUP_GONE, BACKUP_IN_PROGRESS, VOLUME_FILLING
from bootvault.domain.models import (
    BackupState,
    BackupType,
    BootVolumeBackup,
    JobKind,
    SourceType,
    VolumeState,
)
from bootvault.domain.retention import Retention, change
from bootvault.domain.validation import check_display_name, check_if_match, check_tags, tag_update
from bootvault.service import pagetokens, quotas
from bootvault.service.context import Caller, Context
from bootvault.service.identity import require_compartment, require_kms_key
from bootvault.service.retry import idempotent_create
from bootvault.store import backups as repo
from bootvault.store import jobs, volumes, workrequests
from bootvault.store.common import new_etag, now

MAX_PAGE = 1000


@dataclass
class CreateBackup:
    boot_volume_id: str
    display_name: str | None = None
    type: BackupType = BackupType.INCREMENTAL
    kms_key_id: str | None = None
    freeform_tags: dict[str, Any] | None = None
    defined_tags: dict[str, Any] | None = None
    retention: Retention = field(default_factory=Retention)  # as requested (None: not given)


@dataclass
class UpdateBackup:
    display_name: str | None = None
    freeform_tags: dict[str, Any] | None = None
    defined_tags: dict[str, Any] | None = None
    kms_key_id: str | None = None
    retention: Retention = field(default_factory=Retention)  # None fields: unchanged


@dataclass
class ListBackups(repo.BackupFilter):
    """The store's filter, with the order and the page."""

    sort_by: str | None = None  # TIMECREATED | DISPLAYNAME; None: the token's, or the default
    sort_order: str | None = None  # ASC | DESC
    limit: int = MAX_PAGE
    page: str | None = None


def _default_name(backup_id: str) -> str:
    """Real OCI names an unnamed backup after the last segment of its OCID (recorded traffic)."""
    return backup_id.rsplit(".", 1)[-1]


def _owned(conn: Connection, caller: Caller, backup_id: str, *, lock: bool = False) -> BootVolumeBackup:
    backup = repo.get_backup(conn, backup_id, lock=lock)
    if backup is None or backup.tenancy_id != caller.tenancy_id:
        raise NotFound()
    return backup


def create_backup(
    ctx: Context, caller: Caller, req: CreateBackup, retry_token: str | None
) -> BootVolumeBackup:
    check_display_name(req.display_name)
    tags = check_tags(req.freeform_tags, req.defined_tags)

    def create(conn: Connection) -> str:
        volume = volumes.get_volume(conn, req.boot_volume_id, lock=True)
        if volume is None or volume.tenancy_id != caller.tenancy_id:
            raise RelatedNotFound(f"bootVolumeId {req.boot_volume_id} not found or not authorized.")
        if volume.lifecycle_state in VOLUME_FILLING:
            raise IncorrectState(
                f"Boot volume {volume.id} is {volume.lifecycle_state}; retry when AVAILABLE."
            )
        if volume.lifecycle_state != VolumeState.AVAILABLE:
            raise Conflict(f"Boot volume {volume.id} is {volume.lifecycle_state} and cannot be backed up.")
        require_kms_key(conn, caller, req.kms_key_id)
        quotas.check_backups(ctx, conn, caller.tenancy_id)
        received = now()
        retention = change(Retention(), req.retention, received, received, ctx.settings.retention_day_seconds)
        backup_id = ocid.mint("bootvolumebackup", ctx.settings.region)
        backup = BootVolumeBackup(
            id=backup_id,
            tenancy_id=caller.tenancy_id,
            compartment_id=volume.compartment_id,
            boot_volume_id=volume.id,
            display_name=req.display_name or _default_name(backup_id),
            lifecycle_state=BackupState.REQUEST_RECEIVED,
            type=req.type,
            source_type=SourceType.MANUAL,
            time_request_received=received,
            time_created=received,
            etag=new_etag(),
            size_in_gbs=volume.size_in_gbs,
            kms_key_id=req.kms_key_id or volume.kms_key_id,
            image_id=volume.image_id,
            tags=tags,
            retention=retention,
        )
        repo.insert_backup(conn, backup)
        jobs.enqueue(
            conn, JobKind.BACKUP, caller.tenancy_id, backup.id, lane=volume.id, ad=volume.availability_domain
        )
        workrequests.open_for_job(
            conn, ctx.settings.region, caller.tenancy_id, backup.compartment_id,
            "CreateBootVolumeBackup", "bootVolumeBackup", backup.id, "CREATED",
        )  # fmt: skip
        return backup.id

    return idempotent_create(
        ctx, caller, retry_token, "CreateBootVolumeBackup", asdict(req), create, repo.get_backup
    )


def get_backup(ctx: Context, caller: Caller, backup_id: str) -> BootVolumeBackup:
    with ctx.db.read_one() as conn:
        return _owned(conn, caller, backup_id)


def _resolved_sort(sort_by: str | None, sort_order: str | None) -> tuple[str, str]:
    """OCI's defaults: no sort given lists oldest first (as recorded); TIMECREATED alone is
    newest first, DISPLAYNAME alone A-Z."""
    if sort_by is None:
        return "TIMECREATED", sort_order or "ASC"
    return sort_by, sort_order or ("DESC" if sort_by == "TIMECREATED" else "ASC")


def list_backups(ctx: Context, caller: Caller, q: ListBackups) -> tuple[list[BootVolumeBackup], str | None]:
    asked = {
        "compartmentId": q.compartment_id or None,
        "bootVolumeId": q.boot_volume_id,
        "displayName": q.display_name,
        "sourceBootVolumeBackupId": q.source_boot_volume_backup_id,
        "lifecycleState": q.lifecycle_state.value if q.lifecycle_state else None,
        "sortBy": q.sort_by,
        "sortOrder": q.sort_order,
    }
    op = "ListBootVolumeBackups"
    query, after = pagetokens.resume(ctx.page_tokens, op, caller.tenancy_id, q.page, asked)
    query["sortBy"], query["sortOrder"] = _resolved_sort(query["sortBy"], query["sortOrder"])
    with ctx.db.read() as conn:
        require_compartment(conn, caller, query["compartmentId"], in_body=False)
        flt = repo.BackupFilter(
            query["compartmentId"],
            query["bootVolumeId"],
            query["displayName"],
            query["sourceBootVolumeBackupId"],
            BackupState(query["lifecycleState"]) if query["lifecycleState"] else None,
        )
        items, last = repo.list_backups(
            conn,
            caller.tenancy_id,
            flt,
            sort_by_name=query["sortBy"] == "DISPLAYNAME",
            descending=query["sortOrder"] == "DESC",
            limit=min(q.limit, MAX_PAGE),
            after=after,
        )
    token = None if last is None else ctx.page_tokens.seal(op, caller.tenancy_id, query, last)
    return items, token


def _apply_update(
    conn: Connection, backup_id: str, values: dict[str, Any], if_match: str | None
) -> BootVolumeBackup:
    if repo.update_backup(conn, backup_id, values, expected_etag=if_match) is None:
        raise EtagMismatch(EtagMismatch.IF_MATCH)
    backup = repo.get_backup(conn, backup_id)
    assert backup is not None
    return backup


def update_backup(
    ctx: Context, caller: Caller, backup_id: str, req: UpdateBackup, if_match: str | None
) -> BootVolumeBackup:
    check_display_name(req.display_name)
    with ctx.db.write() as conn:
        backup = _owned(conn, caller, backup_id, lock=True)
        check_if_match(backup.etag, if_match)
        if backup.lifecycle_state in BACKUP_GONE:
            raise Conflict(f"Boot volume backup {backup_id} is {backup.lifecycle_state}.")
        if req.kms_key_id is not None and req.kms_key_id != backup.kms_key_id:
            raise Conflict("kmsKeyId: re-encrypting an existing backup under another key is not supported.")
        values: dict[str, Any] = {}
        if req.display_name is not None:
            values["display_name"] = req.display_name
        values.update(tag_update(req.freeform_tags, req.defined_tags, backup.tags))
        if req.retention != Retention():
            values.update(_retention_update(ctx, conn, backup, req.retention))
        if not values:
            return backup
        return _apply_update(conn, backup_id, values, if_match)


def _retention_update(
    ctx: Context, conn: Connection, backup: BootVolumeBackup, requested: Retention
) -> dict[str, Any]:
    """The new retention columns; a lock that starts or grows on stored data also queues the job
    that extends the objects' retention in the object store."""
    ts = now()
    new = change(
        backup.retention,
        requested,
        backup.time_request_received,
        ts,
        ctx.settings.retention_day_seconds,
        backup.id,
    )
    old = backup.retention
    grew = new.locked(ts) and (not old.locked(ts) or (new.expires_at or ts) > (old.expires_at or ts))
    if grew and backup.lifecycle_state == BackupState.AVAILABLE:
        jobs.enqueue(conn, JobKind.RETAIN, backup.tenancy_id, backup.id, lane=backup.id)
    return repo.retention_columns(new)


def delete_backup(ctx: Context, caller: Caller, backup_id: str, if_match: str | None) -> None:
    with ctx.db.write() as conn:
        backup = _owned(conn, caller, backup_id, lock=True)
        check_if_match(backup.etag, if_match)
        if backup.lifecycle_state in BACKUP_GONE:
            return
        blocker = backup.retention.blocker(backup_id, now())
        if blocker is not None:
            raise Conflict(blocker)
        if backup.lifecycle_state in BACKUP_IN_PROGRESS:
            raise IncorrectState(
                f"Boot volume backup {backup_id} is {backup.lifecycle_state}; delete it later."
            )
        if workrequests.active_copies_of(conn, backup_id):  # its blocks are being read and sent
            raise Conflict(
                f"Boot volume backup {backup_id} is being copied to another region; delete it later."
            )
        if volumes.count_restoring_from(conn, backup_id):
            raise IncorrectState(f"Boot volume backup {backup_id} is being restored; delete it later.")
        hydrating = volumes.hydrating_from(conn, backup_id)
        if hydrating:  # its data is still read on demand: it must stay until they are whole
            raise IncorrectState(
                f"Boot volume backup {backup_id} is the source of boot volume {hydrating[0]}, which is "
                "still hydrating from it; delete the backup once the volume is hydrated."
            )
        repo.move_backup(conn, backup_id, "deleted", expected_etag=if_match)
        jobs.enqueue(conn, JobKind.DELETE_BACKUP, caller.tenancy_id, backup_id, lane=backup_id)


def change_compartment(
    ctx: Context, caller: Caller, backup_id: str, compartment_id: str, if_match: str | None
) -> None:
    with ctx.db.write() as conn:
        backup = _owned(conn, caller, backup_id, lock=True)
        check_if_match(backup.etag, if_match)
        require_compartment(conn, caller, compartment_id, in_body=True)
        if backup.lifecycle_state in BACKUP_GONE:
            raise Conflict(f"Boot volume backup {backup_id} is {backup.lifecycle_state}.")
        _apply_update(conn, backup_id, {"compartment_id": compartment_id}, if_match)
