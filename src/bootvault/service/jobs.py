"""Job execution: what a worker does with a claimed job. Every handler is idempotent, so a job
whose worker died is simply run again by the next worker once the lease has expired."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Connection

from bootvault import metrics
from bootvault.domain.errors import Conflict
from bootvault.domain.lifecycle import BACKUP, VOLUME
from bootvault.domain.models import (
    BackupState,
    BackupType,
    BootVolume,
    BootVolumeBackup,
    Job,
    JobKind,
    JobState,
    VolumeState,
)
from bootvault.engine.errors import EngineError, StorageError
from bootvault.engine.manifest import Manifest
from bootvault.engine.repository import Repository
from bootvault.service import copy, failures, hydration, maintenance, regions
from bootvault.service.context import Context, transient_database_error
from bootvault.service.lease import JobFailed, Lease, LeaseLost, finish_job
from bootvault.service.regionlink import RegionRefused, RegionUnreachable
from bootvault.store import backups, jobs, volumes, workrequests
from bootvault.store.common import now

log = logging.getLogger("bootvault.jobs")


def _throttled_progress(ctx: Context, backup_id: str, lease: Lease) -> Callable[[int, int], None]:
    last = {"pct": -1, "at": 0.0}

    def report(done: int, total: int) -> None:
        lease.check()
        pct = min(99, done * 100 // total) if total else 99
        at = time.monotonic()
        if pct != last["pct"] and (pct - last["pct"] >= 5 or at - last["at"] >= 1.0):
            last.update(pct=pct, at=at)
            with ctx.db.write() as conn:
                backups.update_backup(conn, backup_id, {"percent_complete": pct})

    return report


def _start_backup(
    ctx: Context, job: Job
) -> tuple[BootVolumeBackup, BootVolumeBackup | None, BootVolume] | None:
    """Move the backup to CREATING; None if there is nothing (left) to do."""
    with ctx.db.write() as conn:
        backup = backups.get_backup(conn, job.resource_id)
        if backup is None or not BACKUP.allows("started", backup.lifecycle_state):
            return None
        volume = volumes.get_volume(conn, backup.boot_volume_id)
        if volume is None:
            return None
        parent = None
        if backup.type == BackupType.INCREMENTAL:
            parent = backups.latest_available(conn, backup.boot_volume_id, backup.kms_key_id)
        backups.move_backup(conn, backup.id, "started", {"percent_complete": 0})
    return backup, parent, volume


def _parent_manifest(repo: Repository, parent: BootVolumeBackup | None) -> Manifest | None:
    if parent is None:
        return None
    try:
        return repo.manifest(parent.id)
    except (EngineError, StorageError) as exc:  # costs speed only: read and check every block
        log.warning("parent manifest of %s unreadable (%s); reading the whole volume", parent.id, exc)
        return None


def _run_backup(ctx: Context, job: Job, lease: Lease) -> None:
    started = _start_backup(ctx, job)
    if started is None:
        finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)
        return
    backup, parent, volume = started
    repo = ctx.repository(backup.tenancy_id, backup.kms_key_id)
    parent_manifest = _parent_manifest(repo, parent)
    pool_volume = ctx.pool.volume(volume.availability_domain, volume.id)
    with pool_volume.backup_view(
        backup.id,
        job.attempts,
        parent.id if parent is not None and parent_manifest is not None else None,
        incremental=backup.type == BackupType.INCREMENTAL,
        attached=volume.attachment_uri is not None,
    ) as view:
        if backup.type == BackupType.INCREMENTAL and not view.plan.incremental:
            log.warning("backup %s reads the whole volume: %s", backup.id, view.plan.reason)
        imaged = {"time_imaged": view.instant, **_expiry(backup, view.instant)}
        with ctx.db.write() as conn:  # timeCreated appears with the image, while CREATING
            backups.update_backup(conn, backup.id, imaged)
        result = repo.backup(
            view.source,
            backup.id,
            parent=parent_manifest,
            full=backup.type == BackupType.FULL,
            progress=_throttled_progress(ctx, backup.id, lease),
        )
        metrics.BACKUP_BYTES.labels("read").inc(result.bytes_read)
        metrics.BACKUP_BYTES.labels("stored").inc(result.bytes_new)
        metrics.BACKUP_BYTES.labels("deduplicated").inc(result.bytes_deduplicated)
        log.info(
            "backup %s read %d bytes (%s)",
            backup.id,
            result.bytes_read,
            "changed since parent" if view.plan.incremental else "allocated",
            extra={"bytes_read": result.bytes_read, "bytes_new": result.bytes_new},
        )
        values = {
            **imaged,
            "percent_complete": 100,
            "logical_size_bytes": result.logical_size,
            "unique_size_bytes": result.bytes_new,
            "lifecycle_details": None,
        }

        def done(conn: Connection) -> None:
            backups.move_backup(conn, backup.id, "completed", values)
            current = backups.get_backup(conn, backup.id)  # a lock may have come while it ran
            if current is not None and current.retention.locked(now()):  # objects get its date
                jobs.enqueue(conn, JobKind.RETAIN, backup.tenancy_id, backup.id, lane=backup.id)

        finish_job(ctx, job, lease, JobState.SUCCEEDED, done)
        view.committed = True  # only now may the older bitmaps go


def _expiry(backup: BootVolumeBackup, instant: datetime) -> dict[str, datetime]:
    """A scheduled backup expires its schedule's retention after the image's instant."""
    if backup.schedule_retention_seconds is None:
        return {}
    return {"expiration_time": instant + timedelta(seconds=backup.schedule_retention_seconds)}


def _fill_job(ctx: Context, job: Job, lease: Lease, fill: Callable[[BootVolume, str], None]) -> None:
    """Create the volume of a RESTORE or CLONE job with fill(volume, source id), then AVAILABLE."""
    with ctx.db.read() as conn:
        vol = volumes.get_volume(conn, job.resource_id)
    if vol is None or vol.source_id is None or not VOLUME.allows("filled", vol.lifecycle_state):
        finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)
        return
    fill(vol, vol.source_id)
    lease.check()
    values = {"is_hydrated": True, "lifecycle_details": None}
    finish_job(
        ctx, job, lease, JobState.SUCCEEDED, lambda conn: volumes.move_volume(conn, vol.id, "filled", values)
    )


def _run_clone(ctx: Context, job: Job, lease: Lease) -> None:
    def clone(vol: BootVolume, source_id: str) -> None:
        with ctx.db.read() as conn:
            src = volumes.get_volume(conn, source_id)
        if src is None or src.lifecycle_state != VolumeState.AVAILABLE:
            raise JobFailed(f"The source boot volume {source_id} is no longer AVAILABLE.")
        source = ctx.pool.volume(src.availability_domain, src.id)
        ctx.pool.volume(vol.availability_domain, vol.id).clone_from(source, vol.size_bytes)

    _fill_job(ctx, job, lease, clone)


def _run_resize(ctx: Context, job: Job, lease: Lease) -> None:
    with ctx.db.read() as conn:
        vol = volumes.get_volume(conn, job.resource_id)
    if vol is not None and vol.lifecycle_state == VolumeState.PROVISIONING:
        ctx.pool.volume(vol.availability_domain, vol.id).grow(vol.size_bytes)
    values = {"lifecycle_details": None}
    finish_job(
        ctx,
        job,
        lease,
        JobState.SUCCEEDED,
        lambda conn: volumes.move_volume(conn, job.resource_id, "grown", values),
    )


def _run_delete_backup(ctx: Context, job: Job, lease: Lease) -> None:
    # Blocks stay until garbage collection proves no other backup references them.
    ctx.repositories.delete_manifest(job.resource_id)
    finish_job(
        ctx,
        job,
        lease,
        JobState.SUCCEEDED,
        lambda conn: backups.move_backup(conn, job.resource_id, "terminated"),
    )


def _run_delete_volume(ctx: Context, job: Job, lease: Lease) -> None:
    with ctx.db.read() as conn:
        vol = volumes.get_volume(conn, job.resource_id)
    if vol is not None:
        ctx.pool.volume(vol.availability_domain, vol.id).delete()
    finish_job(
        ctx,
        job,
        lease,
        JobState.SUCCEEDED,
        lambda conn: volumes.move_volume(conn, job.resource_id, "terminated"),
    )


def _run_retain(ctx: Context, job: Job, lease: Lease) -> None:
    """Give a locked backup's objects (manifest, packs, their index objects) an object-store
    retention date equal to the lock's end, where the store supports it (S3 Object Lock)."""
    with ctx.db.read() as conn:
        backup = backups.get_backup(conn, job.resource_id)
    result = "nothing to do"
    if (
        backup is not None
        and backup.lifecycle_state == BackupState.AVAILABLE
        and backup.retention.locked(now())
    ):
        assert backup.retention.expires_at is not None
        repo = ctx.repository(backup.tenancy_id, backup.kms_key_id)
        result = repo.retain(backup.id, backup.retention.expires_at)
    finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None, result=result)


