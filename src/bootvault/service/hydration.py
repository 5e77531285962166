"""Instant restore: a volume restored from a backup is usable at once, its data read from the
backup on demand (pool/backing.py, backing_server.py) while a HYDRATE job copies the rest
(pool/hydrate.py). The backup cannot be deleted meanwhile (service/backups.py), so its packs
stay live for GC."""

from __future__ import annotations

import contextlib
import logging
import time

from sqlalchemy import Connection

from bootvault.blobstore import ObjectNotFound
from bootvault.config import Settings
from bootvault.domain.models import BackupState, BootVolume, Job, JobKind, JobState, VolumeState
from bootvault.engine.manifest import CorruptManifest, Manifest
from bootvault.engine.reader import BackupReader
from bootvault.pool import PoolError, PoolVolume, hydrate
from bootvault.service.context import Context
from bootvault.service.lease import JobFailed, Lease, finish_job
from bootvault.store import backups, jobs, volumes

log = logging.getLogger("bootvault.hydration")
POLL_S = 0.5
ON_DEMAND_BYTES = 256 << 10  # per poll: more than this read by the machine slows the copy


def open_backup_reader(backup_id: str) -> BackupReader:
    """The reader behind a backing server (runs in nbdkit's process, settings from the environment)."""
    ctx = Context.open(Settings(), migrate=False)
    with ctx.db.read() as conn:
        backup = backups.get_backup(conn, backup_id)
    if backup is None:
        raise LookupError(f"backup {backup_id} not found")
    repo = ctx.repository(backup.tenancy_id, backup.kms_key_id)
    repo.index.refresh(repo.store, demote=repo.condemned)
    return BackupReader(repo.store, repo.keys, repo.index, repo.manifest(backup.id))


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
    except (ObjectNotFound, CorruptManifest) as exc:
        raise JobFailed(f"The manifest of backup {backup.id} cannot be read: {exc}") from exc
    if manifest.logical_size > vol.size_bytes:
        raise JobFailed(f"The backup holds {manifest.logical_size} bytes, more than the volume's size.")
    holes = _holes(manifest, vol.size_bytes)
    ctx.pool.volume(vol.availability_domain, vol.id).create_lazy(vol.size_bytes, backup.id, holes)
    lease.check()
    values = {"lifecycle_state": VolumeState.AVAILABLE.value, "is_hydrated": False, "hydration_percent": 0}

    def available(conn: Connection) -> None:
        volumes.update_volume(conn, vol.id, values)
        lane = f"hydrate:{vol.id}"  # not the volume's lane: backups need not wait for it
        jobs.enqueue(conn, JobKind.HYDRATE, vol.tenancy_id, vol.id, lane=lane, ad=vol.availability_domain)

    finish_job(ctx, job, lease, JobState.SUCCEEDED, available)


def _holes(manifest: Manifest, size: int) -> list[tuple[int, int]]:
    """The ranges of a new volume that the backup holds no data for (runs of zero blocks)."""
    holes, pos, bs = [], 0, manifest.block_size
    for block in manifest.indices:
        if block * bs > pos:
            holes.append((pos, block * bs))
        pos = (block + 1) * bs
    if pos < size:
        holes.append((pos, size))
    return holes


def run_hydrate(ctx: Context, job: Job, lease: Lease) -> None:
    """HYDRATE: start QEMU's copy, watch it, yield to the machine's reads, finish or give up."""
    watch = _Watch(ctx, job)
    while True:
        lease.check()
        vol = watch.volume()
        if vol is None or vol.lifecycle_state != VolumeState.AVAILABLE or vol.is_hydrated:
            finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)  # deleted, or done
            return
        pool_volume = ctx.pool.volume(vol.availability_domain, vol.id)
        state = watch.step(pool_volume)
        if state.done:
            hydrate.finish(pool_volume)
            _hydrated(ctx, job, lease, vol.id)
            return
        time.sleep(watch.pause)


def _hydrated(ctx: Context, job: Job, lease: Lease, volume_id: str) -> None:
    values = {"is_hydrated": True, "hydration_percent": 100}
    finish_job(
        ctx, job, lease, JobState.SUCCEEDED, lambda conn: volumes.update_volume(conn, volume_id, values)
    )
    log.info("volume %s is hydrated", volume_id, extra={"volume": volume_id})


class _Watch:
    """One hydration's progress, failures and throttle, between polls."""

    def __init__(self, ctx: Context, job: Job) -> None:
        self.ctx, self.job = ctx, job
        self.failures, self.pause = 0, POLL_S
        self.speed = self.cap = ctx.settings.hydrate_speed_bps
        self.served = self.copied = -1
        self.percent = -1

    def volume(self) -> BootVolume | None:
        with self.ctx.db.read() as conn:
            return volumes.get_volume(conn, self.job.resource_id)

    def step(self, pool_volume: PoolVolume) -> hydrate.HydrationStatus:
        try:
            hydrate.start(pool_volume, self.speed)
            state = hydrate.status(pool_volume)
        except PoolError as exc:
            state = hydrate.HydrationStatus(False, False, error=str(exc))
        if state.error:
            self.failures += 1
            log.warning("hydration of %s failed (%d): %s", self.job.resource_id, self.failures, state.error)
            if self.failures > self.ctx.settings.hydrate_retries:
                raise JobFailed(
                    f"Hydration failed {self.failures} times; the backup could not be read: {state.error}"
                )
            self.pause = min(30.0, 2.0**self.failures)  # a store outage: back off, then retry
            return state
        self.pause = POLL_S
        self._progress(state)
        self._throttle(pool_volume, state)
        return state

    def _progress(self, state: hydrate.HydrationStatus) -> None:
        percent = min(99, state.copied * 100 // state.total) if state.total else 0
        if percent != self.percent:
            self.percent = percent
            with self.ctx.db.write() as conn:
                volumes.update_volume(conn, self.job.resource_id, {"hydration_percent": percent})

    def _throttle(self, pool_volume: PoolVolume, state: hydrate.HydrationStatus) -> None:
        """The backing server counts every byte it serves; what the copy did not read, the
        machine did. While the machine reads on demand, the copy slows down for it."""
        served = pool_volume.backing.bytes_served()
        if self.served >= 0 and served >= self.served:
            on_demand = (served - self.served) - max(0, state.copied - self.copied)
            wanted = self.ctx.settings.hydrate_throttled_bps if on_demand > ON_DEMAND_BYTES else 0
            if self.cap and (wanted == 0 or wanted > self.cap):
                wanted = self.cap
            if wanted != self.speed:
                with contextlib.suppress(PoolError):
                    hydrate.set_speed(pool_volume, wanted)
                self.speed = wanted
        self.served, self.copied = served, state.copied
