"""Operator-side volume commands: import a raw image, locate a volume's file, export it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from bootvault.domain import ocid
from bootvault.domain.errors import IncorrectState, InvalidArgument, NotFound
from bootvault.domain.models import BootVolume, VolumeState
from bootvault.domain.validation import check_display_name
from bootvault.engine import volumes as pool
from bootvault.service.context import Context
from bootvault.service.volumes import check_availability_domain, size_gbs_for
from bootvault.store import identity
from bootvault.store import volumes as repo
from bootvault.store.common import new_etag, now

Progress = Callable[[int, int], None]


def import_volume(
    ctx: Context,
    compartment_id: str,
    image: Path,
    *,
    availability_domain: str | None = None,
    display_name: str | None = None,
    progress: Progress | None = None,
) -> BootVolume:
    """Register a raw disk image as an AVAILABLE boot volume (size rounded up to whole GiB)."""
    check_display_name(display_name)
    if not image.is_file():
        raise InvalidArgument(f"{image} is not a readable file.")
    ad = availability_domain or ctx.settings.availability_domains[0]
    check_availability_domain(ctx, ad)
    with ctx.db.read() as conn:
        comp = identity.get_compartment(conn, compartment_id)
    if comp is None:
        raise NotFound(f"Compartment {compartment_id} not found.")
    volume_id = ocid.mint("bootvolume", ctx.settings.region)
    size_gbs = size_gbs_for(os.stat(image).st_size)
    target = ctx.volume_path(ad, volume_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The file is complete (tmp + rename) before the row exists, so a crash leaves no half volume.
    pool.import_image(str(image), str(target), size_gbs * (1 << 30), progress=progress)
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
    with ctx.db.write() as conn:
        repo.insert_volume(conn, vol)
    return vol


def _volume(ctx: Context, volume_id: str) -> BootVolume:
    with ctx.db.read() as conn:
        vol = repo.get_volume(conn, volume_id)
    if vol is None:
        raise NotFound(f"Boot volume {volume_id} not found.")
    return vol


def volume_file(ctx: Context, volume_id: str) -> Path:
    """The raw file behind a volume: the attach point for a hypervisor."""
    vol = _volume(ctx, volume_id)
    return ctx.volume_path(vol.availability_domain, vol.id)


def export_volume(ctx: Context, volume_id: str, dest: Path, progress: Progress | None = None) -> None:
    vol = _volume(ctx, volume_id)
    if vol.lifecycle_state != VolumeState.AVAILABLE:
        raise IncorrectState(f"Boot volume {volume_id} is {vol.lifecycle_state}, not AVAILABLE.")
    pool.export_volume(str(ctx.volume_path(vol.availability_domain, vol.id)), str(dest), progress=progress)
