"""Work requests (/20160918/workRequests) and CopyBootVolumeBackup, which starts one."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response
from starlette.routing import Route

from bootvault.api.common import Call, endpoint, int_param, json_response
from bootvault.api.shapes import backup_json, rfc3339
from bootvault.api.wire import CopyBootVolumeBackupDetails
from bootvault.domain.errors import MissingArgument
from bootvault.domain.models import WorkRequest
from bootvault.service import copy as copy_svc
from bootvault.service import workrequests as svc


def work_request_to_wire(w: WorkRequest) -> dict[str, Any]:
    return {
        "compartmentId": w.compartment_id,
        "id": w.id,
        "operationType": w.operation_type,
        "percentComplete": float(w.percent_complete),
        "resources": w.resources,
        "status": w.status,
        "timeAccepted": rfc3339(w.time_accepted),
        "timeFinished": rfc3339(w.time_finished),
        "timeStarted": rfc3339(w.time_started),
    }


async def copy(call: Call) -> Response:
    d = await call.parse(CopyBootVolumeBackupDetails)
    req = copy_svc.CopyRequest(d.destination_region, d.display_name, d.kms_key_id)
    result = await call.run(copy_svc.copy_backup, call.path("backup_id"), req, call.header("opc-retry-token"))
    body = result.wire if result.wire is not None else backup_json(result.backup)
    response = json_response(body, etag=result.etag or None)
    response.headers["opc-work-request-id"] = result.work_request_id
    return response


async def get(call: Call) -> Response:
    wr = await call.read(svc.get, call.path("work_request_id"))
    return json_response(work_request_to_wire(wr))


async def errors(call: Call) -> Response:
    wr = await call.read(svc.get, call.path("work_request_id"))
    return json_response(wr.errors)


async def logs(call: Call) -> Response:
    wr = await call.read(svc.get, call.path("work_request_id"))
    return json_response(wr.logs)


async def list_(call: Call) -> Response:
    compartment_id, page = call.query("compartmentId"), call.query("page")
    if not compartment_id and not page:
        raise MissingArgument("Missing required query parameter: compartmentId.")
    limit = int_param(call, "limit", svc.MAX_PAGE, 1, svc.MAX_PAGE)
    items, next_page = await call.read(svc.list_, compartment_id or "", call.query("resourceId"), limit, page)
    return json_response([work_request_to_wire(w) for w in items], next_page=next_page)


ROUTES = [
    Route(
        "/20160918/bootVolumeBackups/{backup_id}/actions/copy",
        endpoint("CopyBootVolumeBackup", copy),
        methods=["POST"],
    ),
    Route("/20160918/workRequests", endpoint("ListWorkRequests", list_), methods=["GET"]),
    Route("/20160918/workRequests/{work_request_id}", endpoint("GetWorkRequest", get), methods=["GET"]),
    Route(
        "/20160918/workRequests/{work_request_id}/errors",
        endpoint("ListWorkRequestErrors", errors),
        methods=["GET"],
    ),
    Route(
        "/20160918/workRequests/{work_request_id}/logs",
        endpoint("ListWorkRequestLogs", logs),
        methods=["GET"],
    ),
]
