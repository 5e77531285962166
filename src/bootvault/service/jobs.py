"""Job execution: what a worker does with a claimed job. Every handler is idempotent, so a job
whose worker died is simply run again by the next worker once the lease has expired."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Connection

from bootvault.blobstore import BlobStoreError, ObjectNotFound
from bootvault.domain.models import (
    BACKUP_IN_PROGRESS,
    BackupState,
    BackupType,
    Job,
    JobKind,
    JobState,
    VolumeState,
)
from bootvault.engine.backup import VolumeChanged, run_backup
from bootvault.engine.keys import KeyNotFound, KeyUnwrapError
from bootvault.engine.manifest import CorruptManifest, load_manifest
from bootvault.engine.restore import RestoreError, run_restore
from bootvault.engine.volumes import copy_volume, grow
from bootvault.service import maintenance
from bootvault.service.backups import manifest_name
from bootvault.service.context import Context
from bootvault.store import backups, jobs, volumes

log = logging.getLogger("bootvault.jobs")


class LeaseLost(Exception):
    """Another worker owns the job now: stop without touching its resource."""


class JobFailed(Exception):
    """The job cannot succeed; the message is the reason shown to users."""


class Lease:
    """The claim a worker holds on a job. The worker's heartbeat clears `held` when renewal fails."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.held = True

    def check(self) -> None:
        if not self.held:
            raise LeaseLost("the job's lease was lost")


def _finish(
    ctx: Context,
    job: Job,
    lease: Lease,
    state: JobState,
    apply: Callable[[Connection], None],
    error: str | None = None,
    result: str | None = None,
) -> None:
    """Record the outcome and the job's end in one transaction, only while we still own the job."""
    with ctx.db.write() as conn:
        if not jobs.finish(conn, job.id, lease.owner, state, error, result):
            raise LeaseLost("the job's lease was lost before it finished")
        apply(conn)


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


def _run_backup(ctx: Context, job: Job, lease: Lease) -> None:
    with ctx.db.write() as conn:
        backup = backups.get_backup(conn, job.resource_id)
        if backup is None or backup.lifecycle_state not in BACKUP_IN_PROGRESS:
            parent = None
        else:
            incremental = backup.type == BackupType.INCREMENTAL
            parent = (
                backups.latest_available(conn, backup.boot_volume_id, backup.kms_key_id)
                if incremental
                else None
            )
            volume = volumes.get_volume(conn, backup.boot_volume_id)
            backups.update_backup(
                conn, backup.id, {"lifecycle_state": BackupState.CREATING.value, "percent_complete": 0}
            )
    if backup is None or backup.lifecycle_state not in BACKUP_IN_PROGRESS or volume is None:
        _finish(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)
        return
    keys = ctx.keys.data_keys(backup.tenancy_id, backup.kms_key_id)
    parent_manifest = None
    if parent is not None:
        try:
            parent_manifest = load_manifest(ctx.store, keys, manifest_name(parent.id))
        except Exception:  # a damaged parent only costs speed: fall back to checking every block
            log.warning("parent manifest of %s unreadable; checking every block", backup.id)
    path = ctx.volume_path(volume.availability_domain, volume.id)
    if not path.exists():
        raise JobFailed(f"The boot volume's data file is missing from the volume pool ({path}).")
    try:
        result = run_backup(
            str(path),
            ctx.store,
            keys,
            manifest_name(backup.id),
            parent=parent_manifest,
            full=backup.type == BackupType.FULL,
            index=ctx.indexes.get(keys),
            exclude_packs=maintenance.condemned_packs(ctx, keys),
            block_size=ctx.settings.block_size,
            progress=_throttled_progress(ctx, backup.id, lease),
            workers=ctx.settings.engine_threads,
        )
    except VolumeChanged as exc:
        raise JobFailed(str(exc)) from exc
    values = {
        "lifecycle_state": BackupState.AVAILABLE.value,
        "percent_complete": 100,
        "time_created": result.image_time,
        "logical_size_bytes": result.logical_size,
        "unique_size_bytes": result.bytes_new,
        "lifecycle_details": None,
    }
    _finish(ctx, job, lease, JobState.SUCCEEDED, lambda conn: backups.update_backup(conn, backup.id, values))


def _fill_volume(ctx: Context, job: Job, lease: Lease, fill: Callable[[Path], None]) -> None:
    with ctx.db.read() as conn:
        vol = volumes.get_volume(conn, job.resource_id)
    if vol is None or vol.lifecycle_state not in (VolumeState.RESTORING, VolumeState.PROVISIONING):
        _finish(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)
        return
    target = ctx.volume_path(vol.availability_domain, vol.id)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".filling")
    fill(tmp)
    lease.check()
    grow(str(tmp), vol.size_bytes)
    os.replace(tmp, target)  # the volume file appears whole or not at all
    values = {"lifecycle_state": VolumeState.AVAILABLE.value, "is_hydrated": True, "lifecycle_details": None}
    _finish(ctx, job, lease, JobState.SUCCEEDED, lambda conn: volumes.update_volume(conn, vol.id, values))


