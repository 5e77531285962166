"""The region protocol (/bootvault/region/v1): what paired regions call on each other.

Not part of the OCI API and not reachable with a tenant's API key: every call but `join` must be
signed with the link key of a paired region (service/regionlink.py); `join` needs a one-time
invite code instead. Answers use OCI's error shape ({"code", "message"}). Bodies of blocks are
binary (engine/xrc.py frames) and may be far larger than an OCI request (max 64 MiB).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from array import array
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootvault.api.common import offload
from bootvault.api.errors import classify, error_response, request_id
from bootvault.api.shapes import backup_to_wire
from bootvault.domain.errors import BootVaultError, InvalidArgument
from bootvault.service import copy_dest, regions
from bootvault.service.context import Context
from bootvault.service.copy_dest import CopyOrder
from bootvault.service.regionlink import PREFIX, Peer, verify

log = logging.getLogger("bootvault.region")
MAX_BODY = 64 << 20


class _Refused(Exception):
    pass


async def _body(request: Request) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise InvalidArgument("body too large")
        chunks.append(chunk)
    return b"".join(chunks)


def _peer_of(ctx: Context, request: Request, body: bytes) -> Peer:
    headers = {k.lower(): v for k, v in request.headers.items()}
    name = headers.get("x-bootvault-region", "")
    peer = regions.peer(ctx, name) if name else None
    query = request.scope.get("query_string") or b""
    target = request.scope["path"] + ("?" + query.decode("latin-1") if query else "")
    if peer is None or not verify(peer.link_key, request.method, target, ctx.settings.region, headers, body):
        raise _Refused()
    return peer


Handler = Callable[[Context, Request, Peer | None, bytes], Any]


def _route(path: str, method: str, handler: Handler, *, signed: bool = True) -> Route:
    async def wrapper(request: Request) -> Response:
        rid = request_id(request.headers.get("opc-request-id"))
        ctx: Context = request.app.state.ctx
        try:
            body = await asyncio.wait_for(_body(request), 120)
            peer = await offload(request, _peer_of, ctx, request, body) if signed else None
            result = await offload(request, handler, ctx, request, peer, body)
        except _Refused:
            return error_response(401, "NotAuthenticated", "Not a call of a paired region.", rid)
        except BootVaultError as exc:
            status, code = classify(exc)
            return error_response(status, code, exc.message, rid)
        except TimeoutError:
            return error_response(408, "RequestTimeout", "The body did not arrive in time.", rid)
        except Exception:
            log.exception("region protocol call failed")
            return error_response(500, "InternalServerError", f"Internal error; request id {rid}.", rid)
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    return Route(PREFIX + path, wrapper, methods=[method])


def _tenancy(request: Request) -> str:
    value = request.query_params.get("tenancyId")
    if not value:
        raise InvalidArgument("tenancyId is required")
    return value


def _json(body: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(body)
    except ValueError:
        raise InvalidArgument("the body is not JSON") from None
    if not isinstance(parsed, dict):
        raise InvalidArgument("the body is not a JSON object")
    return parsed


def _backup_answer(backup: Any) -> Response:
    return JSONResponse(backup_to_wire(backup), headers={"etag": backup.etag})


def join(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    return regions.accept_join(ctx, _json(body))


def identity(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    return {"added": regions.apply_identity(ctx, _json(body))}


def create(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    assert peer is not None
    fields = _json(body)
    try:
        order = CopyOrder(**fields)
    except TypeError as exc:
        raise InvalidArgument(f"bad copy order: {exc}") from None
    if order.source_region != peer.name:
        raise InvalidArgument("the copy order names another source region")
    return _backup_answer(copy_dest.create(ctx, order))


def get(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    return _backup_answer(copy_dest.get(ctx, request.path_params["backup_id"], _tenancy(request)))


def started(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    fields = _json(body)
    copy_dest.started(
        ctx, request.path_params["backup_id"], str(fields.get("tenancyId")), str(fields.get("message"))
    )
    return {}


def _ids(body: bytes) -> list[bytes]:
    if len(body) % 32:
        raise InvalidArgument("transfer ids are 32 bytes each")
    return [body[i : i + 32] for i in range(0, len(body), 32)]


def missing(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    lacking = copy_dest.missing(ctx, request.path_params["backup_id"], _tenancy(request), _ids(body))
    return Response(b"".join(lacking), media_type="application/octet-stream")


def blocks(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    assert peer is not None
    tenancy = _tenancy(request)
    try:
        percent = float(request.query_params.get("percent", "0"))
    except ValueError:
        raise InvalidArgument("percent must be a number") from None
    stored = copy_dest.receive(
        ctx, request.path_params["backup_id"], tenancy, peer.transfer_key(tenancy), body, percent
    )
    return {"received": stored}


def commit(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    if len(body) < 4:
        raise InvalidArgument("empty commit")
    (hlen,) = struct.unpack(">I", body[:4])
    header = _json(body[4 : 4 + hlen])
    rest = body[4 + hlen :]
    if len(rest) % 40:
        raise InvalidArgument("commit entries are 8 + 32 bytes each")
    count = len(rest) // 40
    indices = array("Q")
    indices.frombytes(rest[: 8 * count])
    if array("H", [1]).tobytes() != b"\x01\x00":
        indices.byteswap()
    tids = _ids(rest[8 * count :])
    lacking = copy_dest.commit(
        ctx, request.path_params["backup_id"], _tenancy(request), header, list(indices), tids
    )
    return Response(b"".join(lacking), media_type="application/octet-stream")


def fail(ctx: Context, request: Request, peer: Peer | None, body: bytes) -> Any:
    fields = _json(body)
    copy_dest.fail(
        ctx, request.path_params["backup_id"], str(fields.get("tenancyId")), str(fields.get("reason"))
    )
    return {}


ROUTES = [
    _route("/join", "POST", join, signed=False),
    _route("/identity", "POST", identity),
    _route("/copies", "POST", create),
    _route("/copies/{backup_id}", "GET", get),
    _route("/copies/{backup_id}/started", "POST", started),
    _route("/copies/{backup_id}/missing", "POST", missing),
    _route("/copies/{backup_id}/blocks", "POST", blocks),
    _route("/copies/{backup_id}/commit", "POST", commit),
    _route("/copies/{backup_id}/fail", "POST", fail),
]
