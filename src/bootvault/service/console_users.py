"""Console users, their sessions and the sign-in rate limit.

A console user is a user of one tenancy (a `users` row) with a password hashed by argon2id
(argon2-cffi's defaults: 64 MiB, 3 passes). A session is a random 256-bit token in an HttpOnly
cookie; the database keeps only its SHA-256, with the user, the tenancy, the CSRF token every
change must carry, and when it was created and last used (idle and absolute expiry). Sign-in
failures are counted per user name and per client address in a fixed window; past the limit
sign-in is refused (429) before the password is even checked."""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from bootvault.domain import ocid
from bootvault.domain.errors import Conflict, InvalidArgument, NotFound, TooManyRequests, Unauthenticated
from bootvault.domain.validation import check_display_name
from bootvault.service.context import Caller, Context
from bootvault.store import console as repo
from bootvault.store import identity
from bootvault.store.common import now

log = logging.getLogger(__name__)
_hasher = PasswordHasher()  # argon2id
# Verified when the user name is unknown, so an unknown name costs the same time as a wrong password.
_DUMMY_HASH = _hasher.hash("bootvault: no such user")
MIN_PASSWORD, MAX_PASSWORD = 12, 1024
TOUCH_EVERY = timedelta(seconds=30)  # last-seen is written at most this often per session
BAD_CREDENTIALS = "The user name or password is incorrect."


@dataclass(frozen=True)
class ConsoleSession:
    caller: Caller
    user_name: str
    csrf_token: str


def _check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidArgument(f"password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long.")


def create_user(ctx: Context, tenancy_id: str, name: str, password: str) -> str:
    """A console user of the tenancy; returns its user OCID. Names are unique across tenancies."""
    check_display_name(name)
    if not name or name != name.strip():
        raise InvalidArgument("name must be non-empty, without leading or trailing spaces.")
    _check_password(password)
    password_hash = _hasher.hash(password)
    user_id = ocid.mint("user")
    with ctx.db.write() as conn:
        if ocid.resource_type(tenancy_id) != "tenancy" or identity.get_compartment(conn, tenancy_id) is None:
            raise NotFound(f"Tenancy {tenancy_id} not found.")
        if repo.credential_named(conn, name) is not None:
            raise Conflict(f"A console user named {name!r} exists already.")
        identity.create_user(conn, user_id, tenancy_id, name)
        repo.add_credential(conn, repo.Credential(user_id, tenancy_id, name, password_hash), now())
    return user_id


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _subjects(name: str, address: str) -> list[str]:
    return [f"user:{name[:255]}", f"addr:{address}"]


def _check_rate(ctx: Context, subjects: list[str], at: datetime) -> None:
    s = ctx.settings
    window = timedelta(seconds=s.console_failure_window_seconds)
    with ctx.db.read() as conn:
        for subject in subjects:
            found = repo.failures_of(conn, subject)
            limit = s.console_max_address_failures if subject.startswith("addr:") else s.console_max_failures
            if found and found[0] + window > at and found[1] >= limit:
                wait = int((found[0] + window - at).total_seconds()) + 1
                log.warning("console sign-in refused: rate limit", extra={"subject": subject[:120]})
                raise TooManyRequests(f"Too many failed sign-ins; try again in {wait} seconds.")


def _record_failure(ctx: Context, subjects: list[str], at: datetime) -> None:
    window = timedelta(seconds=ctx.settings.console_failure_window_seconds)
    with ctx.db.write() as conn:
        for subject in subjects:
            found = repo.failures_of(conn, subject)
            if found is None or found[0] + window <= at:
                repo.record_failure(conn, subject, at, 1)
            else:
                repo.record_failure(conn, subject, found[0], found[1] + 1)


def sign_in(ctx: Context, name: str, password: str, address: str) -> tuple[str, ConsoleSession]:
    """(cookie token, session) for a right name and password; Unauthenticated otherwise,
    TooManyRequests past the limit. The token is returned once and never stored."""
    subjects = _subjects(name, address)
    at = now()
    _check_rate(ctx, subjects, at)
    with ctx.db.read() as conn:
        cred = repo.credential_named(conn, name)
    try:
        _hasher.verify(cred.password_hash if cred else _DUMMY_HASH, password[:MAX_PASSWORD])
        ok = cred is not None
    except (VerificationError, InvalidHashError):
        ok = False
    if not ok or cred is None:
        _record_failure(ctx, subjects, at)
        log.warning("console sign-in failed", extra={"userName": name[:100], "address": address})
        raise Unauthenticated(BAD_CREDENTIALS)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with ctx.db.write() as conn:
        repo.clear_failures(conn, subjects[0])
        if _hasher.check_needs_rehash(cred.password_hash):
            repo.set_password_hash(conn, cred.user_id, _hasher.hash(password))
        repo.insert_session(conn, _token_hash(token), cred, csrf, at)
        _prune(ctx, conn, at)
    log.info(
        "console sign-in", extra={"userId": cred.user_id, "tenancyId": cred.tenancy_id, "address": address}
    )
    return token, ConsoleSession(Caller(cred.tenancy_id, cred.user_id), cred.name, csrf)


def resolve(ctx: Context, token: str, *, renew: bool = True) -> ConsoleSession | None:
    """The live session of a cookie's token; None when unknown or expired (an expired one is
    deleted). Using a session renews its idle time (unless `renew` is False: a page's own
    background polling is not the user's activity), never its absolute end."""
    if not token or len(token) > 100:
        return None
    key, at, s = _token_hash(token), now(), ctx.settings
    with ctx.db.read_one() as conn:
        row = repo.get_session(conn, key)
    if row is None:
        return None
    idle_end = row.time_last_seen + timedelta(seconds=s.console_idle_seconds)
    if at >= idle_end or at >= row.time_created + timedelta(seconds=s.console_absolute_seconds):
        with ctx.db.write() as conn:
            repo.delete_session(conn, key)
        return None
    if renew and at - row.time_last_seen >= TOUCH_EVERY:
        with ctx.db.write() as conn:
            repo.touch_session(conn, key, at)
    return ConsoleSession(Caller(row.tenancy_id, row.user_id), row.user_name, row.csrf_token)


def sign_out(ctx: Context, token: str) -> None:
    with ctx.db.write() as conn:
        repo.delete_session(conn, _token_hash(token))


def _prune(ctx: Context, conn: Any, at: datetime) -> int:
    """Delete every session past its idle or absolute end (done at each sign-in, so the table
    holds only live sessions and those not yet pruned)."""
    s = ctx.settings
    return repo.delete_sessions_before(
        conn,
        at - timedelta(seconds=s.console_absolute_seconds),
        at - timedelta(seconds=s.console_idle_seconds),
    )
