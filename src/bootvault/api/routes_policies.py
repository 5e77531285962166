"""Volume backup policies and assignments (/20160918/volumeBackupPolicies,
/20160918/volumeBackupPolicyAssignments)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from bootvault.api.common import Call, endpoint, int_param, json_response
from bootvault.api.conditional import deleter
from bootvault.api.shapes import assignment_to_wire, policy_to_wire
from bootvault.api.wire import (
    CreateVolumeBackupPolicyAssignmentDetails,
    CreateVolumeBackupPolicyDetails,
    UpdateVolumeBackupPolicyDetails,
    VolumeBackupScheduleDetails,
    duration,
)
from bootvault.domain.errors import MissingArgument
from bootvault.domain.models import BackupType
from bootvault.domain.policies import Period, Schedule
from bootvault.service import policies as svc


def _schedules(items: list[VolumeBackupScheduleDetails] | None) -> list[Schedule] | None:
    if items is None:
        return None
    return [
        Schedule(
            backup_type=BackupType(s.backup_type),
            period=Period(s.period),
            retention_seconds=s.retention_seconds,
            offset_type=s.offset_type,
            offset_seconds=s.offset_seconds,
            hour_of_day=s.hour_of_day,
            day_of_week=s.day_of_week,
            day_of_month=s.day_of_month,
            month=s.month,
            time_zone=s.time_zone,
            retention_period=duration(s.retention_period),
            is_prevent_deletion_enabled=s.is_prevent_deletion_enabled,
            is_retention_lock_enabled=s.is_retention_lock_enabled,
        )
        for s in items
    ]


async def create(call: Call) -> Response:
    d = await call.parse(CreateVolumeBackupPolicyDetails)
    req = svc.CreatePolicy(
        d.compartment_id,
        d.display_name,
        _schedules(d.schedules),
        d.freeform_tags,
        d.defined_tags,
        d.destination_region,
    )
    policy = await call.run(svc.create_policy, req, call.header("opc-retry-token"))
    return json_response(policy_to_wire(policy), etag=policy.etag)


async def get(call: Call) -> Response:
    policy = await call.read(svc.get_policy, call.path("policy_id"))
    return json_response(policy_to_wire(policy), etag=policy.etag)


async def list_(call: Call) -> Response:
    limit = int_param(call, "limit", svc.MAX_PAGE, 1, svc.MAX_PAGE)
    items, next_page = await call.read(
        svc.list_policies, call.query("compartmentId"), limit, call.query("page")
    )
    return json_response([policy_to_wire(p) for p in items], next_page=next_page)


async def update(call: Call) -> Response:
    d = await call.parse(UpdateVolumeBackupPolicyDetails)
    req = svc.UpdatePolicy(
        d.display_name, _schedules(d.schedules), d.freeform_tags, d.defined_tags, d.destination_region
    )
    policy = await call.run(svc.update_policy, call.path("policy_id"), req, call.header("if-match"))
    return json_response(policy_to_wire(policy), etag=policy.etag)


delete = deleter(svc.delete_policy, "policy_id")


async def create_assignment(call: Call) -> Response:
    d = await call.parse(CreateVolumeBackupPolicyAssignmentDetails)
    found = await call.run(svc.create_assignment, d.asset_id, d.policy_id, d.xrc_kms_key_id)
    return json_response(assignment_to_wire(found), etag=found.etag)


async def get_assignment(call: Call) -> Response:
    found = await call.read(svc.get_assignment, call.path("assignment_id"))
    return json_response(assignment_to_wire(found), etag=found.etag)


delete_assignment = deleter(svc.delete_assignment, "assignment_id")


async def asset_assignment(call: Call) -> Response:
    """GET ?assetId= (required): OCI has no listing of all assignments. 0 or 1 items, one page."""
    asset_id = call.query("assetId")
    if not asset_id:
        raise MissingArgument("Missing required query parameter: assetId.")
    int_param(call, "limit", svc.MAX_PAGE, 1, svc.MAX_PAGE)
    found = await call.read(svc.assignments_of_asset, asset_id)
    return json_response([assignment_to_wire(x) for x in found])


_POLICIES = "/20160918/volumeBackupPolicies"
_ASSIGNMENTS = "/20160918/volumeBackupPolicyAssignments"
ROUTES = [
    Route(_POLICIES, endpoint("CreateVolumeBackupPolicy", create), methods=["POST"]),
    Route(_POLICIES, endpoint("ListVolumeBackupPolicies", list_), methods=["GET"]),
    Route(_POLICIES + "/{policy_id}", endpoint("GetVolumeBackupPolicy", get), methods=["GET"]),
    Route(_POLICIES + "/{policy_id}", endpoint("UpdateVolumeBackupPolicy", update), methods=["PUT"]),
    Route(_POLICIES + "/{policy_id}", endpoint("DeleteVolumeBackupPolicy", delete), methods=["DELETE"]),
    Route(_ASSIGNMENTS, endpoint("CreateVolumeBackupPolicyAssignment", create_assignment), methods=["POST"]),
    Route(
        _ASSIGNMENTS,
        endpoint("GetVolumeBackupPolicyAssetAssignment", asset_assignment),
        methods=["GET"],
    ),
    Route(
        _ASSIGNMENTS + "/{assignment_id}",
        endpoint("GetVolumeBackupPolicyAssignment", get_assignment),
        methods=["GET"],
    ),
    Route(
        _ASSIGNMENTS + "/{assignment_id}",
        endpoint("DeleteVolumeBackupPolicyAssignment", delete_assignment),
        methods=["DELETE"],
    ),
]