def _run_gc(ctx: Context, job: Job, lease: Lease) -> None:
    report = maintenance.report_json(maintenance.run_gc(ctx))
    finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None, result=report)


def _run_verify(ctx: Context, job: Job, lease: Lease) -> None:
    only = None if job.resource_id == "verify" else job.resource_id
    report = maintenance.report_json(maintenance.run_verify(ctx, only))
    finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None, result=report)


def _run_identity_sync(ctx: Context, job: Job, lease: Lease) -> None:
    try:
        added = regions.push_identity(ctx, job.resource_id)
    except (RegionUnreachable, RegionRefused) as exc:  # `bootvault region sync` pushes again
        raise JobFailed(f"Identity could not be pushed to region {job.resource_id}: {exc.message}") from None
    finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None, result=json.dumps({"added": added}))


HANDLERS: dict[JobKind, Callable[[Context, Job, Lease], None]] = {
    JobKind.BACKUP: _run_backup,
    JobKind.RESTORE: hydration.run_restore,
    JobKind.HYDRATE: hydration.run_hydrate,
    JobKind.CLONE: _run_clone,
    JobKind.DELETE_BACKUP: _run_delete_backup,
    JobKind.DELETE_VOLUME: _run_delete_volume,
    JobKind.RESIZE: _run_resize,
    JobKind.GC: _run_gc,
    JobKind.VERIFY: _run_verify,
    JobKind.RETAIN: _run_retain,
    JobKind.COPY: copy.run_copy,
    JobKind.IDENTITY_SYNC: _run_identity_sync,
}


