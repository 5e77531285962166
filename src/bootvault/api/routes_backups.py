"""BootVolumeBackup operations (/20160918/bootVolumeBackups)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from bootvault.api.common import Call, endpoint, enum_param, int_param, json_response
from bootvault.api.conditional import compartment_mover, deleter
from bootvault.api.shapes import backup_json, backup_to_wire
from bootvault.api.wire import (
    CreateBootVolumeBackupDetails,
    UpdateBootVolumeBackupDetails,
    duration,
)
from bootvault.domain.errors import MissingArgument, NotFound
from bootvault.domain.models import BackupState, BackupType
from bootvault.domain.retention import Retention
from bootvault.service import backups as svc
from bootvault.service import copy_link

STATES = [s.value for s in BackupState]


def _retention(d: CreateBootVolumeBackupDetails | UpdateBootVolumeBackupDetails) -> Retention:
    return Retention(
        period=duration(d.retention_period),
        lock=d.is_retention_lock_enabled,
        prevent_deletion=d.is_prevent_deletion_enabled,
        legal_hold=d.is_indefinite_retention_enabled,
    )


async def create(call: Call) -> Response:
    d = await call.parse(CreateBootVolumeBackupDetails)
    req = svc.CreateBackup(
        d.boot_volume_id,
        d.display_name,
        BackupType(d.type),
        d.kms_key_id,
        d.freeform_tags,
        d.defined_tags,
        _retention(d),
    )
    backup = await call.run(svc.create_backup, req, call.header("opc-retry-token"))
    return json_response(backup_to_wire(backup), etag=backup.etag)


async def get(call: Call) -> Response:
    try:
        backup = await call.read(svc.get_backup, call.path("backup_id"))
    except NotFound:  # a copy in a paired region: clients that poll the source find it (docs/regions.md)
        wire, etag = await call.run(copy_link.peer_backup, call.path("backup_id"))
        return json_response(wire, etag=etag)
    return json_response(backup_json(backup), etag=backup.etag)


async def list_(call: Call) -> Response:
    compartment_id, page = call.query("compartmentId"), call.query("page")
    if not compartment_id and not page:  # a page token carries the compartment
        raise MissingArgument("Missing required query parameter: compartmentId.")
    state = enum_param(call, "lifecycleState", STATES, case_insensitive=True)
    q = svc.ListBackups(
        compartment_id=compartment_id or "",
        boot_volume_id=call.query("bootVolumeId"),
        display_name=call.query("displayName"),
        source_boot_volume_backup_id=call.query("sourceBootVolumeBackupId"),
        lifecycle_state=BackupState(state) if state else None,
        sort_by=enum_param(call, "sortBy", ["TIMECREATED", "DISPLAYNAME"]),
        sort_order=enum_param(call, "sortOrder", ["ASC", "DESC"]),
        limit=int_param(call, "limit", svc.MAX_PAGE, 1, svc.MAX_PAGE),
        page=page,
    )
    items, next_page = await call.read(svc.list_backups, q)
    return json_response([backup_json(b) for b in items], next_page=next_page)


async def update(call: Call) -> Response:
    d = await call.parse(UpdateBootVolumeBackupDetails)
    req = svc.UpdateBackup(d.display_name, d.freeform_tags, d.defined_tags, d.kms_key_id, _retention(d))
    backup = await call.run(svc.update_backup, call.path("backup_id"), req, call.header("if-match"))
    return json_response(backup_to_wire(backup), etag=backup.etag)


delete = deleter(svc.delete_backup, "backup_id")
change_compartment = compartment_mover(svc.change_compartment, "backup_id")


ROUTES = [
    Route("/20160918/bootVolumeBackups", endpoint("CreateBootVolumeBackup", create), methods=["POST"]),
    Route("/20160918/bootVolumeBackups", endpoint("ListBootVolumeBackups", list_), methods=["GET"]),
    Route("/20160918/bootVolumeBackups/{backup_id}", endpoint("GetBootVolumeBackup", get), methods=["GET"]),
    Route(
        "/20160918/bootVolumeBackups/{backup_id}", endpoint("UpdateBootVolumeBackup", update), methods=["PUT"]
    ),
    Route(
        "/20160918/bootVolumeBackups/{backup_id}",
        endpoint("DeleteBootVolumeBackup", delete),
        methods=["DELETE"],
    ),
    Route(
        "/20160918/bootVolumeBackups/{backup_id}/actions/changeCompartment",
        endpoint("ChangeBootVolumeBackupCompartment", change_compartment),
        methods=["POST"],
    ),
]