def _run_restore(ctx: Context, job: Job, lease: Lease) -> None:
    def fill(tmp: Path) -> None:
        with ctx.db.read() as conn:
            vol = volumes.get_volume(conn, job.resource_id)
            assert vol is not None and vol.source_id is not None
            backup = backups.get_backup(conn, vol.source_id)
        if backup is None or backup.lifecycle_state != BackupState.AVAILABLE:
            raise JobFailed(f"The source backup {vol.source_id} is no longer AVAILABLE.")
        keys = ctx.keys.data_keys(backup.tenancy_id, backup.kms_key_id)
        try:
            manifest = load_manifest(ctx.store, keys, manifest_name(backup.id))
        except (ObjectNotFound, CorruptManifest) as exc:
            raise JobFailed(f"The manifest of backup {backup.id} cannot be read: {exc}") from exc
        try:
            run_restore(
                ctx.store,
                keys,
                manifest,
                str(tmp),
                index=ctx.indexes.get(keys),
                condemned=maintenance.condemned_packs(ctx, keys),
                progress=lambda d, t: lease.check(),
                workers=ctx.settings.engine_threads,
            )
        except RestoreError as exc:
            raise JobFailed(f"Restore of backup {backup.id} failed: {exc}") from exc

    _fill_volume(ctx, job, lease, fill)


def _run_clone(ctx: Context, job: Job, lease: Lease) -> None:
    def fill(tmp: Path) -> None:
        with ctx.db.read() as conn:
            vol = volumes.get_volume(conn, job.resource_id)
            assert vol is not None and vol.source_id is not None
            src = volumes.get_volume(conn, vol.source_id)
        if src is None or src.lifecycle_state != VolumeState.AVAILABLE:
            raise JobFailed(f"The source boot volume {vol.source_id} is no longer AVAILABLE.")
        copy_volume(
            str(ctx.volume_path(src.availability_domain, src.id)),
            str(tmp),
            progress=lambda d, t: lease.check(),
        )

    _fill_volume(ctx, job, lease, fill)


def _run_delete_backup(ctx: Context, job: Job, lease: Lease) -> None:
    # Blocks stay until garbage collection proves no other backup references them.
    ctx.store.delete(manifest_name(job.resource_id))
    values = {"lifecycle_state": BackupState.TERMINATED.value}
    _finish(
        ctx, job, lease, JobState.SUCCEEDED, lambda conn: backups.update_backup(conn, job.resource_id, values)
    )


def _run_delete_volume(ctx: Context, job: Job, lease: Lease) -> None:
    with ctx.db.read() as conn:
        vol = volumes.get_volume(conn, job.resource_id)
    if vol is not None:
        ctx.volume_path(vol.availability_domain, vol.id).unlink(missing_ok=True)
    values = {"lifecycle_state": VolumeState.TERMINATED.value}
    _finish(
        ctx, job, lease, JobState.SUCCEEDED, lambda conn: volumes.update_volume(conn, job.resource_id, values)
    )


def _run_gc(ctx: Context, job: Job, lease: Lease) -> None:
    report = maintenance.report_json(maintenance.run_gc(ctx))
    _finish(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None, result=report)


def _run_verify(ctx: Context, job: Job, lease: Lease) -> None:
    only = None if job.resource_id == "verify" else job.resource_id
    report = maintenance.report_json(maintenance.run_verify(ctx, only))
    _finish(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None, result=report)


HANDLERS: dict[JobKind, Callable[[Context, Job, Lease], None]] = {
    JobKind.BACKUP: _run_backup,
    JobKind.RESTORE: _run_restore,
    JobKind.CLONE: _run_clone,
    JobKind.DELETE_BACKUP: _run_delete_backup,
    JobKind.DELETE_VOLUME: _run_delete_volume,
    JobKind.GC: _run_gc,
    JobKind.VERIFY: _run_verify,
}


def mark_faulty(conn: Connection, job: Job, reason: str) -> None:
    """Put the job's resource into FAULTY with a reason a user can read."""
    values = {"lifecycle_state": "FAULTY", "lifecycle_details": reason}
    if job.kind in (JobKind.GC, JobKind.VERIFY):
        return  # no resource of its own: the job's last_error carries the reason
    if job.kind in (JobKind.BACKUP, JobKind.DELETE_BACKUP):
        backups.update_backup(conn, job.resource_id, values)
    else:
        volumes.update_volume(conn, job.resource_id, values)


def execute(ctx: Context, job: Job, lease: Lease) -> None:
    """Run one claimed job to its end: success, or FAULTY with a reason. Never raises but LeaseLost."""
    if job.attempts > ctx.settings.max_job_attempts:
        died = job.attempts - 1
        reason = (
            f"Gave up after {died} attempt{'s' if died != 1 else ''}: the worker running this job "
            "stopped each time before it finished."
        )
        _finish(ctx, job, lease, JobState.FAILED, lambda conn: mark_faulty(conn, job, reason), reason)
        return
    try:
        HANDLERS[job.kind](ctx, job, lease)
    except LeaseLost:
        raise
    except JobFailed as exc:
        reason = str(exc)
        _finish(ctx, job, lease, JobState.FAILED, lambda conn: mark_faulty(conn, job, reason), reason)
    except Exception as exc:
        reason = _explain(job, exc)
        _finish(ctx, job, lease, JobState.FAILED, lambda conn: mark_faulty(conn, job, reason), reason)


def _explain(job: Job, exc: Exception) -> str:
    """A sentence for users: the object store and the keys fail in known ways; the rest is a bug."""
    if isinstance(exc, BlobStoreError):
        return f"The object store failed: {exc}"
    if isinstance(exc, (KeyNotFound, KeyUnwrapError)):
        return f"The encryption key is unavailable: {exc}"
    if isinstance(exc, OSError):
        return f"A volume pool file could not be accessed: {exc}"
    log.exception("job %s (%s) failed", job.id, job.kind)
    return f"Internal error while running the {job.kind.lower()} job: {type(exc).__name__}: {exc}"
