"""Request plumbing of the console: the session behind a cookie, CSRF checks on every change,
bounded and strict form parsing, the security headers of every answer, and page rendering.

Cookies: the session token (HttpOnly, SameSite=Strict, Secure and the __Host- prefix under
HTTPS) and, before sign-in, a sign-in nonce (double-submit CSRF token of the sign-in form).
A change (POST) must carry the session's CSRF token in the form field `csrf_token` and, when the
browser sends an Origin, come from this origin; anything else is 403 and changes nothing."""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from bootvault import logs
from bootvault.api.common import offload
from bootvault.api.errors import classify, printable, request_id
from bootvault.domain.errors import BootVaultError
from bootvault.service import console_users
from bootvault.service.console_users import ConsoleSession
from bootvault.service.context import Caller, Context

log = logging.getLogger(__name__)

PREFIX = "/console"
MAX_FORM_BYTES = 64 << 10
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",  # no-referrer would make browsers send Origin: null
    "cross-origin-opener-policy": "same-origin",
}


class Refused(Exception):
    """A console request refused before any service call (bad form, CSRF): status and text."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def https(request: Request) -> bool:
    return request.url.scheme == "https"


def cookie_name(request: Request, base: str) -> str:
    return f"__Host-{base}" if https(request) else base


def set_cookie(response: Response, request: Request, base: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        cookie_name(request, base),
        value,
        max_age=max_age,
        path="/",
        secure=https(request),
        httponly=True,
        samesite="strict",
    )


def clear_cookie(response: Response, request: Request, base: str) -> None:
    response.delete_cookie(
        cookie_name(request, base), path="/", secure=https(request), httponly=True, samesite="strict"
    )


def secured(response: Response, *, cache: bool = False) -> Response:
    response.headers.update(SECURITY_HEADERS)
    if not cache:
        response.headers["cache-control"] = "no-store"
    return response


@dataclass
class Page:
    """What a handler receives: the request, the context and the signed-in session."""

    request: Request
    ctx: Context
    session: ConsoleSession
    values: dict[str, str] = field(default_factory=dict)  # the parsed form of a POST

    @property
    def caller(self) -> Caller:
        return self.session.caller

    def query(self, name: str, default: str = "") -> str:
        return self.request.query_params.get(name, default)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(ctx, caller, *args), a service function, off the event loop."""
        return await offload(self.request, fn, self.ctx, self.session.caller, *args)

    def render(self, template: str, status: int = 200, **values: Any) -> Response:
        return render(self.request, template, status, session=self.session, **values)


def render(request: Request, template: str, status: int = 200, **values: Any) -> Response:
    env = request.app.state.console_env
    values.setdefault("session", None)
    values.setdefault("error", None)
    values.setdefault("path", request.url.path)
    query = request.url.query
    values.setdefault("self_url", request.url.path + ("?" + query if query else ""))  # what a list polls
    html = env.get_template(template).render(**values)
    # A string the page quotes could hold a lone surrogate: shown as an escape, never a failure.
    body = html.encode("utf-8", "backslashreplace")
    return secured(HTMLResponse(body, status_code=status))


def redirect(url: str) -> Response:
    return secured(RedirectResponse(url, status_code=303))


async def read_form(request: Request) -> dict[str, str]:
    """A urlencoded form, at most MAX_FORM_BYTES, strictly UTF-8 (a lone surrogate or invalid
    byte is refused, as the API refuses it) and without NUL characters."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise Refused(415, "UnsupportedMediaType", "Forms must be sent as application/x-www-form-urlencoded.")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise Refused(413, "RequestEntityTooLarge", f"A form is at most {MAX_FORM_BYTES} bytes.")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise Refused(400, "InvalidParameter", "The form is not valid UTF-8.") from exc
    for name, value in pairs:
        if "\x00" in value or "\x00" in name:
            raise Refused(
                400, "InvalidParameter", f"Invalid value for {name}: NUL characters are not allowed."
            )
    return dict(pairs)


def check_origin(request: Request) -> None:
    origin = request.headers.get("origin")
    if origin is None:  # not a browser form post (or an old browser): the token still decides
        return
    host = request.headers.get("host", "")
    if urlsplit(origin).netloc != host:
        raise Refused(403, "Forbidden", "The request did not come from this console (Origin mismatch).")


def check_csrf(session: ConsoleSession, values: dict[str, str], request: Request) -> None:
    check_origin(request)
    if not secrets.compare_digest(values.get("csrf_token", "").encode(), session.csrf_token.encode()):
        raise Refused(
            403, "Forbidden", "The form's CSRF token is missing or wrong; reload the page and retry."
        )


async def session_of(request: Request) -> tuple[str, ConsoleSession | None]:
    token = request.cookies.get(cookie_name(request, "bv_session"), "")
    if not token:
        return "", None
    polling = request.headers.get("hx-request") == "true"  # htmx's own refresh, not the user
    session = await offload(
        request, functools.partial(console_users.resolve, renew=not polling), request.app.state.ctx, token
    )
    return token, session


def to_sign_in(request: Request) -> Response:
    if request.headers.get("hx-request"):  # htmx: a full page load, not a fragment swap
        return secured(Response(status_code=401, headers={"hx-redirect": f"{PREFIX}/sign-in"}))
    return redirect(f"{PREFIX}/sign-in")


def error_parts(exc: BootVaultError | Refused) -> tuple[int, str, str]:
    if isinstance(exc, Refused):
        return exc.status, exc.code, exc.message
    status, code = classify(exc)
    return status, code, printable(exc.message)


Handler = Callable[[Page], Awaitable[Response]]


Endpoint = Callable[[Request], Awaitable[Response]]


def logged(endpoint: Endpoint) -> Endpoint:
    """Every console request: an opc-request-id (response header, and every log line of the
    request), the Server-Timing header, and one access line (path without the query)."""

    async def run(request: Request) -> Response:
        started = time.perf_counter()
        rid = request_id(None)
        token = logs.request_id.set(rid)
        try:
            response = await endpoint(request)
        finally:
            logs.request_id.reset(token)
        took = time.perf_counter() - started
        # The server's own time for the page (bench/console.py reads it; browsers show it).
        response.headers["server-timing"] = f"app;dur={took * 1000:.1f}"
        response.headers["opc-request-id"] = rid
        status = response.status_code
        logs.access(
            log,
            f"{request.method} {request.url.path} -> {status}",
            {"status": status, "opcRequestId": rid, "operation": "Console", "ms": round(took * 1000, 1)},
            deferrable=status < 500,
        )
        return response

    return run


def page(handler: Handler) -> Endpoint:
    """A signed-in page or action: no session goes to the sign-in page; a POST is parsed and
    its CSRF token checked first; a service error is shown as an error page with its status."""

    async def answer(request: Request) -> Response:
        try:
            _, session = await session_of(request)
            if session is None:
                return to_sign_in(request)
            p = Page(request, request.app.state.ctx, session)
            if request.method == "POST":
                p.values = await read_form(request)
                check_csrf(session, p.values, request)
            return await handler(p)
        except (BootVaultError, Refused) as exc:
            status, code, message = error_parts(exc)
            shown = locals().get("session")
            return render(request, "error.html", status, session=shown, code=code, message=message)
        except Exception:
            log.exception("console request failed")
            rid = logs.request_id.get()  # the log has the traceback under this id
            message = f"Internal error; the server's log has it under opc-request-id {rid}."
            return render(request, "error.html", 500, code="InternalServerError", message=message)

    return logged(answer)
