"""Request plumbing shared by every OCI endpoint: request ids, signature auth, error mapping."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from functools import lru_cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bootvault import logs, metrics
from bootvault.api.auth import (
    AuthError,
    TrustedKey,
    WireHeaders,
    check_body,
    check_signature,
    prepare_request,
)
from bootvault.api.errors import WireError, classify, error_response, request_id
from bootvault.api.shapes import to_json
from bootvault.api.wire import M, clean_text, parse_body
from bootvault.domain import ocid
from bootvault.domain.errors import BootVaultError, InvalidArgument
from bootvault.service import identity
from bootvault.service.context import Caller, Context, transient_database_error

log = logging.getLogger("bootvault.api")
PARSE_INLINE_BYTES = 64 << 10  # larger bodies are parsed in the thread pool, off the event loop
PATH_IDS = {
    "backup_id": ("bootvolumebackup", "bootVolumeBackupId"),
    "volume_id": ("bootvolume", "bootVolumeId"),
    "policy_id": ("volumebackuppolicy", "policyId"),
    "assignment_id": ("volumebackuppolicyassignment", "policyAssignmentId"),
    "work_request_id": ("coreservicesworkrequest", "workRequestId"),
}


@dataclass
class Call:
    """One authenticated API call."""

    request: Request
    body: bytes
    caller: Caller
    ctx: Context

    def path(self, name: str) -> str:
        return path_id(self.request, name)

    def header(self, name: str) -> str | None:
        return headers_of(self.request).get(name)

    def query(self, name: str) -> str | None:
        value = self.request.query_params.get(name)
        return None if value is None else clean_text(value, name)

    async def parse(self, model: type[M]) -> M:
        """The body as `model`; a large one is parsed off the event loop."""
        if len(self.body) > PARSE_INLINE_BYTES:
            parsed: M = await offload(self.request, parse_body, model, self.body)
            return parsed
        return parse_body(model, self.body)

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a (blocking) service call off the event loop."""
        return await offload(self.request, fn, self.ctx, self.caller, *args)

    async def read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a read-only service call: see read_in_place."""
        return await read_in_place(self.request, self.ctx, fn, self.ctx, self.caller, *args)


def api_executor(ctx: Context) -> ThreadPoolExecutor:
    """The threads that run an API process's blocking calls (see Settings.api_threads)."""
    return ThreadPoolExecutor(max(1, ctx.settings.api_threads), thread_name_prefix="bv-api")


async def offload(request: Request, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) on the app's executor, in a copy of this context (the request id of the logs).
    One hop per call through the asyncio executor: cheaper than anyio's thread runner, and a
    small pool keeps threads from contending for the GIL."""
    loop = asyncio.get_running_loop()
    call = functools.partial(contextvars.copy_context().run, fn, *args)
    return await loop.run_in_executor(request.app.state.executor, call)


async def read_in_place(request: Request, ctx: Context, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args), a read-only call. On SQLite it runs here, on the event loop: a read from the
    page cache costs less CPU than the hop to a thread, and under the GIL a thread adds no
    parallelism, only waits to hand the lock over (under load they were most of a request's
    time). A WAL reader never waits for a writer. On PostgreSQL a read is a network round trip,
    so it goes to the thread pool like any call."""
    if ctx.db.is_sqlite:
        return fn(*args)
    return await offload(request, fn, *args)


def headers_of(request: Request) -> WireHeaders:
    """The request's headers by (lower-case) name, decoded once per request, values without the
    whitespace around them (not part of a value in HTTP); a repeated header has its last value,
    the one the signature check reads (signing a repeated one is refused)."""
    found: WireHeaders | None = request.scope.get("bootvault.headers")
    if found is None:
        found = WireHeaders(
            (k.decode("latin-1").lower(), v.decode("latin-1").strip()) for k, v in request.scope["headers"]
        )
        request.scope["bootvault.headers"] = found
    return found


def _repeated(scope: MutableMapping[str, Any], headers: dict[str, str]) -> frozenset[str]:
    """The names of headers sent more than once: none when every raw header has its own entry
    in `headers` (headers_of, one entry per lower-case name)."""
    if len(headers) == len(scope["headers"]):
        return frozenset()
    seen: set[bytes] = set()
    twice: set[str] = set()
    for name, _ in scope["headers"]:
        name = name.lower()
        if name in seen:
            twice.add(name.decode("latin-1"))
        seen.add(name)
    return frozenset(twice)


