"""BootVolume operations (/20160918/bootVolumes)."""

from __future__ import annotations

from starlette.responses import Response
from starlette.routing import Route

from bootvault.api.common import Call, endpoint, int_param, json_response
from bootvault.api.conditional import compartment_mover, deleter
from bootvault.api.shapes import volume_json, volume_to_wire
from bootvault.api.wire import (
    CreateBootVolumeDetails,
    UpdateBootVolumeDetails,
)
from bootvault.domain.models import VolumeSource
from bootvault.service import volumes as svc


async def create(call: Call) -> Response:
    d = await call.parse(CreateBootVolumeDetails)
    req = svc.CreateVolume(
        compartment_id=d.compartment_id,
        source_type=VolumeSource(d.source_details.type),
        source_id=d.source_details.id,
        availability_domain=d.availability_domain,
        display_name=d.display_name,
        size_in_gbs=d.size_in_gbs,
        kms_key_id=d.kms_key_id,
        vpus_per_gb=d.vpus_per_gb,
        freeform_tags=d.freeform_tags,
        defined_tags=d.defined_tags,
        backup_policy_id=d.backup_policy_id,
        xrc_kms_key_id=d.xrc_kms_key_id,
    )
    vol = await call.run(svc.create_volume, req, call.header("opc-retry-token"))
    return json_response(volume_to_wire(vol), etag=vol.etag)


async def get(call: Call) -> Response:
    vol = await call.read(svc.get_volume, call.path("volume_id"))
    return json_response(volume_json(vol), etag=vol.etag)


async def list_(call: Call) -> Response:
    limit = int_param(call, "limit", svc.MAX_PAGE, 1, svc.MAX_PAGE)
    items, next_page = await call.read(
        svc.list_volumes,
        call.query("compartmentId"),
        call.query("availabilityDomain"),
        limit,
        call.query("page"),
    )
    return json_response([volume_json(v) for v in items], next_page=next_page)


async def update(call: Call) -> Response:
    d = await call.parse(UpdateBootVolumeDetails)
    req = svc.UpdateVolume(d.display_name, d.size_in_gbs, d.vpus_per_gb, d.freeform_tags, d.defined_tags)
    vol = await call.run(svc.update_volume, call.path("volume_id"), req, call.header("if-match"))
    return json_response(volume_to_wire(vol), etag=vol.etag)


# 202 as OCI: the delete is accepted and runs in the background
delete = deleter(svc.delete_volume, "volume_id", status=202)
change_compartment = compartment_mover(svc.change_compartment, "volume_id")


ROUTES = [
    Route("/20160918/bootVolumes", endpoint("CreateBootVolume", create), methods=["POST"]),
    Route("/20160918/bootVolumes", endpoint("ListBootVolumes", list_), methods=["GET"]),
    Route("/20160918/bootVolumes/{volume_id}", endpoint("GetBootVolume", get), methods=["GET"]),
    Route("/20160918/bootVolumes/{volume_id}", endpoint("UpdateBootVolume", update), methods=["PUT"]),
    Route("/20160918/bootVolumes/{volume_id}", endpoint("DeleteBootVolume", delete), methods=["DELETE"]),
    Route(
        "/20160918/bootVolumes/{volume_id}/actions/changeCompartment",
        endpoint("ChangeBootVolumeCompartment", change_compartment),
        methods=["POST"],
    ),
]
