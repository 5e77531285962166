"""When schedules are due, and which due backup runs. Pure functions of the schedules and instants.

A schedule's period is divided into *frames* (hours, days, ISO weeks from Monday, months, years)
in its time zone (UTC, or the region's zone for REGIONAL_DATA_CENTER_TIME). Each frame has one
due time: the frame's start plus `offsetSeconds` (NUMERIC_SECONDS, or no offsetType), or the
`hourOfDay`/`dayOfWeek`/`dayOfMonth`/`month` it names (STRUCTURED; defaults hour 0, MONDAY, day 1,
JANUARY; a day past the month's end means its last day). ONE_HOUR frames are UTC hours.

OCI runs one scheduled backup per volume per day: on a day (in the schedule's zone) where a
longer-period schedule is also due, the shorter one is skipped (yearly > monthly > weekly > daily).
bootvault's choice for ONE_HOUR: hourly backups are not limited to one a day (that would make them
daily), but an hourly due time is skipped when a longer schedule's backup runs in the same hour.
"""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from bootvault.domain.policies import (
    DAYS_OF_WEEK,
    MONTHS,
    PRIORITY,
    UTC_ZONE,
    Period,
    Schedule,
)

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
_TINY = timedelta(microseconds=1)


def zone_of(s: Schedule, regional: tzinfo) -> tzinfo:
    return UTC if s.time_zone in (None, UTC_ZONE) else regional


def _local(t: datetime, tz: tzinfo) -> datetime:
    return t.astimezone(tz).replace(tzinfo=None)


def _utc(naive_local: datetime, tz: tzinfo) -> datetime:
    return naive_local.replace(tzinfo=tz).astimezone(UTC)


def _frame_start(period: Period, local: datetime) -> datetime:
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == Period.ONE_DAY:
        return day
    if period == Period.ONE_WEEK:
        return day - timedelta(days=day.weekday())
    if period == Period.ONE_MONTH:
        return day.replace(day=1)
    return day.replace(month=1, day=1)  # ONE_YEAR


def _shift(period: Period, start: datetime, n: int) -> datetime:
    if period == Period.ONE_DAY:
        return start + n * DAY
    if period == Period.ONE_WEEK:
        return start + 7 * n * DAY
    if period == Period.ONE_MONTH:
        months = start.year * 12 + start.month - 1 + n
        return start.replace(year=months // 12, month=months % 12 + 1)
    return start.replace(year=start.year + n)  # ONE_YEAR


def _day_in_month(year: int, month: int, day: int | None) -> int:
    return min(day or 1, calendar.monthrange(year, month)[1])


def _structured(s: Schedule, start: datetime) -> datetime:
    """The naive local due time in the frame starting at `start`."""
    hour = timedelta(hours=s.hour_of_day or 0)
    if s.period == Period.ONE_DAY:
        return start + hour
    if s.period == Period.ONE_WEEK:
        return start + DAY * DAYS_OF_WEEK.index(s.day_of_week or "MONDAY") + hour
    month = start.month if s.period == Period.ONE_MONTH else MONTHS.index(s.month or "JANUARY") + 1
    return start.replace(month=month, day=_day_in_month(start.year, month, s.day_of_month)) + hour


def _due_in_frame(s: Schedule, start: datetime, tz: tzinfo) -> datetime:
    if s.structured:
        return _utc(_structured(s, start), tz)
    return _utc(start, tz) + timedelta(seconds=s.offset_seconds or 0)


def _candidates(s: Schedule, t: datetime, regional: tzinfo) -> list[datetime]:
    """Due times of the frames around t, in order (an offset stays inside its frame, give or
    take a daylight-saving hour, so five frames always bracket t)."""
    if s.period == Period.ONE_HOUR:
        hour = t.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        offset = timedelta(seconds=0 if s.structured else s.offset_seconds or 0)
        return [hour + n * HOUR + offset for n in range(-2, 3)]
    tz = zone_of(s, regional)
    start = _frame_start(s.period, _local(t, tz))
    return [_due_in_frame(s, _shift(s.period, start, n), tz) for n in range(-2, 3)]


def next_after(s: Schedule, t: datetime, regional: tzinfo) -> datetime:
    """The first due time strictly after t."""
    return next(d for d in _candidates(s, t, regional) if d > t)


def last_at_or_before(s: Schedule, t: datetime, regional: tzinfo) -> datetime:
    """The last due time at or before t."""
    return [d for d in _candidates(s, t, regional) if d <= t][-1]


def first_due(schedules: Sequence[Schedule], after: datetime, regional: tzinfo) -> datetime | None:
    """The earliest due time of any schedule after `after` (None: the policy never fires)."""
    return min((next_after(s, after, regional) for s in schedules), default=None)


def _occurs_within(s: Schedule, start: datetime, end: datetime, regional: tzinfo) -> datetime | None:
    due = last_at_or_before(s, end - _TINY, regional)
    return due if due >= start else None


def runs(schedules: Sequence[Schedule], s: Schedule, due: datetime, regional: tzinfo) -> bool:
    """Whether the backup `s` owes at `due` is made, under the one-backup-per-day rule."""
    if s.period == Period.ONE_HOUR:
        start = due.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        for other in schedules:
            if other.period == Period.ONE_HOUR:
                continue
            at = _occurs_within(other, start, start + HOUR, regional)
            if at is not None and runs(schedules, other, at, regional):
                return False
        return True
    tz = zone_of(s, regional)
    day = _local(due, tz).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = _utc(day, tz), _utc(day + DAY, tz)
    return not any(
        _occurs_within(other, start, end, regional) is not None
        for other in schedules
        if PRIORITY[other.period] > PRIORITY[s.period]
    )


@dataclass(frozen=True)
class Decision:
    """What the scheduler does for one assignment whose next_run_at has come."""

    schedule: Schedule | None  # the backup to make now, or None (nothing runs for this due time)
    due_time: datetime | None
    next_run_at: datetime | None  # the next due time after now


def decide(
    schedules: Sequence[Schedule], pending_since: datetime, now: datetime, regional: tzinfo
) -> Decision:
    """One backup at most, whatever was missed: for every schedule due in [pending_since, now],
    its latest due time; of those that run (one-per-day rule), the longest period's. After
    downtime this is the one catch-up backup; the missed due times before it are not made."""
    best: tuple[int, datetime, Schedule] | None = None
    for s in schedules:
        due = last_at_or_before(s, now, regional)
        if due < pending_since or not runs(schedules, s, due, regional):
            continue
        key = (PRIORITY[s.period], due, s)
        if best is None or key[:2] > best[:2]:
            best = key
    following = first_due(schedules, now, regional)
    if best is None:
        return Decision(None, None, following)
    return Decision(best[2], best[1], following)
