"""Sign-in and sign-out. The sign-in form is protected against login CSRF by a nonce in a
cookie of its own that the form must repeat (double submit); the session cookie is set only
after the password checks out, and sign-out deletes the session row, not just the cookie."""

from __future__ import annotations

import secrets

from starlette.requests import Request
from starlette.responses import Response

from bootvault.api.common import offload
from bootvault.console.web import (
    PREFIX,
    Refused,
    check_csrf,
    check_origin,
    clear_cookie,
    cookie_name,
    error_parts,
    read_form,
    redirect,
    render,
    session_of,
    set_cookie,
)
from bootvault.domain.errors import BootVaultError
from bootvault.service import console_users

NONCE = "bv_signin"


def _form(request: Request, status: int = 200, **values: object) -> Response:
    nonce = secrets.token_urlsafe(24)
    response = render(request, "sign_in.html", status, nonce=nonce, **values)
    set_cookie(response, request, NONCE, nonce, max_age=3600)
    return response


async def sign_in_page(request: Request) -> Response:
    _, session = await session_of(request)
    if session is not None:
        return redirect(f"{PREFIX}/")
    return _form(request, username="")


async def sign_in(request: Request) -> Response:
    ctx = request.app.state.ctx
    name = ""
    try:
        values = await read_form(request)
        name = values.get("username", "")
        check_origin(request)
        nonce = request.cookies.get(cookie_name(request, NONCE), "")
        if not nonce or not secrets.compare_digest(nonce.encode(), values.get("nonce", "").encode()):
            raise Refused(403, "Forbidden", "The sign-in form expired; please sign in again.")
        address = request.client.host if request.client else "unknown"
        token, _ = await offload(
            request, console_users.sign_in, ctx, name, values.get("password", ""), address
        )
    except (BootVaultError, Refused) as exc:
        status, code, message = error_parts(exc)
        return _form(request, status, username=name, error=(code, message))
    response = redirect(f"{PREFIX}/")
    set_cookie(response, request, "bv_session", token, max_age=int(ctx.settings.console_absolute_seconds))
    clear_cookie(response, request, NONCE)
    return response


async def sign_out(request: Request) -> Response:
    """Delete the session (a POST with its CSRF token, so no other site can sign a user out)."""
    token, session = await session_of(request)
    if session is not None:
        try:
            check_csrf(session, await read_form(request), request)
        except Refused as exc:
            status, code, message = error_parts(exc)
            return render(request, "error.html", status, session=session, code=code, message=message)
        await offload(request, console_users.sign_out, request.app.state.ctx, token)
    response = redirect(f"{PREFIX}/sign-in")
    clear_cookie(response, request, "bv_session")
    return response
