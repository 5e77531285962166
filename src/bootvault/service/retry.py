"""opc-retry-token idempotency for create operations."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from bootvault.domain.errors import InvalidArgument, RetryTokenReused
from bootvault.service.context import Caller, Context
from bootvault.store import retry_tokens
from bootvault.store.common import now

T = TypeVar("T")
MAX_TOKEN = 64


def request_hash(operation: str, request: dict[str, Any]) -> str:
    canonical = json.dumps([operation, request], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def idempotent_create(
    ctx: Context,
    caller: Caller,
    token: str | None,
    operation: str,
    request: dict[str, Any],
    create: Callable[[Connection], str],
    load: Callable[[Connection, str], T | None],
) -> T:
    """Run `create` once per (tenancy, token). A repeat with the same request returns the same
    resource; a repeat with another request is refused. Concurrent repeats create exactly one."""
    if token is not None and not 1 <= len(token) <= MAX_TOKEN:
        raise InvalidArgument(f"opc-retry-token must be between 1 and {MAX_TOKEN} characters long.")
    digest = request_hash(operation, request)
    for _ in range(5):
        try:
            with ctx.db.write() as conn:
                return _create_once(ctx, caller, conn, token, operation, digest, create, load)
        except IntegrityError:
            continue  # a concurrent request with the same token committed first: read its record
    raise RetryTokenReused("The retry token is in use by a concurrent request; retry later.")


def _create_once(
    ctx: Context,
    caller: Caller,
    conn: Connection,
    token: str | None,
    operation: str,
    digest: str,
    create: Callable[[Connection], str],
    load: Callable[[Connection, str], T | None],
) -> T:
    if token is not None:
        horizon = now() - timedelta(hours=ctx.settings.retry_token_hours)
        record = retry_tokens.find(conn, caller.tenancy_id, token, horizon)
        if record is not None:
            if (record.operation, record.request_hash) != (operation, digest):
                raise RetryTokenReused("The retry token was already used for a different request.")
            existing = load(conn, record.resource_id)
            if existing is None:
                raise RetryTokenReused("The retry token was invalidated: its resource no longer exists.")
            return existing
    resource_id = create(conn)
    if token is not None:
        retry_tokens.remember(conn, caller.tenancy_id, token, operation, digest, resource_id)
    created = load(conn, resource_id)
    assert created is not None
    return created