@lru_cache(maxsize=1024)
def _trusted_key(pem: str) -> TrustedKey | None:
    """A registered PEM parsed once, with its fingerprint and digest."""
    key = load_pem_public_key(pem.encode())
    return TrustedKey.of(key) if isinstance(key, RSAPublicKey) else None


async def authenticate(ctx: Context, request: Request) -> Caller:
    """Check the signature from the headers alone (the body is checked after it is read). The
    registered key comes from the short-lived key cache when it can, without leaving the event
    loop, and otherwise from the database, in the executor."""
    scope = request.scope
    raw_path = scope.get("raw_path") or request.url.path.encode()
    query = scope.get("query_string") or b""
    target = raw_path.decode("latin-1") + (("?" + query.decode("latin-1")) if query else "")
    skew = timedelta(seconds=ctx.settings.max_clock_skew_seconds)
    headers = headers_of(request)
    signed = prepare_request(
        request.method, target, headers, None, max_skew=skew, repeated=_repeated(scope, headers)
    )
    kid = signed.key
    found = identity.cached_api_key(ctx, kid.tenancy_id, kid.user_id, kid.fingerprint)
    if found is None:
        found = await read_in_place(
            request, ctx, identity.find_api_key, ctx, kid.tenancy_id, kid.user_id, kid.fingerprint
        )
    verified = check_signature(signed, _trusted_key(found.public_key_pem) if found else None)
    return Caller(tenancy_id=verified.key.tenancy_id, user_id=verified.key.user_id)


Handler = Callable[[Call], Awaitable[Response]]


_METRICS: dict[tuple[str, int], tuple[Any, Any]] = {}


def _metrics(operation: str, status: int) -> tuple[Any, Any]:
    """The request counter and latency histogram of (operation, status), looked up once."""
    found = _METRICS.get((operation, status))
    if found is None:
        found = metrics.REQUESTS.labels(operation, str(status)), metrics.LATENCY.labels(operation)
        _METRICS[(operation, status)] = found
    return found


def _common_headers(response: Response, rid: str) -> None:
    """opc-request-id, Content-Type (on 202 and 204 too, as OCI) and X-Content-Type-Options on
    every answer; straight onto the raw list (an error answer already has the first and last)."""
    raw = response.raw_headers
    present = {name for name, _ in raw}
    if b"opc-request-id" not in present:
        raw.append((b"opc-request-id", rid.encode("latin-1")))
    if b"content-type" not in present:
        raw.append((b"content-type", b"application/json"))
    if b"x-content-type-options" not in present:
        raw.append((b"x-content-type-options", b"nosniff"))


