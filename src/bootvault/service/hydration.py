"""Instant restore: a volume restored from a backup is usable at once, its data read from the
backup on demand (pool/backing.py, backing_server.py) while a HYDRATE job restores the backup
locally and switches the volume onto that copy (pool/hydrate.py). The backup cannot be deleted
meanwhile (service/backups.py), so its packs stay live for GC."""

from __future__ import annotations

import logging
import time

from sqlalchemy import Connection

from bootvault.config import Settings
from bootvault.domain.models import BackupState, BootVolume, Job, JobKind, JobState, VolumeState
from bootvault.engine.errors import DataMissing
from bootvault.engine.manifest import CorruptManifest, Manifest
from bootvault.engine.reader import BackupReader
from bootvault.pool import PoolError, PoolVolume, hydrate
from bootvault.service import failures
from bootvault.service.context import Context
from bootvault.service.lease import JobFailed, Lease, finish_job
from bootvault.store import backups, jobs, volumes

log = logging.getLogger("bootvault.hydration")
THROTTLE_EVERY_S = 0.25
REPORT_EVERY_S = 0.5  # hydrationProgress is written at most this often
ON_DEMAND_BYTES = 256 << 10  # more than this read by the machine in THROTTLE_EVERY_S slows the copy
BUSY_HOLD_S = 2.0  # ... for this long after: a read is counted when it ends, and large ones take a while


def open_backup_reader(backup_id: str) -> BackupReader:
    """The reader behind a backing server (runs in nbdkit's process, settings from the environment)."""
    ctx = Context.open(Settings(), migrate=False)
    with ctx.db.read() as conn:
        backup = backups.get_backup(conn, backup_id)
    if backup is None:
        raise LookupError(f"backup {backup_id} not found")
    return ctx.repository(backup.tenancy_id, backup.kms_key_id).reader(backup.id)


def run_restore(ctx: Context, job: Job, lease: Lease) -> None:
    """RESTORE: the volume appears at once, reading from the backup; HYDRATE copies the rest."""
    with ctx.db.read() as conn:
        vol = volumes.get_volume(conn, job.resource_id)
        backup = backups.get_backup(conn, vol.source_id) if vol is not None and vol.source_id else None
    if vol is None or vol.lifecycle_state != VolumeState.RESTORING:
        finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)
        return
    if backup is None or backup.lifecycle_state != BackupState.AVAILABLE:
        raise JobFailed(f"The source backup {vol.source_id} is no longer AVAILABLE.")
    repo = ctx.repository(backup.tenancy_id, backup.kms_key_id)
    try:
        manifest = repo.manifest(backup.id)  # fails now, not at the first read, if it is damaged
    except (DataMissing, CorruptManifest) as exc:
        raise JobFailed(f"The manifest of backup {backup.id} cannot be read: {exc}") from exc
    if manifest.logical_size > vol.size_bytes:
        raise JobFailed(f"The backup holds {manifest.logical_size} bytes, more than the volume's size.")
    holes = _holes(manifest, vol.size_bytes)
    pool_volume = ctx.pool.volume(vol.availability_domain, vol.id)
    pool_volume.create_lazy(vol.size_bytes, backup.id, manifest.logical_size, holes)
    lease.check()
    values = {"is_hydrated": False, "hydration_percent": 0}

    def available(conn: Connection) -> None:
        volumes.move_volume(conn, vol.id, "filled", values)
        lane = f"hydrate:{vol.id}"  # not the volume's lane: backups need not wait for it
        jobs.enqueue(conn, JobKind.HYDRATE, vol.tenancy_id, vol.id, lane=lane, ad=vol.availability_domain)

    finish_job(ctx, job, lease, JobState.SUCCEEDED, available)


def _holes(manifest: Manifest, size: int) -> list[tuple[int, int]]:
    """The ranges of a new volume that the backup holds no data for (runs of zero blocks). Only
    within the backup's own size: beyond it (a volume restored larger than its backup) the backing
    server, whose size is the backup's, reads as zeros without any fetch, and marking that tail
    would cost the qcow2 metadata for every cluster of it (some 2.5 GB for 20,000 GB)."""
    holes, pos, bs = [], 0, manifest.block_size
    end = min(size, manifest.logical_size)
    for block in manifest.indices:
        if block * bs > pos:
            holes.append((pos, min(block * bs, end)))
        pos = (block + 1) * bs
    if pos < end:
        holes.append((pos, end))
    return [(start, stop) for start, stop in holes if start < stop]


def run_hydrate(ctx: Context, job: Job, lease: Lease) -> None:
    """HYDRATE: restore the backup into the volume's base, switch the volume onto it, and set
    isHydrated. A store outage or damaged data is tried again with back-off; after
    `hydrate_retries` failures the job fails and the volume goes FAULTY with the reason."""
    watch = _Watch(ctx, job, lease)
    while True:
        vol = watch.volume()
        if vol is None or vol.lifecycle_state != VolumeState.AVAILABLE or vol.is_hydrated:
            finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)  # deleted, or done
            return
        pool_volume = ctx.pool.volume(vol.availability_domain, vol.id)
        try:
            _make_local(ctx, vol, pool_volume, watch)
        except _Stopped:
            continue  # no longer AVAILABLE under the copy: the next look ends the job
        except Exception as exc:
            if not failures.retried_by_hydration(exc):  # service/failures.py: an outage may pass
                raise
            watch.failed(pool_volume, exc)
            continue
        _hydrated(ctx, job, lease, vol.id)
        return


