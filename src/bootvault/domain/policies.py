"""Volume backup policies, their schedules and assignments; Oracle's gold, silver and bronze.

Pure records and rules. A schedule is kept exactly as the client sent it (fields that do not
apply to its period or offset type included, so a client reads back what it wrote); what it
*means* is decided by domain/scheduling.py."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from bootvault.domain.errors import InvalidArgument
from bootvault.domain.models import BackupType, Tags
from bootvault.domain.retention import RetentionDuration, check_period


class Period(enum.StrEnum):
    ONE_HOUR = "ONE_HOUR"
    ONE_DAY = "ONE_DAY"
    ONE_WEEK = "ONE_WEEK"
    ONE_MONTH = "ONE_MONTH"
    ONE_YEAR = "ONE_YEAR"


# OCI's one-backup-per-day rule: on a day with several due schedules, the longest period wins.
PRIORITY = {
    Period.ONE_HOUR: 0,
    Period.ONE_DAY: 1,
    Period.ONE_WEEK: 2,
    Period.ONE_MONTH: 3,
    Period.ONE_YEAR: 4,
}
# An offset must land inside the shortest instance of its period (a month has at least 28 days).
MAX_OFFSET_SECONDS = {
    Period.ONE_HOUR: 3600,
    Period.ONE_DAY: 86400,
    Period.ONE_WEEK: 7 * 86400,
    Period.ONE_MONTH: 28 * 86400,
    Period.ONE_YEAR: 365 * 86400,
}
DAYS_OF_WEEK = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]
MONTHS = [
    "JANUARY",
    "FEBRUARY",
    "MARCH",
    "APRIL",
    "MAY",
    "JUNE",
    "JULY",
    "AUGUST",
    "SEPTEMBER",
    "OCTOBER",
    "NOVEMBER",
    "DECEMBER",
]
STRUCTURED = "STRUCTURED"
NUMERIC_SECONDS = "NUMERIC_SECONDS"
UTC_ZONE = "UTC"
REGIONAL_ZONE = "REGIONAL_DATA_CENTER_TIME"
MAX_RETENTION_SECONDS = 100 * 366 * 86400  # a century: beyond it dates stop being meaningful
MAX_SCHEDULES = len(Period)  # at most one schedule per period


@dataclass(frozen=True)
class Schedule:
    backup_type: BackupType
    period: Period
    retention_seconds: int
    offset_type: str | None = None  # None behaves as NUMERIC_SECONDS (OCI: "older clients")
    offset_seconds: int | None = None
    hour_of_day: int | None = None
    day_of_week: str | None = None
    day_of_month: int | None = None
    month: str | None = None
    time_zone: str | None = None  # None behaves as UTC
    retention_period: RetentionDuration | None = None
    is_prevent_deletion_enabled: bool | None = None
    is_retention_lock_enabled: bool | None = None

    @property
    def structured(self) -> bool:
        return self.offset_type == STRUCTURED

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["backup_type"], data["period"] = self.backup_type.value, self.period.value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Schedule:
        values = dict(data)
        values["backup_type"] = BackupType(values["backup_type"])
        values["period"] = Period(values["period"])
        if values.get("retention_period"):
            values["retention_period"] = RetentionDuration(**values["retention_period"])
        return cls(**values)


@dataclass
class VolumeBackupPolicy:
    id: str
    display_name: str
    schedules: list[Schedule]
    time_created: datetime
    etag: str
    tenancy_id: str | None = None  # None: Oracle-defined, visible to every tenancy
    compartment_id: str | None = None
    destination_region: str | None = None
    tags: Tags = field(default_factory=Tags)

    @property
    def oracle_defined(self) -> bool:
        return self.tenancy_id is None


@dataclass
class PolicyAssignment:
    id: str
    tenancy_id: str
    asset_id: str
    policy_id: str
    time_created: datetime
    etag: str
    next_run_at: datetime | None = None  # the earliest due time not yet handled by the scheduler
    xrc_kms_key_id: str | None = None


def check_schedules(schedules: list[Schedule], min_retention_seconds: float) -> None:
    """The rules a wire model cannot express; messages name the field as the client sent it."""
    seen: dict[Period, int] = {}
    for n, s in enumerate(schedules):
        where = f"schedules[{n}]"
        if s.period in seen:
            raise InvalidArgument(
                f"{where}.period: schedules[{seen[s.period]}] already has period {s.period}; "
                "a policy has at most one schedule per period."
            )
        seen[s.period] = n
        if s.retention_seconds < min_retention_seconds:
            raise InvalidArgument(
                f"{where}.retentionSeconds must be at least {min_retention_seconds:g} (this service's "
                f"minimum retention); got {s.retention_seconds}."
            )
        if s.retention_seconds > MAX_RETENTION_SECONDS:
            raise InvalidArgument(f"{where}.retentionSeconds must be at most {MAX_RETENTION_SECONDS}.")
        limit = MAX_OFFSET_SECONDS[s.period]
        if not s.structured and s.offset_seconds is not None and not 0 <= s.offset_seconds < limit:
            raise InvalidArgument(
                f"{where}.offsetSeconds must be between 0 and {limit - 1} for period {s.period}; "
                f"got {s.offset_seconds}."
            )
        check_period(s.retention_period, f"{where}.retentionPeriod")
        if (s.is_retention_lock_enabled or s.is_prevent_deletion_enabled) and s.retention_period is None:
            flag = "isRetentionLockEnabled" if s.is_retention_lock_enabled else "isPreventDeletionEnabled"
            raise InvalidArgument(f"{where}.retentionPeriod is required when {flag} is true.")


# Oracle-defined policies as OCI lists them: realm-wide ids, lowercase names, no compartment.
# OCI documents their periods and retentions but not the hour or zone: midnight UTC, STRUCTURED.
_ORACLE_TIME = datetime(2017, 10, 1, tzinfo=UTC)
_WEEK, _YEAR_365 = 4 * 7 * 86400, 365 * 86400


def _oracle(period: Period, retention: int, **structured: Any) -> Schedule:
    return Schedule(
        backup_type=BackupType.INCREMENTAL,
        period=period,
        retention_seconds=retention,
        offset_type=STRUCTURED,
        offset_seconds=0,
        hour_of_day=0,
        time_zone=UTC_ZONE,
        **structured,
    )


_DAILY = _oracle(Period.ONE_DAY, 7 * 86400)
_WEEKLY = _oracle(Period.ONE_WEEK, _WEEK, day_of_week="SUNDAY")
_MONTHLY = _oracle(Period.ONE_MONTH, _YEAR_365, day_of_month=1)
_YEARLY = _oracle(Period.ONE_YEAR, 5 * _YEAR_365, month="JANUARY", day_of_month=1)

ORACLE_POLICIES: dict[str, VolumeBackupPolicy] = {
    p.id: p
    for p in (
        VolumeBackupPolicy(
            "ocid1.volumebackuppolicy.oc1..aaaaaaaa7hwv7iscewqqcmyqe2zuzfce6setvckhbxduswtxf6ctew7e54ja",
            "silver",
            [_WEEKLY, _MONTHLY, _YEARLY],
            _ORACLE_TIME,
            "oracle-silver-1",
        ),
        VolumeBackupPolicy(
            "ocid1.volumebackuppolicy.oc1..aaaaaaaagcremuefit7dpcnjpdrtphjk4bwm3emm55t6cghctt2m6iyyjdva",
            "gold",
            [_DAILY, _WEEKLY, _MONTHLY, _YEARLY],
            _ORACLE_TIME,
            "oracle-gold-1",
        ),
        VolumeBackupPolicy(
            "ocid1.volumebackuppolicy.oc1..aaaaaaaadrzfwjb5tflixtmy5axp2kx65uqakgnupfogabzjhtn5x5dfra6q",
            "bronze",
            [_MONTHLY, _YEARLY],
            _ORACLE_TIME,
            "oracle-bronze-1",
        ),
    )
}
