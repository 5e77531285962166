"""The console's URL table, and its static files (read from the package once, served from
memory with a strong ETag; only names in that table exist, so no path reaches the disk)."""

from __future__ import annotations

import hashlib
import mimetypes
from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bootvault.console import actions, pages
from bootvault.console.render import environment
from bootvault.console.signin import sign_in, sign_in_page, sign_out
from bootvault.console.web import PREFIX, Handler, logged, page, redirect, render, secured

STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain", ".md": "text/plain"}


def _static_files() -> dict[str, tuple[bytes, str, str]]:
    files = {}
    for item in resources.files("bootvault.console").joinpath("static").iterdir():
        if item.is_file():
            body = item.read_bytes()
            suffix = "." + item.name.rsplit(".", 1)[-1]
            kind = (
                STATIC_TYPES.get(suffix) or mimetypes.guess_type(item.name)[0] or "application/octet-stream"
            )
            files[item.name] = (body, kind, '"' + hashlib.sha256(body).hexdigest()[:32] + '"')
    return files


STATIC = _static_files()


async def static(request: Request) -> Response:
    found = STATIC.get(request.path_params["name"])
    if found is None:
        return render(request, "error.html", 404, code="NotFound", message="No such file.")
    body, kind, etag = found
    if request.headers.get("if-none-match") == etag:
        return secured(Response(status_code=304, headers={"etag": etag}), cache=True)
    headers = {"etag": etag, "cache-control": "public, max-age=3600"}
    return secured(Response(body, media_type=kind, headers=headers), cache=True)


async def to_dashboard(request: Request) -> Response:
    return redirect(f"{PREFIX}/")


async def not_found(request: Request) -> Response:
    return render(request, "error.html", 404, code="NotFound", message="There is no console page here.")


def _get(path: str, handler: Handler) -> Route:
    return Route(PREFIX + path, page(handler), methods=["GET"])


def _post(path: str, handler: Handler) -> Route:
    return Route(PREFIX + path, page(handler), methods=["POST"])


ROUTES = [
    Route(PREFIX, to_dashboard, methods=["GET"]),
    Route(PREFIX + "/sign-in", logged(sign_in_page), methods=["GET"]),
    Route(PREFIX + "/sign-in", logged(sign_in), methods=["POST"]),
    Route(PREFIX + "/sign-out", logged(sign_out), methods=["POST"]),
    Route(PREFIX + "/static/{name}", static, methods=["GET"]),
    _get("/", pages.dashboard),
    _get("/compartments", pages.compartments),
    _get("/volumes", pages.volume_list),
    _get("/volumes/{volume_id}", pages.volume_detail),
    _post("/volumes/{volume_id}/backups", actions.create_backup),
    _post("/volumes/{volume_id}/clone", actions.clone_volume),
    _post("/volumes/{volume_id}/update", actions.update_volume),
    _post("/volumes/{volume_id}/compartment", actions.move_volume),
    _post("/volumes/{volume_id}/policy", actions.set_policy),
    _get("/backups", pages.backup_list),
    _get("/backups/{backup_id}", pages.backup_detail),
    _post("/backups/{backup_id}/restore", actions.restore_backup),
    _post("/backups/{backup_id}/update", actions.update_backup),
    _post("/backups/{backup_id}/compartment", actions.move_backup),
    _post("/backups/{backup_id}/retention", actions.set_retention),
    _get("/backups/{backup_id}/delete", pages.backup_delete_confirm),
    _post("/backups/{backup_id}/delete", actions.delete_backup),
    _get("/policies", pages.policy_list),
    _get("/policies/{policy_id}", pages.policy_detail),
    Route(PREFIX + "/{rest:path}", not_found, methods=["GET", "POST"]),
]


def install(app: Starlette) -> None:
    """Add the console to the API's Starlette app (same listener, same executor)."""
    app.router.routes.extend(ROUTES)
    app.state.console_env = environment()
