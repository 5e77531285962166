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


def test_backup_pages_walk_every_row_once_in_order(db: Database) -> None:
    """Keyset pages (both sorts, both directions, with and without filters) list exactly the
    sorted rows, ties in time and in name included; names sort bytewise on both databases."""
    import random
    from datetime import UTC, datetime

    from bootvault.domain.models import BackupState
    from bootvault.store import backups as repo
    from bootvault.store.tables import boot_volume_backups

    rng = random.Random(3)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "id": f"id{rng.randrange(10**6):06d}-{i}",
            "tenancy_id": "T",
            "compartment_id": "C" if i % 9 else "other",
            "boot_volume_id": f"v{rng.randrange(3)}",
            "display_name": rng.choice(["a", "b", "B", "é", "c"]) + str(rng.randrange(3)),
            "lifecycle_state": rng.choice(["AVAILABLE", "FAULTY"]),
            "type": "FULL",
            "source_type": "MANUAL",
            "time_request_received": base,
            "time_created": base + timedelta(seconds=rng.randrange(30)),
            "etag": "e",
            "size_in_gbs": 1,
            "freeform_tags": {},
            "defined_tags": {},
            "percent_complete": 0,
        }
        for i in range(300)
    ]
    with db.write() as conn:
        conn.execute(boot_volume_backups.insert(), rows)
    filters = [
        repo.BackupFilter("C"),
        repo.BackupFilter("C", lifecycle_state=BackupState.FAULTY),
        repo.BackupFilter("C", boot_volume_id="v1", lifecycle_state=BackupState.AVAILABLE),
    ]
    for by_name in (False, True):
        for descending in (False, True):
            for flt in filters:
                got: list[str] = []
                after = None
                while True:
                    with db.read() as conn:
                        items, after = repo.list_backups(
                            conn, "T", flt, sort_by_name=by_name, descending=descending, limit=7, after=after
                        )
                    got += [b.id for b in items]
                    if after is None:
                        break
                chosen = [
                    r
                    for r in rows
                    if r["compartment_id"] == "C"
                    and (flt.lifecycle_state is None or r["lifecycle_state"] == flt.lifecycle_state.value)
                    and (flt.boot_volume_id is None or r["boot_volume_id"] == flt.boot_volume_id)
                ]
                if by_name:
                    chosen.sort(key=lambda r: (r["display_name"].encode(), r["id"]), reverse=descending)
                else:
                    chosen.sort(key=lambda r: (r["time_created"], r["id"]), reverse=descending)
                assert got == [r["id"] for r in chosen], (by_name, descending, flt)


def test_hot_reads_return_what_sqlalchemy_returns(db: Database) -> None:
    """store/rawread runs SQLAlchemy's SQL on the driver with SQLAlchemy's type processors: every
    column of a row (dates, JSON, booleans, big integers, NULLs) comes back exactly as a Result
    gives it, and a row read again after an update is the new row, not a remembered one."""
    from datetime import UTC, datetime

    from sqlalchemy import select

    from bootvault.store import rawread
    from bootvault.store.common import fetch_row, update_with_etag
    from bootvault.store.tables import boot_volume_backups as t

    when = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=UTC)
    full = {
        "id": "full", "tenancy_id": "T", "compartment_id": "C", "boot_volume_id": "v",
        "display_name": "näme ✓", "lifecycle_state": "AVAILABLE", "type": "FULL", "source_type": "MANUAL",
        "time_request_received": when, "time_created": when, "time_imaged": when, "etag": "e1",
        "size_in_gbs": 50, "kms_key_id": "k", "image_id": "i", "freeform_tags": {"a": "b"},
        "defined_tags": {"ns": {"k": "v"}}, "percent_complete": 100, "logical_size_bytes": 1 << 40,
        "unique_size_bytes": 123, "lifecycle_details": "d", "source_boot_volume_backup_id": "s",
        "expiration_time": when, "schedule_retention_seconds": 86400, "retention_unit": "DAYS",
        "retention_amount": 7, "is_retention_lock_enabled": True, "is_prevent_deletion_enabled": False,
        "is_indefinite_retention_enabled": True, "time_retention_expires_at": when,
    }  # fmt: skip
    sparse = {k: v for k, v in full.items() if k in {
        "tenancy_id", "compartment_id", "boot_volume_id", "display_name", "lifecycle_state", "type",
        "source_type", "time_request_received", "time_created", "etag", "freeform_tags", "defined_tags",
        "percent_complete",
    }} | {"id": "sparse", "freeform_tags": {}, "defined_tags": {}}  # fmt: skip
    with db.write() as conn:
        conn.execute(t.insert(), [full])
        conn.execute(t.insert(), [sparse])  # executemany would need the same keys in every row
    stmt = select(t).where(t.c.id == "full")
    for ident in ("full", "sparse"):
        with db.read() as conn:
            expected = conn.execute(select(t).where(t.c.id == ident)).first()
            got = fetch_row(conn, t, ident)
        assert expected is not None and got is not None
        assert tuple(got) == tuple(expected) and got._fields == tuple(expected._mapping.keys())
    with db.read() as conn:
        assert rawread.first(conn, stmt, {}) == tuple(conn.execute(stmt).first())  # a literal bind
    with db.write() as conn:
        assert update_with_etag(conn, t, "full", {"display_name": "renamed", "percent_complete": 99})
    with db.read_one() as conn:
        again = fetch_row(conn, t, "full")
    assert again.display_name == "renamed" and again.percent_complete == 99 and again.etag != "e1"


