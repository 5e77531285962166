"""Retention lock, deletion prevention and legal hold of a backup: who may delete it, and how its
retention may change. Pure rules; every deleting path (API, expiry, GC) asks `deletion_blocker`.

- `retentionPeriod` (whole DAYS or YEARS) counts from the backup's creation (its
  timeRequestReceived), so re-sending the same period never moves the date;
  `timeRetentionExpiresAt` is that end.
- `isRetentionLockEnabled` (compliance): until timeRetentionExpiresAt nothing deletes the
  backup, the lock cannot be disabled and the period can only grow.
- `isPreventDeletionEnabled` (governance): until timeRetentionExpiresAt the backup cannot be
  deleted, but the flag may be turned off and the period changed.
- `isIndefiniteRetentionEnabled` (legal hold): nothing deletes the backup until it is cleared.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bootvault.domain.errors import Conflict, InvalidArgument

MAX_DAYS, MAX_YEARS = 36500, 100


@dataclass(frozen=True)
class RetentionDuration:
    """OCI's RetentionDuration: whole DAYS or YEARS (a year is 365 days)."""

    unit: str  # DAYS | YEARS
    amount: int

    def seconds(self, day_seconds: float = 86400.0) -> float:
        days = self.amount * (365 if self.unit == "YEARS" else 1)
        return days * day_seconds


@dataclass(frozen=True)
class Retention:
    period: RetentionDuration | None = None
    lock: bool | None = None  # isRetentionLockEnabled
    prevent_deletion: bool | None = None  # isPreventDeletionEnabled
    legal_hold: bool | None = None  # isIndefiniteRetentionEnabled
    expires_at: datetime | None = None  # timeRetentionExpiresAt

    def locked(self, now: datetime) -> bool:
        return bool(self.lock and self.expires_at is not None and now < self.expires_at)

    def pinned(self, now: datetime) -> bool:
        """Nothing may delete the backup or its data now."""
        return self.blocker("", now) is not None

    def blocker(self, backup_id: str, now: datetime) -> str | None:
        """Why the backup cannot be deleted now, or None."""
        if self.legal_hold:
            return (
                f"Boot volume backup {backup_id} is under a legal hold (isIndefiniteRetentionEnabled); "
                "it cannot be deleted until the hold is cleared."
            )
        if self.expires_at is None or now >= self.expires_at:
            return None
        until = self.expires_at.isoformat(timespec="seconds")
        if self.lock:
            return (
                f"Boot volume backup {backup_id} is under a retention lock until {until}; "
                "it cannot be deleted before then."
            )
        if self.prevent_deletion:
            return (
                f"Boot volume backup {backup_id} has deletion prevented until {until} "
                "(isPreventDeletionEnabled); disable it or wait."
            )
        return None


def check_period(period: RetentionDuration | None, field: str = "retentionPeriod") -> None:
    if period is None:
        return
    limit = MAX_YEARS if period.unit == "YEARS" else MAX_DAYS
    if not 1 <= period.amount <= limit:
        raise InvalidArgument(
            f"{field}.retentionTimeAmount must be a whole number of {period.unit} between 1 and {limit}."
        )


def change(
    current: Retention,
    requested: Retention,
    anchor: datetime,
    now: datetime,
    day_seconds: float,
    backup_id: str = "",
) -> Retention:
    """The retention after a create (current = Retention()) or update. Fields of `requested` that
    are None are left as they are. Refuses what a lock forbids (409) and what cannot mean
    anything (400)."""
    check_period(requested.period)
    period = requested.period if requested.period is not None else current.period
    merged = Retention(
        period=period,
        lock=current.lock if requested.lock is None else requested.lock,
        prevent_deletion=(
            current.prevent_deletion if requested.prevent_deletion is None else requested.prevent_deletion
        ),
        legal_hold=current.legal_hold if requested.legal_hold is None else requested.legal_hold,
        expires_at=None if period is None else anchor + timedelta(seconds=period.seconds(day_seconds)),
    )
    for flag, name in (
        (merged.lock, "isRetentionLockEnabled"),
        (merged.prevent_deletion, "isPreventDeletionEnabled"),
    ):
        if flag and period is None:
            raise InvalidArgument(f"retentionPeriod is required when {name} is true.")
    if current.locked(now):
        assert current.expires_at is not None
        until = current.expires_at.isoformat(timespec="seconds")
        if merged.lock is False:
            raise Conflict(
                f"isRetentionLockEnabled: boot volume backup {backup_id} is under a retention lock until "
                f"{until}; the lock cannot be removed before then."
            )
        if merged.expires_at is None or merged.expires_at < current.expires_at:
            raise Conflict(
                f"retentionPeriod: boot volume backup {backup_id} is under a retention lock until {until}; "
                "the period can be extended but not shortened."
            )
    return merged