def _make_local(ctx: Context, vol: BootVolume, pool_volume: PoolVolume, watch: _Watch) -> None:
    if not pool_volume.base_file.exists():
        with ctx.db.read() as conn:
            backup = backups.get_backup(conn, vol.source_id or "")
        if backup is None:
            raise JobFailed(f"The source backup {vol.source_id} of the volume is gone.")
        repo = ctx.repository(backup.tenancy_id, backup.kms_key_id)
        manifest = repo.manifest(backup.id)
        watch.begin(pool_volume)
        with hydrate.base_target(pool_volume) as tmp:
            repo.restore_to_file(manifest, tmp, progress=watch.progress)
    if not hydrate.switch_to_base(pool_volume):  # deleted meanwhile (the next look ends the job),
        raise PoolError(f"the volume file of {vol.id} is gone")  # or lost: a failure, bounded


def _hydrated(ctx: Context, job: Job, lease: Lease, volume_id: str) -> None:
    values = {"is_hydrated": True, "hydration_percent": 100}
    finish_job(
        ctx, job, lease, JobState.SUCCEEDED, lambda conn: volumes.update_volume(conn, volume_id, values)
    )
    log.info("volume %s is hydrated", volume_id, extra={"volume": volume_id})


class _Stopped(Exception):
    """The volume went away (deleted) while its base was being restored."""


class _Watch:
    """One hydration's progress, failures and throttle."""

    def __init__(self, ctx: Context, job: Job, lease: Lease) -> None:
        self.ctx, self.job, self.lease = ctx, job, lease
        self.failures = 0
        self.percent = -1
        self.checked = self.state_checked = self.reported = 0.0
        self.guest_seen, self.busy_until = 0, 0.0
        self.mark = (0.0, 0)  # (time, bytes done) the throttle counts from

    def volume(self) -> BootVolume | None:
        with self.ctx.db.read() as conn:
            return volumes.get_volume(conn, self.job.resource_id)

    def begin(self, pool_volume: PoolVolume) -> None:
        self.pool_volume = pool_volume
        self.guest_seen = pool_volume.backing.bytes_served()
        self.mark = (time.monotonic(), 0)

    def progress(self, done: int, total: int) -> None:
        """Called by the restore as it goes: stop if the job or the volume is gone; report
        progress; hold the copy back to the cap, or to the throttled rate while the machine
        reads on demand (every byte the backing server serves is the machine's)."""
        self.lease.check()
        now = time.monotonic()
        if now - self.state_checked >= 1.0:
            self.state_checked = now
            vol = self.volume()
            if vol is None or vol.lifecycle_state != VolumeState.AVAILABLE:
                raise _Stopped()
        rate = self._rate(now)
        since, done_then = self.mark
        pause = (done - done_then) / rate - (now - since) if rate else 0.0
        percent = min(99, done * 100 // max(1, total))
        if percent != self.percent and (pause > 0 or now - self.reported >= REPORT_EVERY_S):
            self.reported = now  # a database write: not at every 1 %, but before any pause
            self._set_percent(percent)
        if pause > 0:
            time.sleep(min(pause, 5.0))
        self.mark = (time.monotonic(), done)

    def _rate(self, now: float) -> int:
        """Bytes per second the copy may go at now (0: as fast as it can)."""
        if now - self.checked >= THROTTLE_EVERY_S:
            self.checked = now
            served = self.pool_volume.backing.bytes_served()
            if served - self.guest_seen > ON_DEMAND_BYTES:
                self.busy_until = now + BUSY_HOLD_S
            self.guest_seen = max(self.guest_seen, served)
        limits = [self.ctx.settings.hydrate_speed_bps]
        if now < self.busy_until:
            limits.append(self.ctx.settings.hydrate_throttled_bps)
        return min((r for r in limits if r), default=0)

    def failed(self, pool_volume: PoolVolume, exc: Exception) -> None:
        """Count a failure; back off, or give up when the retries are spent."""
        self.failures += 1
        log.warning("hydration of %s failed (%d): %s", self.job.resource_id, self.failures, exc)
        if self.failures > self.ctx.settings.hydrate_retries:
            cause = pool_volume.backing.last_failure()
            raise JobFailed(
                f"Hydration failed {self.failures} times; the backup could not be read: {exc}"
                + (f" ({cause})" if cause and cause not in str(exc) else "")
            ) from exc
        deadline = time.monotonic() + min(30.0, 2.0**self.failures)  # a store outage: back off
        while time.monotonic() < deadline:
            self.lease.check()
            time.sleep(0.2)

    def _set_percent(self, percent: int) -> None:
        if percent != self.percent:
            self.percent = percent
            with self.ctx.db.write() as conn:
                volumes.update_volume(conn, self.job.resource_id, {"hydration_percent": percent})
