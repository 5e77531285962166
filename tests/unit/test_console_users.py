"""Console users and sessions (service/console_users.py) on SQLite and PostgreSQL: password
hashing, idle and absolute expiry, sign-out, and the sign-in rate limit's windows."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from bootvault.config import Settings
from bootvault.domain.errors import Conflict, InvalidArgument, NotFound, TooManyRequests, Unauthenticated
from bootvault.service import console_users, identity
from bootvault.service.context import Context
from bootvault.service.identity import generate_api_key
from bootvault.store.tables import console_credentials, console_sessions
from tests.dbs import database_url

PASSWORD = "a long enough password"


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 1, 1, 12, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += timedelta(seconds=seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(console_users, "now", c)
    return c


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Context]:
    with database_url(request.param, tmp_path) as url:
        c = Context.open(_settings(tmp_path, url))
        yield c
        c.close()


def _settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=url,
        console_idle_seconds=600,
        console_absolute_seconds=3600,
        console_max_failures=3,
        console_max_address_failures=5,
        console_failure_window_seconds=300,
    )


@pytest.fixture
def tenancy(ctx: Context) -> str:
    return identity.create_tenancy(ctx, "t", generate_api_key()).tenancy_id


def test_password_is_stored_as_an_argon2id_hash(ctx: Context, tenancy: str) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    with ctx.db.read() as conn:
        stored = conn.execute(select(console_credentials.c.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_create_user_refuses_bad_input(ctx: Context, tenancy: str) -> None:
    with pytest.raises(InvalidArgument, match="password must be"):
        console_users.create_user(ctx, tenancy, "ann", "short")
    with pytest.raises(NotFound):
        console_users.create_user(ctx, "ocid1.tenancy.oc1..nosuch", "ann", PASSWORD)
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    with pytest.raises(Conflict):
        console_users.create_user(ctx, tenancy, "ann", PASSWORD)


def test_session_stores_only_a_hash_of_the_token(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    token, session = console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    assert session.caller.tenancy_id == tenancy
    with ctx.db.read() as conn:
        stored = conn.execute(select(console_sessions.c.token_hash)).scalar_one()
    assert stored != token and len(stored) == 64
    resolved = console_users.resolve(ctx, token)
    assert resolved is not None and resolved.caller == session.caller


def test_idle_expiry_renewed_by_use(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    token, _ = console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    for _ in range(3):  # used every 9 minutes: stays alive past the 10-minute idle limit
        clock.advance(540)
        assert console_users.resolve(ctx, token) is not None
    clock.advance(601)
    assert console_users.resolve(ctx, token) is None
    assert console_users.resolve(ctx, token) is None  # deleted, not just refused


def test_background_polling_does_not_renew(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    token, _ = console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    for _ in range(4):  # an open page polling every 2 minutes, nobody at the keyboard
        clock.advance(120)
        assert console_users.resolve(ctx, token, renew=False) is not None
    clock.advance(121)  # 601 s after the last real use
    assert console_users.resolve(ctx, token, renew=False) is None


def test_sign_in_prunes_expired_sessions(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    clock.advance(601)  # both idle past their end, never resolved again
    console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    with ctx.db.read() as conn:
        assert len(conn.execute(select(console_sessions.c.token_hash)).all()) == 1


def test_absolute_expiry_despite_use(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    token, _ = console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    for _ in range(6):
        clock.advance(590)
        assert console_users.resolve(ctx, token) is not None
    clock.advance(100)  # 3640 s after sign-in, used 100 s ago
    assert console_users.resolve(ctx, token) is None


def test_sign_out_deletes_the_session(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    token, _ = console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")
    console_users.sign_out(ctx, token)
    assert console_users.resolve(ctx, token) is None


def test_rate_limit_per_user_and_window(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    for _ in range(3):
        with pytest.raises(Unauthenticated, match="user name or password is incorrect"):
            console_users.sign_in(ctx, "ann", "wrong password!", "10.0.0.1")
    with pytest.raises(TooManyRequests):
        console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.2")  # right password, other address
    clock.advance(301)  # the window ended
    console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.1")


def test_rate_limit_per_address(ctx: Context, tenancy: str, clock: Clock) -> None:
    console_users.create_user(ctx, tenancy, "ann", PASSWORD)
    for n in range(5):  # unknown names from one address: each costs the address a failure
        with pytest.raises(Unauthenticated):
            console_users.sign_in(ctx, f"nobody{n}", "whatever", "10.0.0.9")
    with pytest.raises(TooManyRequests):
        console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.9")
    console_users.sign_in(ctx, "ann", PASSWORD, "10.0.0.10")
