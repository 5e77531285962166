"""Operator-side volume commands: import an image, serve a volume (attach/detach), export it."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from bootvault.domain import ocid
from bootvault.domain.errors import IncorrectState, InvalidArgument, NotFound
from bootvault.domain.models import BootVolume, VolumeState
from bootvault.domain.validation import check_display_name
from bootvault.pool.qemuimg import probe_import
from bootvault.service import failures, quotas
from bootvault.service.context import Context
from bootvault.service.volumes import MAX_GBS, check_availability_domain, size_gbs_for
from bootvault.store import backups, identity
from bootvault.store import volumes as repo
from bootvault.store.common import new_etag, now

Progress = Callable[[int, int], None]
log = logging.getLogger("bootvault.volumes")


def import_volume(
    ctx: Context,
    compartment_id: str,
    image: Path,
    *,
    availability_domain: str | None = None,
    display_name: str | None = None,
    progress: Progress | None = None,
) -> BootVolume:
    """Register a raw or qcow2 image as an AVAILABLE boot volume (size rounded up to whole GiB)."""
    check_display_name(display_name)
    if not image.is_file():
        raise InvalidArgument(f"{image} is not a readable file.")
    ad = availability_domain or ctx.settings.availability_domains[0]
    check_availability_domain(ctx, ad)
    with ctx.db.read() as conn:
        comp = identity.get_compartment(conn, compartment_id)
    if comp is None:
        raise NotFound(f"Compartment {compartment_id} not found.")
    with failures.pool_refusals():
        size_gbs = size_gbs_for(probe_import(image).virtual_size)
        if size_gbs > MAX_GBS:
            raise InvalidArgument(f"{image} needs {size_gbs} GB; a boot volume holds at most {MAX_GBS} GB.")
        with ctx.db.write() as conn:  # refuse before copying anything (checked again at insert)
            quotas.check_volumes(ctx, conn, comp.tenancy_id, new=1, added_gbs=size_gbs)
        volume_id = ocid.mint("bootvolume", ctx.settings.region)
        # The file is complete (tmp + rename) before the row exists, so a crash leaves no half volume.
        ctx.pool.volume(ad, volume_id).import_image(image, size_gbs << 30, progress)
    vol = BootVolume(
        id=volume_id,
        tenancy_id=comp.tenancy_id,
        compartment_id=compartment_id,
        availability_domain=ad,
        display_name=display_name or image.name,
        lifecycle_state=VolumeState.AVAILABLE,
        size_in_gbs=size_gbs,
        time_created=now(),
        etag=new_etag(),
    )
    try:
        with ctx.db.write() as conn:
            quotas.check_volumes(ctx, conn, comp.tenancy_id, new=1, added_gbs=size_gbs)
            repo.insert_volume(conn, vol)
    except BaseException:
        ctx.pool.volume(ad, volume_id).delete()  # a file without a row would never be reclaimed
        raise
    return vol


def _volume(ctx: Context, volume_id: str) -> BootVolume:
    with ctx.db.read() as conn:
        vol = repo.get_volume(conn, volume_id)
    if vol is None:
        raise NotFound(f"Boot volume {volume_id} not found.")
    return vol


def require_backup(ctx: Context, backup_id: str) -> None:
    """Admin commands name backups by id: an unknown one is an error, not an empty run."""
    with ctx.db.read() as conn:
        if backups.get_backup(conn, backup_id) is None:
            raise NotFound(f"Boot volume backup {backup_id} not found.")


def volume_file(ctx: Context, volume_id: str) -> Path:
    """The qcow2 file behind a volume (for inspection: attach it to serve it)."""
    vol = _volume(ctx, volume_id)
    return ctx.pool.volume(vol.availability_domain, vol.id).path


def attach(ctx: Context, volume_id: str) -> str:
    """Serve the volume read-write over NBD on this host; returns the URI (the same one when it
    is attached already). The record is written first, so a crash in between leaves a volume
    the worker's reconcile serves, never one served behind the record's back."""
    with ctx.db.write() as conn:
        vol = repo.get_volume(conn, volume_id, lock=True)
        if vol is None:
            raise NotFound(f"Boot volume {volume_id} not found.")
        if vol.lifecycle_state != VolumeState.AVAILABLE:
            raise IncorrectState(
                f"Boot volume {volume_id} is {vol.lifecycle_state}; attach it when AVAILABLE."
            )
        pool_volume = ctx.pool.volume(vol.availability_domain, vol.id)
        uri = pool_volume.runtime.uri()
        if vol.attachment_uri != uri:
            repo.update_volume(conn, vol.id, {"attachment_uri": uri, "time_attached": now()})
    with failures.pool_refusals():
        return pool_volume.attach()


def detach(ctx: Context, volume_id: str) -> None:
    """Stop serving the volume after a flush. Detaching a volume that is not attached is refused."""
    vol = _volume(ctx, volume_id)
    if vol.attachment_uri is None:
        raise InvalidArgument(f"Boot volume {volume_id} is not attached.")
    with failures.pool_refusals():
        ctx.pool.volume(vol.availability_domain, vol.id).detach()
    with ctx.db.write() as conn:
        repo.update_volume(conn, vol.id, {"attachment_uri": None, "time_attached": None})


def export_volume(
    ctx: Context,
    volume_id: str,
    dest: Path,
    *,
    fmt: str = "raw",
    force: bool = False,
    progress: Progress | None = None,
) -> None:
    """Write the volume (as it is now: a served volume is frozen for the copy) to dest."""
    vol = _volume(ctx, volume_id)
    if vol.lifecycle_state != VolumeState.AVAILABLE:
        raise IncorrectState(f"Boot volume {volume_id} is {vol.lifecycle_state}, not AVAILABLE.")
    with failures.pool_refusals():
        ctx.pool.volume(vol.availability_domain, vol.id).export(
            Path(os.path.abspath(dest)), fmt, force=force, progress=progress
        )


def _still_wanted(ctx: Context, volume_id: str) -> bool:
    """A fresh look at one volume: is it attached?"""
    with ctx.db.read() as conn:
        vol = repo.get_volume(conn, volume_id)
    return vol is not None and vol.attachment_uri is not None


def reconcile_daemons(ctx: Context) -> None:
    """On a worker: serve every attached volume of the ADs it serves whose daemon has gone (a
    crash or a reboot), and stop daemons whose job died. Volumes in use by an operation are
    left to it."""
    everywhere = ctx.settings.availability_domains
    with ctx.db.read() as conn:
        attached = repo.attached_volumes(conn, everywhere)
    served = set(ctx.settings.served_availability_domains)
    for vol in attached:
        if vol.availability_domain not in served:
            continue  # another worker's domain (the run directory may be shared on this host)
        done = ctx.pool.volume(vol.availability_domain, vol.id).reconcile(attached=True)
        if done:
            log.warning("volume %s: %s", vol.id, done, extra={"volume": vol.id})
    # Keep every volume a record asks for, whatever its domain: a worker of one domain must not
    # stop the daemons of another's.
    keep = {v.id for v in attached}
    for volume_id in ctx.pool.reap_stale(keep, lambda volume_id: _still_wanted(ctx, volume_id)):
        log.warning("volume %s: stopped a daemon whose job had died", volume_id, extra={"volume": volume_id})
