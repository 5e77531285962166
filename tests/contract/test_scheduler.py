"""The scheduler and expiry against real databases (SQLite and PostgreSQL): each due time yields
exactly one backup however many schedulers run at once, downtime gives one catch-up backup, and
expiry deletes what has expired but never what a lock or hold keeps. The instant is passed in
(`now=`) so no test waits for a clock; the worker loop itself is exercised in tests/e2e."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bootvault.config import Settings
from bootvault.domain import ocid
from bootvault.domain.models import BackupState, BackupType, BootVolume, SourceType, VolumeState
from bootvault.domain.policies import Period, Schedule
from bootvault.domain.retention import Retention, RetentionDuration
from bootvault.service import policies, scheduler
from bootvault.service.context import Caller, Context
from bootvault.store import backups, identity, volumes
from bootvault.store.backups import retention_columns
from bootvault.store.common import new_etag, now
from bootvault.store.tables import boot_volume_backups, boot_volumes, jobs, scheduled_runs
from tests.dbs import database_url

HOURLY = Schedule(BackupType.INCREMENTAL, Period.ONE_HOUR, 7200, offset_seconds=600)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with database_url(request.param, tmp_path) as db_url:
        yield db_url


def _context(url: str, tmp_path: Path) -> Context:
    settings = Settings(data_dir=tmp_path / "data", database_url=url, min_retention_seconds=1)
    return Context.open(settings)


def _volumes(ctx: Context, n: int) -> tuple[Caller, list[str]]:
    tenancy, user = ocid.mint("tenancy"), ocid.mint("user")
    ids = [ocid.mint("bootvolume", "local-1") for _ in range(n)]
    with ctx.db.write() as conn:
        identity.create_tenancy(conn, tenancy, "sched")
        for vid in ids:  # rows only: nothing here runs the backups
            volumes.insert_volume(
                conn,
                BootVolume(
                    vid,
                    tenancy,
                    tenancy,
                    "bootvault:AD-1",
                    vid[-6:],
                    VolumeState.AVAILABLE,
                    1,
                    now(),
                    new_etag(),
                ),
            )
    return Caller(tenancy, user), ids


def _assign_all(ctx: Context, caller: Caller, ids: list[str], schedules: list[Schedule]) -> datetime:
    policy = policies.create_policy(
        ctx, caller, policies.CreatePolicy(caller.tenancy_id, "p", schedules), None
    )
    policies.create_assignment(ctx, caller, ids[0], policy.id)  # the service's own way in, once
    with ctx.db.write() as conn:  # the rest as it assigns, in one transaction rather than 600
        for vid in ids[1:]:
            volume = volumes.get_volume(conn, vid)
            assert volume is not None
            policies.assign(ctx, conn, volume, policy)
    with ctx.db.read() as conn:
        first = policies.repo.assignment_of_asset(conn, ids[0])
    assert first is not None and first.next_run_at is not None
    return first.next_run_at


def _count(ctx: Context, table, **where: object) -> int:  # type: ignore[no-untyped-def]
    stmt = select(func.count()).select_from(table)
    for column, value in where.items():
        stmt = stmt.where(table.c[column] == value)
    with ctx.db.read() as conn:
        return int(conn.execute(stmt).scalar() or 0)


def test_concurrent_schedulers_make_each_due_backup_once(url: str, tmp_path: Path) -> None:
    ctx = _context(url, tmp_path)
    caller, ids = _volumes(ctx, 600)  # more than one batch
    due = _assign_all(ctx, caller, ids, [HOURLY])
    contexts = [_context(url, tmp_path) for _ in range(4)]  # four processes' worth of engines
    made: list[int] = []
    start = threading.Barrier(len(contexts))

    def tick(c: Context) -> None:
        start.wait()
        made.append(scheduler.run_due(c, now=due + timedelta(seconds=2)))

    threads = [threading.Thread(target=tick, args=(c,)) for c in contexts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(made) == 600
    assert scheduler.run_due(ctx, now=due + timedelta(seconds=30)) == 0  # a second tick: nothing
    assert _count(ctx, boot_volume_backups, source_type="SCHEDULED") == 600
    assert _count(ctx, jobs, kind="BACKUP") == 600 and _count(ctx, scheduled_runs) == 600
    with ctx.db.read() as conn:
        b = backups.list_backups(
            conn,
            caller.tenancy_id,
            backups.BackupFilter(caller.tenancy_id, ids[0]),
            sort_by_name=False,
            descending=False,
            limit=5,
            after=None,
        )[0]
    assert len(b) == 1 and b[0].expiration_time is not None and b[0].schedule_retention_seconds == 7200
    assert b[0].display_name == f"Auto-backup for {due:%Y-%m-%d} via policy: p"
    # the next hour: once more each
    assert scheduler.run_due(ctx, now=due + timedelta(hours=1, seconds=1)) == 600
    for c in contexts + [ctx]:
        c.close()


def test_downtime_gives_one_catch_up_backup(url: str, tmp_path: Path) -> None:
    ctx = _context(url, tmp_path)
    caller, ids = _volumes(ctx, 3)
    due = _assign_all(ctx, caller, ids, [HOURLY])
    later = due + timedelta(hours=5, minutes=7)  # five due times were missed
    assert scheduler.run_due(ctx, now=later) == 3
    with ctx.db.read() as conn:
        rows = policies.repo.runs_of(conn, ids[0])
        cursor = policies.repo.assignment_of_asset(conn, ids[0])
    assert [r.due_time for r in rows] == [due + timedelta(hours=5)]
    assert cursor is not None and cursor.next_run_at == due + timedelta(hours=6)
    ctx.close()


def test_a_volume_that_is_busy_or_gone_is_skipped_with_a_reason(url: str, tmp_path: Path) -> None:
    ctx = _context(url, tmp_path)
    caller, ids = _volumes(ctx, 2)
    due = _assign_all(ctx, caller, ids, [HOURLY])
    with ctx.db.write() as conn:
        # arranged in the table: a restore's volume row is RESTORING from its creation on
        where = boot_volumes.c.id == ids[1]
        conn.execute(update(boot_volumes).where(where).values(lifecycle_state=VolumeState.RESTORING.value))
    assert scheduler.run_due(ctx, now=due) == 1
    with ctx.db.read() as conn:
        (run,) = policies.repo.runs_of(conn, ids[1])
    assert run.backup_id is None and "RESTORING" in run.skipped_reason
    ctx.close()


def _expired_backup(ctx: Context, caller: Caller, volume_id: str, retention: Retention) -> str:
    backup_id = ocid.mint("bootvolumebackup", "local-1")
    ts = datetime.now(UTC)
    with ctx.db.write() as conn:
        backups.insert_backup(
            conn,
            backups.BootVolumeBackup(
                backup_id,
                caller.tenancy_id,
                caller.tenancy_id,
                volume_id,
                "x",
                BackupState.AVAILABLE,
                BackupType.INCREMENTAL,
                SourceType.SCHEDULED,
                ts,
                ts,
                new_etag(),  # type: ignore[arg-type]
                expiration_time=ts - timedelta(seconds=1),
                retention=retention,
            ),
        )
    return backup_id


def test_expiry_deletes_expired_backups_but_not_locked_or_held_ones(url: str, tmp_path: Path) -> None:
    ctx = _context(url, tmp_path)
    caller, (vol,) = _volumes(ctx, 1)
    ts = datetime.now(UTC)
    week = RetentionDuration("DAYS", 7)
    plain = _expired_backup(ctx, caller, vol, Retention())
    locked = _expired_backup(ctx, caller, vol, Retention(week, lock=True, expires_at=ts + timedelta(days=7)))
    held = _expired_backup(ctx, caller, vol, Retention(legal_hold=True))
    prevented = _expired_backup(
        ctx, caller, vol, Retention(week, prevent_deletion=True, expires_at=ts + timedelta(days=7))
    )
    lapsed = _expired_backup(
        ctx, caller, vol, Retention(week, lock=True, expires_at=ts - timedelta(seconds=1))
    )
    assert scheduler.expire_due(ctx) == 2
    with ctx.db.read() as conn:
        state = {
            b: backups.get_backup(conn, b).lifecycle_state for b in (plain, locked, held, prevented, lapsed)
        }  # type: ignore[union-attr]
    assert state == {
        plain: BackupState.TERMINATING,
        locked: BackupState.AVAILABLE,
        held: BackupState.AVAILABLE,
        prevented: BackupState.AVAILABLE,
        lapsed: BackupState.TERMINATING,
    }
    with ctx.db.write() as conn:  # the hold is cleared: the next tick deletes it
        backups.update_backup(conn, held, retention_columns(Retention(legal_hold=False)))
    assert scheduler.expire_due(ctx) == 1
    ctx.close()