def endpoint(operation: str, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Wrap an OCI operation: request id, signature check, domain-error mapping, access log,
    metrics."""

    async def wrapper(request: Request) -> Response:
        rid = request_id(headers_of(request).get("opc-request-id"))
        token = logs.request_id.set(rid)
        started = time.perf_counter()
        try:
            response = await _dispatch(request, handler)
        finally:
            logs.request_id.reset(token)
        _common_headers(response, rid)
        took = time.perf_counter() - started
        counter, latency = _metrics(operation, response.status_code)
        counter.inc()
        latency.observe(took)
        scope = request.scope
        query = scope.get("query_string") or b""
        target = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        status = response.status_code
        logs.access(
            log,
            f"{request.method} {target} -> {status}",
            {"status": status, "opcRequestId": rid, "operation": operation, "ms": round(took * 1000, 1)},
            deferrable=status < 500,
        )
        return response

    return wrapper


def path_id(request: Request, name: str) -> str:
    """A path id; one that is not an OCID of the route's resource type is 400, as in OCI.
    Checked once per request (_answer checks every id first, the handler asks again)."""
    checked: dict[str, str] = request.scope.setdefault("bootvault.ids", {})
    value = checked.get(name)
    if value is None:
        value = clean_text(str(request.path_params[name]), name)
        kind, wire_name = PATH_IDS[name]
        if ocid.resource_type(value) != kind:
            raise InvalidArgument(f"{wire_name} is invalid or incorrectly formatted.")
        checked[name] = value
    return value


def _not_authenticated(rid: str) -> Response:
    return error_response(
        401,
        "NotAuthenticated",
        "The required information to complete authentication was not provided or was incorrect.",
        rid,
    )


def _declared_length(request: Request, limit: int) -> int | None:
    raw = headers_of(request).get("content-length")
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 20:
        raise WireError(400, "InvalidParameter", "content-length must be a non-negative integer.")
    if int(raw) > limit:
        raise WireError(413, "LimitExceeded", f"The request body is larger than {limit} bytes.")
    return int(raw)


async def _read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The body, at most `limit` bytes, within `timeout` seconds (slow senders are cut off)."""
    chunks, size = [], 0

    async def read() -> None:
        nonlocal size
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WireError(413, "LimitExceeded", f"The request body is larger than {limit} bytes.")
            chunks.append(chunk)

    headers = headers_of(request)
    if "content-length" not in headers and "transfer-encoding" not in headers:
        return b""  # no body in HTTP/1.1 framing: nothing to wait for
    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        raise WireError(
            408, "RequestTimeout", f"The request body did not arrive within {timeout:g} s."
        ) from None
    return b"".join(chunks)


async def _dispatch(request: Request, handler: Handler) -> Response:
    """Authenticate from the headers first: an unsigned or forged request is answered without
    its body ever being read; a signed one has its body read (bounded) and checked against the
    signed x-content-sha256. A request answered with its body unread (or half read) also has its
    connection closed, so the server never reads what it refused."""
    read = [False]
    response = await _answer(request, handler, read)
    if not read[0] and _declares_body(request):
        response.headers["connection"] = "close"
    return response


def _declares_body(request: Request) -> bool:
    headers = headers_of(request)
    length = headers.get("content-length")
    return "transfer-encoding" in headers or (length is not None and length.strip() != "0")


async def _answer(request: Request, handler: Handler, read: list[bool]) -> Response:
    rid = logs.request_id.get() or ""
    ctx: Context = request.app.state.ctx
    limit = ctx.settings.max_body_bytes
    try:
        if not headers_of(request).get("authorization"):
            return _not_authenticated(rid)
        _declared_length(request, limit)
        try:
            caller = await authenticate(ctx, request)
            body = await _read_body(request, limit, ctx.settings.body_timeout_seconds)
            read[0] = True
            check_body(headers_of(request), body)
        except AuthError as exc:
            log.info("authentication failed: %s", exc)
            return _not_authenticated(rid)
        for name in request.path_params:  # ids first, before the body is even parsed
            path_id(request, name)
        return await handler(Call(request, body, caller, ctx))
    except BootVaultError as exc:
        status, code = classify(exc)
        return error_response(status, code, exc.message, rid)
    except WireError as exc:
        return error_response(exc.status, exc.code, exc.message, rid)
    except Exception as exc:
        if transient_database_error(exc):  # transient: the client retries (a create with its retry token)
            log.warning("database unreachable: %s", str(exc).splitlines()[0] if str(exc) else exc)
            message = "The service cannot reach its database; retry the request."
            return error_response(503, "ServiceUnavailable", message, rid)
        log.exception("unhandled error")
        return error_response(500, "InternalServerError", f"Internal error; request id {rid}.", rid)


class FastJSONResponse(JSONResponse):
    """Rendered by shapes.to_json: byte for byte what Starlette writes, faster; the content may
    hold pre-rendered parts (orjson.Fragment)."""

    def render(self, content: Any) -> bytes:
        return to_json(content)


def json_response(body: Any, *, etag: str | None = None, next_page: str | None = None) -> JSONResponse:
    headers: dict[str, str] = {}
    if etag:
        headers["etag"] = etag
    if next_page:
        headers["opc-next-page"] = next_page
    return FastJSONResponse(body, headers=headers)


def int_param(call: Call, name: str, default: int, low: int, high: int) -> int:
    raw = call.query(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidArgument(f"{name} must be an integer between {low} and {high}.") from exc
    if not low <= value <= high:
        raise InvalidArgument(f"{name} must be an integer between {low} and {high}.")
    return value


def enum_param(call: Call, name: str, allowed: list[str], *, case_insensitive: bool = False) -> str | None:
    raw = call.query(name)
    if raw is None:
        return None
    value = raw.upper() if case_insensitive else raw
    if value not in allowed:
        raise InvalidArgument(f"{name} must be one of {', '.join(allowed)}; got {raw!r}.")
    return value
