"""The metadata store behaves the same on SQLite and PostgreSQL: migrations, queue, paging, CAS."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bootvault.domain.models import JobKind, JobState
from bootvault.store import jobs
from bootvault.store.db import Database
from tests.dbs import database_url


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with database_url(request.param, tmp_path) as url:
        database = Database(url)
        database.migrate()
        database.migrate()  # idempotent
        yield database
        database.dispose()


def test_schema_is_at_the_newest_migration(db: Database) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from bootvault.store.db import HEAD_REVISION, MIGRATIONS_DIR

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION == db.schema_revision()


def test_claim_respects_lanes_and_order(db: Database) -> None:
    lease = timedelta(seconds=30)
    with db.write() as conn:
        a1 = jobs.enqueue(conn, JobKind.BACKUP, "t", "r1", lane="volA")
        a2 = jobs.enqueue(conn, JobKind.BACKUP, "t", "r2", lane="volA")
        b1 = jobs.enqueue(conn, JobKind.BACKUP, "t", "r3", lane="volB")
    with db.write() as conn:
        first = jobs.claim(conn, "w1", lease)
    with db.write() as conn:
        second = jobs.claim(conn, "w2", lease)
    with db.write() as conn:
        third = jobs.claim(conn, "w3", lease)
    assert first is not None and first.id == a1 and first.attempts == 1
    assert second is not None and second.id == b1  # a2 waits behind a1 in lane volA
    assert third is None
    with db.write() as conn:
        assert jobs.finish(conn, a1, "w1", JobState.SUCCEEDED)
        assert not jobs.finish(conn, b1, "w1", JobState.SUCCEEDED)  # not w1's job
        nxt = jobs.claim(conn, "w3", lease)
    assert nxt is not None and nxt.id == a2


def test_expired_lease_is_taken_over(db: Database) -> None:
    with db.write() as conn:
        job_id = jobs.enqueue(conn, JobKind.BACKUP, "t", "r", lane="v")
    with db.write() as conn:
        assert jobs.claim(conn, "dead", timedelta(seconds=-1)) is not None
    with db.write() as conn:
        taken = jobs.claim(conn, "alive", timedelta(seconds=30))
    assert taken is not None and taken.id == job_id and taken.attempts == 2
    with db.write() as conn:
        assert not jobs.renew(conn, job_id, "dead", timedelta(seconds=30))
        assert jobs.renew(conn, job_id, "alive", timedelta(seconds=30))


def test_concurrent_claims_never_share_a_job(db: Database) -> None:
    with db.write() as conn:
        for i in range(20):
            jobs.enqueue(conn, JobKind.BACKUP, "t", f"r{i}", lane=f"lane{i}")
    claimed: list[str] = []
    lock = threading.Lock()

    def claimer(name: str) -> None:
        while True:
            with db.write() as conn:
                job = jobs.claim(conn, name, timedelta(seconds=30))
            if job is None:
                return
            with lock:
                claimed.append(job.id)

    threads = [threading.Thread(target=claimer, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == 20 and len(set(claimed)) == 20


def test_workers_claim_only_jobs_of_their_availability_domains(db: Database) -> None:
    lease = timedelta(seconds=30)
    with db.write() as conn:
        ad2 = jobs.enqueue(conn, JobKind.BACKUP, "t", "r1", lane="v1", ad="site:AD-2")
        anywhere = jobs.enqueue(conn, JobKind.GC, "", "gc", lane="maintenance:gc")
    with db.write() as conn:
        first = jobs.claim(conn, "ad1-worker", lease, ads=["site:AD-1"])
        second = jobs.claim(conn, "ad1-worker", lease, ads=["site:AD-1"])
    assert first is not None and first.id == anywhere and second is None  # AD-2's pool is not reachable
    with db.write() as conn:
        third = jobs.claim(conn, "ad2-worker", lease, ads=["site:AD-2"])
    assert third is not None and third.id == ad2
