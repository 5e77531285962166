"""SQLite reads by key are remembered across requests (store/rawread, store/commits): a repeated
read runs no SQL until something is committed, and then, whichever process committed, the next
read returns the new row. A read inside a transaction never fills or uses the memory."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bootvault.store.common import fetch_row
from bootvault.store.db import Database
from bootvault.store.tables import compartments as t

RENAME = """
import sys
from bootvault.store.db import Database
from bootvault.store.tables import compartments as t
db = Database(sys.argv[1])
with db.write() as conn:
    conn.execute(t.update().where(t.c.id == "C").values(name=sys.argv[2]))
"""


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'bootvault.db'}")
    database.migrate()
    with database.write() as conn:
        conn.execute(
            t.insert().values(
                id="C", tenancy_id="T", parent_id=None, name="one", time_created=datetime.now(UTC)
            )
        )
    yield database
    database.dispose()


def _rename_elsewhere(db: Database, name: str) -> None:
    """An update committed by another process."""
    subprocess.run([sys.executable, "-c", RENAME, db.url, name], check=True, timeout=60)


def _statements(db: Database) -> list[str]:
    """The SQL this thread's read connection runs from now on."""
    ran: list[str] = []
    with db.read_one() as conn:
        conn.connection.driver_connection.set_trace_callback(ran.append)  # type: ignore[union-attr]
    return ran


def _name(db: Database) -> str:
    with db.read_one() as conn:
        return fetch_row(conn, t, "C").name


def test_a_read_is_remembered_until_another_process_commits(db: Database) -> None:
    ran = _statements(db)
    assert _name(db) == "one"
    assert _name(db) == "one"
    assert len(ran) == 1  # the second read ran no SQL
    _rename_elsewhere(db, "two")
    assert _name(db) == "two"  # read-after-write, across processes
    assert _name(db) == "two" and len(ran) == 2


def test_nothing_is_remembered_while_a_commit_is_under_way(db: Database) -> None:
    ran = _statements(db)
    assert db.commits is not None
    odd = db.commits.begin()  # as a writer killed between its commit and the end of it leaves it
    assert _name(db) == _name(db) == "one"
    assert len(ran) == 2
    db.commits.end(odd)
    assert _name(db) == _name(db) == "one" and len(ran) == 3


def test_a_read_in_an_older_snapshot_is_not_remembered_as_current(db: Database) -> None:
    with db.read() as conn:
        assert fetch_row(conn, t, "C").name == "one"  # the transaction's snapshot starts here
        _rename_elsewhere(db, "two")
        assert fetch_row(conn, t, "C").name == "one"  # the snapshot's row, under the new count
    assert _name(db) == "two"