def test_backup_records_are_shared_frozen_and_follow_updates(db: Database) -> None:
    """A backup's record is built once per row content and shared (so it is frozen); an update
    gives a new record."""
    import dataclasses
    from datetime import UTC, datetime

    from bootvault.domain.models import BackupState, BackupType, BootVolumeBackup, SourceType
    from bootvault.store import backups

    when = datetime(2026, 3, 4, tzinfo=UTC)
    b = BootVolumeBackup(
        "b1",
        "T",
        "C",
        "v",
        "one",
        BackupState.AVAILABLE,
        BackupType.FULL,
        SourceType.MANUAL,
        when,
        when,
        "e1",
    )
    with db.write() as conn:
        backups.insert_backup(conn, b)
    with db.read_one() as conn:
        first = backups.get_backup(conn, "b1")
    with db.read_one() as conn:
        second = backups.get_backup(conn, "b1")
    assert first == second == b
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.display_name = "changed"  # type: ignore[misc]
    with db.write() as conn:
        assert backups.update_backup(conn, "b1", {"display_name": "two"})
    with db.read_one() as conn:
        third = backups.get_backup(conn, "b1")
    assert third.display_name == "two" and third.etag != "e1" and first.display_name == "one"


def _backup_row(db: Database, state: str) -> str:
    from bootvault.domain import ocid
    from bootvault.domain.models import BackupState, BackupType, BootVolumeBackup, SourceType
    from bootvault.store import backups
    from bootvault.store.common import new_etag, now

    ident = ocid.mint("bootvolumebackup")
    record = BootVolumeBackup(
        id=ident,
        tenancy_id="t",
        compartment_id="c",
        boot_volume_id="v",
        display_name="b",
        lifecycle_state=BackupState(state),
        type=BackupType.FULL,
        source_type=SourceType.MANUAL,
        time_request_received=now(),
        time_created=now(),
        etag=new_etag(),
    )
    with db.write() as conn:
        backups.insert_backup(conn, record)
    return ident


def test_a_state_moves_only_as_the_lifecycle_table_allows(db: Database) -> None:
    from bootvault.domain.errors import Conflict, EtagMismatch
    from bootvault.store import backups

    creating = _backup_row(db, "CREATING")
    with db.write() as conn, pytest.raises(Conflict, match="is CREATING; it cannot be deleted"):
        backups.move_backup(conn, creating, "deleted")  # a backup in progress is never deleted
    with db.write() as conn, pytest.raises(ValueError):
        backups.update_backup(conn, creating, {"lifecycle_state": "TERMINATING"})  # no way around it
    with db.write() as conn, pytest.raises(EtagMismatch):
        backups.move_backup(conn, creating, "completed", {"percent_complete": 100}, expected_etag="stale")
    with db.read() as conn:
        unchanged = backups.get_backup(conn, creating)
    assert unchanged is not None and (unchanged.lifecycle_state, unchanged.percent_complete) == (
        "CREATING",
        0,
    )
    with db.write() as conn:
        etag = backups.move_backup(conn, creating, "completed", {"percent_complete": 100}, unchanged.etag)
    with db.read() as conn:
        done = backups.get_backup(conn, creating)
    assert done is not None and (done.lifecycle_state, done.percent_complete, done.etag) == (
        "AVAILABLE",
        100,
        etag,
    )
    with db.write() as conn, pytest.raises(Conflict, match="is gone"):
        backups.move_backup(conn, "ocid1.bootvolumebackup.oc1..missing", "deleted")
