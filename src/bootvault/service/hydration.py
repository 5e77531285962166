"""Instant restore: a volume restored from a backup is usable at once, its data read from the
backup on demand (pool/backing.py, backing_server.py) while a HYDRATE job copies the rest
(pool/hydrate.py). The backup cannot be deleted meanwhile (service/backups.py), so its packs
stay live for GC."""

from __future__ import annotations

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
POLL_S = 0.2
THROTTLE_EVERY_S = 0.25
ON_DEMAND_BYTES = 256 << 10  # more than this read by the machine in THROTTLE_EVERY_S slows the copy


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
    """HYDRATE: copy the backup's data in parallel (prefill), then let QEMU's stream job check
    that nothing is left and drop the backing; watch, throttle, finish or give up."""
    watch = _Watch(ctx, job, lease)
    vol = watch.volume()
    if vol is not None and vol.lifecycle_state == VolumeState.AVAILABLE and not vol.is_hydrated:
        watch.prefill(ctx.pool.volume(vol.availability_domain, vol.id), vol)
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


class _Stopped(Exception):
    """The volume went away (deleted) while it was being prefilled."""


class _Watch:
    """One hydration's progress, failures and throttle."""

    def __init__(self, ctx: Context, job: Job, lease: Lease) -> None:
        self.ctx, self.job, self.lease = ctx, job, lease
        self.failures, self.pause = 0, POLL_S
        self.cap = ctx.settings.hydrate_speed_bps
        self.percent = -1
        self.total = 0
        self.checked = self.state_checked = 0.0
        self.guest_seen, self.chunk_pause = 0, 0.0
        self.restart_error: str | None = None

    def volume(self) -> BootVolume | None:
        with self.ctx.db.read() as conn:
            return volumes.get_volume(conn, self.job.resource_id)

    # -- prefill ---------------------------------------------------------------------------

    def prefill(self, pool_volume: PoolVolume, vol: BootVolume) -> None:
        try:
            ranges = self._data_ranges(vol)
        except Exception as exc:  # the stream job copies everything then, on its own
            log.warning("no prefill for %s: %s", vol.id, exc)
            return
        self.total = sum(end - start for start, end in ranges)
        self.pool_volume = pool_volume
        prefill = hydrate.Prefill(pool_volume, ranges)
        try:
            prefill.open()
            try:
                prefill.run(self._between_chunks)
            finally:
                prefill.close()
        except _Stopped:
            return
        except PoolError as exc:  # counted; the stream job copies what is left
            self.failures += 1
            self.restart_error = str(exc)
            log.warning("prefill of %s failed: %s", vol.id, exc)

    def _data_ranges(self, vol: BootVolume) -> list[tuple[int, int]]:
        with self.ctx.db.read() as conn:
            backup = backups.get_backup(conn, vol.source_id or "")
        if backup is None:
            raise LookupError(f"source backup {vol.source_id} not found")
        manifest = self.ctx.repository(backup.tenancy_id, backup.kms_key_id).manifest(backup.id)
        holes = _holes(manifest, vol.size_bytes)
        data, pos = [], 0
        for start, end in holes:
            if start > pos:
                data.append((pos, start))
            pos = end
        if pos < vol.size_bytes:
            data.append((pos, vol.size_bytes))
        return data

    def _between_chunks(self, prefill: hydrate.Prefill) -> float:
        """Asked by the prefill's readers: stop if the job or the volume is gone; report
        progress; pause while the machine reads on demand (the backing server counts every
        byte it serves; those the prefill did not read, the machine did)."""
        self.lease.check()
        now = time.monotonic()
        if now - self.checked < THROTTLE_EVERY_S:
            return self.chunk_pause
        self.checked = now
        if now - self.state_checked >= 1.0:
            self.state_checked = now
            vol = self.volume()
            if vol is None or vol.lifecycle_state != VolumeState.AVAILABLE:
                raise _Stopped()
        self._set_percent(min(99, prefill.read * 100 // max(1, self.total)))
        guest = self.pool_volume.backing.bytes_served() - prefill.read
        busy = guest - self.guest_seen > ON_DEMAND_BYTES
        self.guest_seen = max(self.guest_seen, guest)
        rate = self.ctx.settings.hydrate_throttled_bps if busy else 0
        if self.cap and (rate == 0 or rate > self.cap):
            rate = self.cap
        self.chunk_pause = prefill.connections * hydrate.CHUNK / rate if rate else 0.0
        return self.chunk_pause

    # -- stream ----------------------------------------------------------------------------

    def step(self, pool_volume: PoolVolume) -> hydrate.HydrationStatus:
        """Look first (no lock: a view may hold it while it waits for this very job), start or
        restart only when nothing runs: not started yet, the job failed, the daemon died."""
        try:
            state = hydrate.status(pool_volume)
            if not state.done and not state.running and not state.error:
                hydrate.start(pool_volume, self.cap)
                state = hydrate.status(pool_volume)
        except PoolError as exc:
            state = hydrate.HydrationStatus(False, False, error=str(exc))
        if state.error:
            self.failures += 1
            log.warning("hydration of %s failed (%d): %s", self.job.resource_id, self.failures, state.error)
            if self.failures > self.ctx.settings.hydrate_retries:
                cause = pool_volume.backing.last_failure() or self.restart_error
                raise JobFailed(
                    f"Hydration failed {self.failures} times; the backup could not be read: {state.error}"
                    + (f" ({cause})" if cause else "")
                )
            self.pause = min(30.0, 2.0**self.failures)  # a store outage: back off, then retry
            try:
                hydrate.start(pool_volume, self.cap)  # the retry (the daemon again, the job again)
            except PoolError as exc:  # said in the reason if the retries run out
                self.restart_error = str(exc)
                log.warning("hydration of %s could not restart: %s", self.job.resource_id, exc)
            return state
        self.pause = POLL_S
        if state.total:
            self._set_percent(max(self.percent, min(99, state.copied * 100 // state.total)))
        return state

    def _set_percent(self, percent: int) -> None:
        if percent != self.percent:
            self.percent = percent
            with self.ctx.db.write() as conn:
                volumes.update_volume(conn, self.job.resource_id, {"hydration_percent": percent})
