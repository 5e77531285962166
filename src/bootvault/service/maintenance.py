"""Maintenance jobs: garbage collection and verification of stored data."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from datetime import timedelta

from bootvault import metrics
from bootvault.domain.lifecycle import JOB_ENDED
from bootvault.domain.models import BackupState, Job, JobKind
from bootvault.engine.errors import DataMissing
from bootvault.engine.manifest import CorruptManifest
from bootvault.engine.restore import RestoreError
from bootvault.service.context import Context
from bootvault.store import backups, gc, jobs, locks
from bootvault.store.common import now

log = logging.getLogger("bootvault.maintenance")
SKEW_MARGIN = timedelta(minutes=5)  # clocks of different hosts and the condemn/read race
READERS = [JobKind.BACKUP, JobKind.RESTORE, JobKind.CLONE, JobKind.VERIFY]


@dataclass
class GcReport:
    scopes: int = 0
    live_blocks: int = 0
    condemned_packs: int = 0
    rescued_packs: int = 0
    deleted_packs: int = 0
    freed_bytes: int = 0
    repacked_packs: int = 0
    repacked_bytes: int = 0


@dataclass
class VerifyReport:
    checked: int = 0
    faulty: dict[str, str] = field(default_factory=dict)


@dataclass
class _Scope:
    live: list[str] = field(default_factory=list)  # backups whose blocks GC keeps
    pinned: list[str] = field(default_factory=list)  # of those, the locked or held ones


def _scopes(ctx: Context) -> dict[tuple[str, str | None], _Scope]:
    """(tenancy, kms key) -> its AVAILABLE backups, plus those of any backup a
    retention lock or legal hold still pins (whatever its state); every scope that held data."""
    groups: dict[tuple[str, str | None], _Scope] = defaultdict(_Scope)
    at = now()
    with ctx.db.read() as conn:
        for b in backups.all_backups(conn):
            scope = groups[(b.tenancy_id, b.kms_key_id)]
            pinned = b.retention.pinned(at) and b.lifecycle_state != BackupState.TERMINATED
            if b.lifecycle_state == BackupState.AVAILABLE or pinned:
                scope.live.append(b.id)
            if pinned:
                scope.pinned.append(b.id)
    return groups


def run_gc(ctx: Context) -> GcReport:
    report = GcReport()
    grace = timedelta(seconds=ctx.settings.gc_grace_seconds)
    for (tenancy_id, kms_key_id), scope in _scopes(ctx).items():
        repo = ctx.repository(tenancy_id, kms_key_id)  # with the packs condemned so far
        with ctx.db.read() as conn:
            oldest = jobs.oldest_running_start(conn, READERS)
        cutoff = now() - grace
        if oldest is not None:
            cutoff = min(cutoff, oldest - SKEW_MARGIN)
        result = repo.collect_garbage(scope.live, scope.pinned, cutoff)
        with ctx.db.write() as conn:
            gc.forget(conn, repo.scope, result.rescued | result.deleted)
            gc.condemn(conn, repo.scope, result.condemned, now())
        report.scopes += 1
        report.live_blocks += result.live_blocks
        report.condemned_packs += len(result.condemned)
        report.rescued_packs += len(result.rescued)
        report.deleted_packs += len(result.deleted)
        report.freed_bytes += result.deleted_bytes
        report.repacked_packs += result.repacked_packs
        report.repacked_bytes += result.repacked_bytes
    for name, value in asdict(report).items():
        metrics.GC.labels(name).inc(value)
    log.info("garbage collection finished", extra={"gc": asdict(report)})
    return report


def run_verify(ctx: Context, backup_id: str | None = None) -> VerifyReport:
    """Re-read every AVAILABLE backup (or one); a backup with missing or corrupt data goes FAULTY."""
    report = VerifyReport()
    with ctx.db.read() as conn:
        targets = [b for b in backups.all_backups(conn) if b.lifecycle_state == BackupState.AVAILABLE]
    if backup_id is not None:
        targets = [b for b in targets if b.id == backup_id]
    for b in targets:
        repo = ctx.repository(b.tenancy_id, b.kms_key_id)
        try:
            repo.verify(repo.manifest(b.id))
        except RestoreError as exc:
            _mark_faulty(ctx, b.id, f"Verification found damaged data: {exc}", report)
        except (DataMissing, CorruptManifest) as exc:  # a lost or damaged manifest is damage too
            _mark_faulty(ctx, b.id, f"Verification could not read the manifest: {exc}", report)
        # Any other store error (an outage) fails the verify job; it never condemns a backup.
        report.checked += 1
        metrics.VERIFY.labels("faulty" if b.id in report.faulty else "ok").inc()
    return report


def _mark_faulty(ctx: Context, backup_id: str, reason: str, report: VerifyReport) -> None:
    with ctx.db.write() as conn:
        current = backups.get_backup(conn, backup_id, lock=True)
        if current is None or current.lifecycle_state != BackupState.AVAILABLE:
            return  # deleted while being verified: its manifest is gone on purpose
        backups.move_backup(conn, backup_id, "failed", {"lifecycle_details": reason})
    log.warning("backup %s is damaged: %s", backup_id, reason)
    report.faulty[backup_id] = reason


def report_json(report: GcReport | VerifyReport) -> str:
    return json.dumps(asdict(report), sort_keys=True)


def schedule_due(ctx: Context) -> None:
    """Queue the periodic GC and verify jobs when they are due and none is queued or running."""
    for kind, every in (
        (JobKind.GC, ctx.settings.gc_interval_seconds),
        (JobKind.VERIFY, ctx.settings.verify_interval_seconds),
    ):
        if every <= 0:
            continue
        with ctx.db.write() as conn:
            locks.hold(conn, locks.Lock.MAINTENANCE_QUEUE)
            last = jobs.last_queued(conn, kind)
            if jobs.has_active(conn, kind) or (last is not None and last > now() - timedelta(seconds=every)):
                continue
            jobs.enqueue(conn, kind, "", kind.value.lower(), lane=_lane(kind))


def _lane(kind: JobKind) -> str:
    return f"maintenance:{kind.value.lower()}"  # one GC (or verify) at a time


def queue_now(ctx: Context, kind: JobKind, resource: str) -> str:
    """Queue a GC or verify job to run now (`bootvault gc`, `bootvault verify`); its id."""
    with ctx.db.write() as conn:
        return jobs.enqueue(conn, kind, "", resource, lane=_lane(kind))


def ended(ctx: Context, job_id: str) -> Job | None:
    """The job once it has ended (its result or last_error), else None."""
    with ctx.db.read() as conn:
        job = jobs.get(conn, job_id)
    return job if job.state in JOB_ENDED else None
