"""The ASGI application: OCI routes plus wire-format answers for unknown paths and methods."""

from __future__ import annotations

import uuid

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from bootvault.api import routes_backups, routes_volumes
from bootvault.api.errors import error_response
from bootvault.service.context import Context


async def _http_error(request: Request, exc: Exception) -> Response:
    rid = request.headers.get("opc-request-id") or uuid.uuid4().hex.upper()
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return error_response(405, "MethodNotAllowed", f"{request.method} is not allowed on this path.", rid)
    if status == 404:
        return error_response(404, "NotFound", "No operation is supported at this URI path and method.", rid)
    return error_response(status, "InternalServerError", "Internal error.", rid)


def create_app(ctx: Context) -> Starlette:
    app = Starlette(
        routes=[*routes_backups.ROUTES, *routes_volumes.ROUTES],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    app.state.ctx = ctx
    return app
