"""Database URLs for tests: SQLite files, and a throwaway PostgreSQL schema per use."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("BOOTVAULT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def services_required() -> bool:
    """CI sets BOOTVAULT_REQUIRE_SERVICES=1: a missing PostgreSQL or S3 is then a failure, not a skip."""
    return os.environ.get("BOOTVAULT_REQUIRE_SERVICES") == "1"


def pg_available() -> bool:
    try:
        engine = create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:
        return False


def require_pg() -> None:
    if pg_available():
        return
    if services_required():
        pytest.fail(
            f"PostgreSQL is required (BOOTVAULT_REQUIRE_SERVICES=1) but {PG_ADMIN_URL} is unreachable"
        )
    pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")


@contextmanager
def pg_schema_url() -> Iterator[str]:
    """A fresh schema, dropped afterwards; the URL puts it first on the search path."""
    require_pg()
    schema = f"bvtest_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def database_url(kind: str, tmp_path: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        with pg_schema_url() as url:
            yield url
