"""The ASGI application: OCI routes plus wire-format answers for unknown paths and methods."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bootvault.api import routes_backups, routes_policies, routes_regions, routes_volumes, routes_workrequests
from bootvault.api.common import api_executor, offload
from bootvault.api.errors import error_response, request_id
from bootvault.service.context import Context


async def _http_error(request: Request, exc: Exception) -> Response:
    rid = request_id(request.headers.get("opc-request-id"))
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 405:
        return error_response(405, "MethodNotAllowed", f"{request.method} is not allowed on this path.", rid)
    if status == 404:
        return error_response(404, "NotFound", "No operation is supported at this URI path and method.", rid)
    return error_response(status, "InternalServerError", "Internal error.", rid)


async def healthz(request: Request) -> Response:
    """Liveness: the process answers."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Readiness: the database and the object store answer."""
    ctx: Context = request.app.state.ctx
    try:
        await offload(request, _check_ready, ctx)
    except Exception as exc:
        return JSONResponse(
            {"status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"}, status_code=503
        )
    return JSONResponse({"status": "ready"})


def _check_ready(ctx: Context) -> None:
    with ctx.db.read() as conn:
        conn.exec_driver_sql("SELECT 1")
    ctx.repositories.probe()


def create_app(ctx: Context) -> Starlette:
    app = Starlette(
        routes=[
            *routes_backups.ROUTES,
            *routes_volumes.ROUTES,
            *routes_policies.ROUTES,
            *routes_workrequests.ROUTES,
            *routes_regions.ROUTES,
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_error, Exception: _http_error},
    )
    # Starlette would answer a path with a trailing slash with a 307 to the other spelling, built
    # from the client's Host header and before any authentication: OCI paths have one spelling.
    app.router.redirect_slashes = False
    app.state.ctx = ctx
    app.state.executor = api_executor(ctx)
    return app
