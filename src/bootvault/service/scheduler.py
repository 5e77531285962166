"""The policy scheduler and expiry: due assignments become SCHEDULED backups, expired backups are
deleted. Every process with workers runs both from a thread of its own (worker/scheduler.py).

Exactly once: one transaction records the due time in `scheduled_runs` (unique per volume and due
time), inserts the backup and its job, and moves the assignment's `next_run_at` past now. A crash
before the commit leaves everything as it was (the next tick does it); after, the due time is
behind the cursor and its key is taken. Several schedulers never work at once on PostgreSQL (a
transaction-scoped advisory lock; the others skip the tick), and SQLite serialises writers.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from bootvault.domain import ocid
from bootvault.domain.models import (
    BackupState,
    BackupType,
    BootVolume,
    BootVolumeBackup,
    JobKind,
    SourceType,
    Tags,
    VolumeState,
)
from bootvault.domain.policies import ORACLE_POLICIES, PolicyAssignment, Schedule, VolumeBackupPolicy
from bootvault.domain.retention import Retention, change
from bootvault.domain.scheduling import Decision, decide
from bootvault.service.context import Context
from bootvault.store import backups, jobs, locks, policies, volumes, workrequests
from bootvault.store.common import new_etag
from bootvault.store.common import now as wall_clock

log = logging.getLogger("bootvault.scheduler")
BATCH = 500  # assignments (or expired backups) per transaction
RUN_HISTORY = timedelta(days=2)  # scheduled_runs rows older than this are pruned


def _exclusive(conn: Connection) -> bool:
    """Whether this transaction may schedule: always on SQLite (writers are serialised), on
    PostgreSQL only if no other scheduler holds the advisory lock (then this tick is skipped)."""
    return locks.try_hold(conn, locks.Lock.SCHEDULER)


def policy_of(conn: Connection, policy_id: str) -> VolumeBackupPolicy | None:
    return ORACLE_POLICIES.get(policy_id) or policies.get_policy(conn, policy_id)


def run_due(ctx: Context, now: datetime | None = None) -> int:
    """Queue the backups of every assignment due at `now` (default: the clock); returns how many."""
    total = 0
    while True:
        made, full = _run_batch(ctx, now or wall_clock())
        total += made
        if not full:
            return total


def _auto_name(due: datetime, policy: VolumeBackupPolicy) -> str:
    return f"Auto-backup for {due:%Y-%m-%d} via policy: {policy.display_name}"[:255]


def _scheduled_backup(
    ctx: Context, vol: BootVolume, s: Schedule, due: datetime, policy: VolumeBackupPolicy
) -> BootVolumeBackup:
    received = wall_clock()
    wanted = Retention(
        period=s.retention_period,
        lock=s.is_retention_lock_enabled,
        prevent_deletion=s.is_prevent_deletion_enabled,
    )
    return BootVolumeBackup(
        id=ocid.mint("bootvolumebackup", ctx.settings.region),
        tenancy_id=vol.tenancy_id,
        compartment_id=vol.compartment_id,
        boot_volume_id=vol.id,
        display_name=_auto_name(due, policy),
        lifecycle_state=BackupState.REQUEST_RECEIVED,
        type=BackupType(s.backup_type),
        source_type=SourceType.SCHEDULED,
        time_request_received=received,
        time_created=received,
        etag=new_etag(),
        size_in_gbs=vol.size_in_gbs,
        kms_key_id=vol.kms_key_id,
        image_id=vol.image_id,
        tags=Tags(dict(vol.tags.freeform), {ns: dict(k) for ns, k in vol.tags.defined.items()}),
        # Provisional until the image is taken; then the image's instant + retention.
        expiration_time=received + timedelta(seconds=s.retention_seconds),
        schedule_retention_seconds=s.retention_seconds,
        retention=change(Retention(), wanted, received, received, ctx.settings.retention_day_seconds),
    )


def _skip_reason(vol: BootVolume | None, room: int) -> str | None:
    if vol is None:
        return "the boot volume no longer exists"
    if vol.lifecycle_state != VolumeState.AVAILABLE:
        return f"the boot volume was {vol.lifecycle_state} at its due time"
    if room <= 0:
        return "the tenancy's boot volume backup quota was reached"
    return None


def _run_batch(ctx: Context, now: datetime) -> tuple[int, bool]:
    regional = ctx.settings.region_zone
    with ctx.db.write() as conn:
        if not _exclusive(conn):
            return 0, False
        due = policies.due_assignments(conn, now, BATCH)
        if not due:
            return 0, False
        found = {p: policy_of(conn, p) for p in {x.policy_id for x in due}}
        vols = volumes.get_volumes(conn, [x.asset_id for x in due], share_lock=True)
        room = _quota_room(ctx, conn, {v.tenancy_id for v in vols.values()})
        cursors: dict[datetime | None, list[str]] = defaultdict(list)
        runs: list[dict[str, Any]] = []
        made: list[BootVolumeBackup] = []
        for x in due:
            policy = found.get(x.policy_id)
            assert x.next_run_at is not None
            d = decide(policy.schedules if policy else [], x.next_run_at, now, regional)
            cursors[d.next_run_at].append(x.id)
            if d.schedule is None or d.due_time is None or policy is None:
                continue
            vol = vols.get(x.asset_id)
            reason = _skip_reason(vol, room[vol.tenancy_id] if vol else 0)
            backup = (
                None if reason or vol is None else _scheduled_backup(ctx, vol, d.schedule, d.due_time, policy)
            )
            if backup is not None:
                room[backup.tenancy_id] -= 1
                made.append(backup)
            runs.append(_run_row(x, d, backup, reason))
        fresh = policies.claim_runs(conn, runs)
        queued = [b for b in made if b.id in fresh]
        backups.insert_backups(conn, queued)
        vol_of = {b.id: vols[b.boot_volume_id] for b in queued}
        jobs.enqueue_many(
            conn,
            [
                (JobKind.BACKUP, b.tenancy_id, b.id, b.boot_volume_id, vol_of[b.id].availability_domain)
                for b in queued
            ],
        )
        policies.set_next_runs(conn, cursors)
    if queued:
        log.info("scheduler queued %d backups", len(queued), extra={"scheduled": len(queued)})
    return len(queued), len(due) == BATCH


def _run_row(
    x: PolicyAssignment, d: Decision, backup: BootVolumeBackup | None, reason: str | None
) -> dict[str, Any]:
    assert d.schedule is not None
    return {
        "asset_id": x.asset_id,
        "due_time": d.due_time,
        "assignment_id": x.id,
        "policy_id": x.policy_id,
        "period": d.schedule.period.value,
        "backup_id": backup.id if backup else None,
        "skipped_reason": reason,
        "time_queued": wall_clock(),
    }


def _quota_room(ctx: Context, conn: Connection, tenancies: set[str]) -> dict[str, int]:
    return {t: ctx.settings.quota_backups - backups.count_live(conn, t) for t in tenancies}


def expire_due(ctx: Context, now: datetime | None = None) -> int:
    """Delete (TERMINATING, then a DELETE_BACKUP job) every backup whose expirationTime has
    passed, unless a retention lock, deletion prevention or legal hold still holds it, or a
    volume still reads it (a restore, or a hydration: then a later tick does it). Returns how
    many."""
    total = 0
    while True:
        at = now or wall_clock()
        with ctx.db.write() as conn:
            found = backups.expired(conn, at, BATCH)
            done = 0
            for b in found:
                if b.retention.blocker(b.id, at) or _read_by_a_volume(conn, b.id):
                    continue
                backups.move_backup(conn, b.id, "deleted")
                jobs.enqueue(conn, JobKind.DELETE_BACKUP, b.tenancy_id, b.id, lane=b.id)
                done += 1
        total += done
        if done:
            log.info("expiry deleted %d backups", done, extra={"expired": done})
        if len(found) < BATCH or done == 0:
            return total


def _read_by_a_volume(conn: Connection, backup_id: str) -> bool:
    """A restore still copies from the backup, or a volume restored from it still hydrates, or
    it is being copied to a region."""
    return bool(
        volumes.count_restoring_from(conn, backup_id)
        or volumes.hydrating_from(conn, backup_id)
        or workrequests.active_copies_of(conn, backup_id)
    )


def prune_runs(ctx: Context, now: datetime | None = None) -> int:
    with ctx.db.write() as conn:
        return policies.prune_runs(conn, (now or wall_clock()) - RUN_HISTORY)
