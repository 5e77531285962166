"""Due times of schedules of every period, offsets, time zones, the one-backup-per-day rule
(with Oracle's gold policy) and the catch-up decision: pure functions, no clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bootvault.domain.errors import Conflict, InvalidArgument
from bootvault.domain.models import BackupType
from bootvault.domain.policies import ORACLE_POLICIES, Period, Schedule, check_schedules
from bootvault.domain.retention import Retention, RetentionDuration, change
from bootvault.domain.scheduling import decide, first_due, last_at_or_before, next_after, runs

UTCZ = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")
GOLD = next(p for p in ORACLE_POLICIES.values() if p.display_name == "gold").schedules


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def sched(period: Period, **kw: object) -> Schedule:
    return Schedule(BackupType.INCREMENTAL, period, 3600, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("schedule", "now", "expected"),
    [
        (sched(Period.ONE_HOUR, offset_seconds=90), "2026-03-04T10:01:00", "2026-03-04T10:01:30"),
        (sched(Period.ONE_HOUR, offset_seconds=90), "2026-03-04T10:01:30", "2026-03-04T11:01:30"),
        (
            sched(Period.ONE_HOUR, offset_type="STRUCTURED", offset_seconds=90),
            "2026-03-04T10:01",
            "2026-03-04T11:00",
        ),
        (sched(Period.ONE_DAY, offset_seconds=7200), "2026-03-04T10:00", "2026-03-05T02:00"),
        (
            sched(Period.ONE_DAY, offset_type="STRUCTURED", hour_of_day=23),
            "2026-03-04T10:00",
            "2026-03-04T23:00",
        ),
        (sched(Period.ONE_DAY, hour_of_day=23), "2026-03-04T10:00", "2026-03-05T00:00"),  # no offsetType
        (sched(Period.ONE_WEEK, offset_seconds=86400), "2026-03-04T10:00", "2026-03-10T00:00"),  # Tuesdays
        (
            sched(Period.ONE_WEEK, offset_type="STRUCTURED", day_of_week="SUNDAY", hour_of_day=3),
            "2026-03-04T10:00",
            "2026-03-08T03:00",
        ),
        (
            sched(Period.ONE_MONTH, offset_type="STRUCTURED", day_of_month=31),
            "2026-02-02T00:00",
            "2026-02-28T00:00",
        ),
        (
            sched(Period.ONE_MONTH, offset_type="STRUCTURED", day_of_month=31),
            "2026-02-28T00:00",
            "2026-03-31T00:00",
        ),
        (sched(Period.ONE_MONTH, offset_seconds=3600), "2026-12-15T00:00", "2027-01-01T01:00"),
        (
            sched(Period.ONE_YEAR, offset_type="STRUCTURED", month="FEBRUARY", day_of_month=29),
            "2026-01-01T00:00",
            "2026-02-28T00:00",
        ),
        (sched(Period.ONE_YEAR, offset_seconds=0), "2026-01-01T00:00", "2027-01-01T00:00"),
    ],
)
def test_next_due_time(schedule: Schedule, now: str, expected: str) -> None:
    due = next_after(schedule, at(now), UTCZ)
    assert due == at(expected)
    assert last_at_or_before(schedule, due, UTCZ) == due
    assert last_at_or_before(schedule, due - timedelta(microseconds=1), UTCZ) < due


def test_regional_time_zone_follows_daylight_saving() -> None:
    daily = sched(
        Period.ONE_DAY, offset_type="STRUCTURED", hour_of_day=2, time_zone="REGIONAL_DATA_CENTER_TIME"
    )
    winter = next_after(daily, at("2026-01-10T12:00"), BERLIN)
    summer = next_after(daily, at("2026-07-10T12:00"), BERLIN)
    assert (winter, summer) == (at("2026-01-11T01:00"), at("2026-07-11T00:00"))  # 02:00 CET / CEST
    utc = sched(Period.ONE_DAY, offset_type="STRUCTURED", hour_of_day=2, time_zone="UTC")
    assert next_after(utc, at("2026-07-10T12:00"), BERLIN) == at("2026-07-11T02:00")


@pytest.mark.parametrize(
    ("day", "winner"),
    [
        ("2026-01-01", Period.ONE_YEAR),  # a Thursday: yearly beats monthly and daily
        ("2026-02-01", Period.ONE_MONTH),  # a Sunday: monthly beats weekly and daily
        ("2026-02-08", Period.ONE_WEEK),  # a Sunday
        ("2026-02-10", Period.ONE_DAY),
    ],
)
def test_gold_makes_one_backup_a_day_by_priority(day: str, winner: Period) -> None:
    midnight = at(f"{day}T00:00")
    running = [
        s.period
        for s in GOLD
        if last_at_or_before(s, midnight, UTCZ) == midnight and runs(GOLD, s, midnight, UTCZ)
    ]
    assert running == [winner]
    d = decide(GOLD, midnight, midnight + timedelta(seconds=3), UTCZ)
    assert d.schedule is not None and d.schedule.period == winner and d.due_time == midnight
    assert d.next_run_at == midnight + timedelta(days=1)


def test_a_longer_schedule_later_that_day_wins() -> None:
    daily = sched(Period.ONE_DAY, offset_type="STRUCTURED", hour_of_day=1)
    weekly = sched(Period.ONE_WEEK, offset_type="STRUCTURED", day_of_week="MONDAY", hour_of_day=20)
    monday_1am = at("2026-03-02T01:00")
    assert not runs([daily, weekly], daily, monday_1am, UTCZ)
    assert runs([daily, weekly], weekly, at("2026-03-02T20:00"), UTCZ)
    assert runs([daily, weekly], daily, at("2026-03-03T01:00"), UTCZ)


def test_hourly_yields_only_to_a_longer_backup_in_the_same_hour() -> None:
    hourly = sched(Period.ONE_HOUR)
    daily = sched(Period.ONE_DAY, offset_seconds=600)  # 00:10
    both = [hourly, daily]
    assert not runs(both, hourly, at("2026-03-04T00:00"), UTCZ)
    assert runs(both, hourly, at("2026-03-04T01:00"), UTCZ)
    assert runs(both, daily, at("2026-03-04T00:10"), UTCZ)
    hourly_count = sum(
        runs(both, hourly, at("2026-03-04T00:00") + timedelta(hours=h), UTCZ) for h in range(24)
    )
    assert hourly_count == 23


def test_after_downtime_one_catch_up_not_a_burst() -> None:
    hourly = sched(Period.ONE_HOUR, offset_seconds=300)
    pending = at("2026-03-04T02:05")  # the scheduler was down from 02:00 to 07:42
    d = decide([hourly], pending, at("2026-03-04T07:42"), UTCZ)
    assert d.due_time == at("2026-03-04T07:05") and d.next_run_at == at("2026-03-04T08:05")
    nothing = decide([hourly], d.next_run_at, at("2026-03-04T07:42"), UTCZ)  # not due yet
    assert nothing.schedule is None
    assert decide([], pending, at("2026-03-04T07:42"), UTCZ) == type(d)(None, None, None)
    assert first_due([], pending, UTCZ) is None


@pytest.mark.parametrize(
    ("schedules", "field"),
    [
        ([sched(Period.ONE_HOUR, offset_seconds=3600)], "schedules[0].offsetSeconds"),
        ([sched(Period.ONE_MONTH, offset_seconds=-1)], "schedules[0].offsetSeconds"),
        ([sched(Period.ONE_DAY), sched(Period.ONE_DAY)], "schedules[1].period"),
        ([Schedule(BackupType.FULL, Period.ONE_DAY, 59)], "schedules[0].retentionSeconds"),
        ([sched(Period.ONE_DAY, is_retention_lock_enabled=True)], "schedules[0].retentionPeriod"),
    ],
)
def test_schedule_rules_name_the_field(schedules: list[Schedule], field: str) -> None:
    with pytest.raises(InvalidArgument, match=field.replace("[", r"\[").replace("]", r"\]")):
        check_schedules(schedules, 60)


def test_retention_lock_extends_but_never_shortens_or_lifts() -> None:
    t0 = at("2026-03-04T00:00")
    days = RetentionDuration("DAYS", 10)
    locked = change(Retention(), Retention(period=days, lock=True), t0, t0, 86400)
    assert locked.expires_at == at("2026-03-14T00:00") and locked.pinned(t0)
    later = t0 + timedelta(days=1)
    longer = change(locked, Retention(period=RetentionDuration("YEARS", 1)), t0, later, 86400)
    assert longer.expires_at == t0 + timedelta(days=365)
    with pytest.raises(Conflict, match="retentionPeriod"):
        change(locked, Retention(period=RetentionDuration("DAYS", 9)), t0, later, 86400)
    with pytest.raises(Conflict, match="isRetentionLockEnabled"):
        change(locked, Retention(lock=False), t0, later, 86400)
    over = at("2026-03-14T00:00")
    assert not locked.pinned(over)
    assert change(locked, Retention(lock=False), t0, over, 86400).lock is False
    with pytest.raises(InvalidArgument, match="retentionPeriod is required"):
        change(Retention(), Retention(prevent_deletion=True), t0, t0, 86400)
    with pytest.raises(InvalidArgument, match="retentionTimeAmount"):
        change(Retention(), Retention(period=RetentionDuration("YEARS", 101)), t0, t0, 86400)
    held = change(Retention(), Retention(legal_hold=True), t0, t0, 86400)
    assert held.blocker("b", t0 + timedelta(days=9999)) is not None
    governed = change(Retention(), Retention(period=days, prevent_deletion=True), t0, t0, 86400)
    assert change(governed, Retention(prevent_deletion=False), t0, later, 86400).blocker("b", later) is None