def mark_faulty(conn: Connection, job: Job, reason: str) -> None:
    """Put the job's resource into FAULTY with a reason a user can read."""
    values = {"lifecycle_details": reason}
    if job.kind in (JobKind.GC, JobKind.VERIFY, JobKind.RETAIN, JobKind.IDENTITY_SYNC):
        return  # no resource state of its own: the job's last_error carries the reason
    if job.kind == JobKind.COPY:
        copy.fail_work_request(conn, job, reason)
        return  # the copy's work request carries the reason (the copy itself is the destination's)
    try:
        if job.kind in (JobKind.BACKUP, JobKind.DELETE_BACKUP):
            backups.move_backup(conn, job.resource_id, "failed", values)
        else:
            volumes.move_volume(conn, job.resource_id, "failed", values)
    except Conflict as exc:  # gone, or moved on meanwhile: the job's last_error keeps the reason
        log.warning("job %s failed, its resource not marked FAULTY: %s", job.id, exc)


def execute(ctx: Context, job: Job, lease: Lease) -> None:
    """Run one claimed job to its end: success, or FAULTY with a reason. Never raises but LeaseLost."""
    if job.attempts > ctx.settings.max_job_attempts:
        died = job.attempts - 1
        reason = (
            f"Gave up after {died} attempt{'s' if died != 1 else ''}: the worker running this job "
            "stopped each time before it finished."
        )
        finish_job(ctx, job, lease, JobState.FAILED, lambda conn: mark_faulty(conn, job, reason), reason)
        _after_failure(ctx, job, reason)
        return
    started = time.monotonic()
    outcome = "failed"
    if job.kind in (JobKind.BACKUP, JobKind.RESTORE, JobKind.CLONE, JobKind.DELETE_VOLUME):
        with ctx.db.write() as conn:  # the work request of the call that queued it: IN_PROGRESS
            workrequests.follow(conn, job.resource_id, None)
    try:
        HANDLERS[job.kind](ctx, job, lease)
        outcome = "succeeded"
    except LeaseLost:
        outcome = "lease_lost"
        raise
    except JobFailed as exc:
        reason = str(exc)
        finish_job(ctx, job, lease, JobState.FAILED, lambda conn: mark_faulty(conn, job, reason), reason)
        _after_failure(ctx, job, reason)
    except Exception as exc:
        if transient_database_error(exc):
            # The database went away mid-job (a restart, a terminated backend): as when a worker
            # dies, the job is claimed again once its lease runs out (its attempts still count).
            outcome = "database_unreachable"
            log.warning("job %s: the database is unreachable; left for another attempt: %s", job.id, exc)
            return
        reason = _explain(job, exc)
        finish_job(ctx, job, lease, JobState.FAILED, lambda conn: mark_faulty(conn, job, reason), reason)
        _after_failure(ctx, job, reason)
    finally:
        metrics.JOBS.labels(job.kind.value, outcome).inc()
        metrics.JOB_SECONDS.labels(job.kind.value).observe(time.monotonic() - started)


def _after_failure(ctx: Context, job: Job, reason: str) -> None:
    """What a failed job must tell outside its transaction: a copy's destination region."""
    if job.kind == JobKind.COPY:
        copy.tell_destination(ctx, job, reason)


def _explain(job: Job, exc: Exception) -> str:
    """A sentence for users (service/failures.py's table); the unforeseen is a bug, logged."""
    reason = failures.job_reason(exc)
    if reason is not None:
        return reason
    log.exception("job %s (%s) failed", job.id, job.kind)
    return f"Internal error while running the {job.kind.lower()} job: {type(exc).__name__}: {exc}"
