"""Volumes in the pool: import, path, attach, detach, export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bootvault.cli.common import (
    DataDir,
    DbUrl,
    open_context,
    progress_bar,
    settings_from,
    volume_app,
)
from bootvault.service import volume_admin


@volume_app.command("import")
def volume_import(
    image: Annotated[Path, typer.Argument(help="Disk image, raw or qcow2 (without a backing file).")],
    compartment: Annotated[str, typer.Option(help="Compartment OCID.")],
    availability_domain: Annotated[str | None, typer.Option(help="Availability domain.")] = None,
    display_name: Annotated[str | None, typer.Option(help="Volume name.")] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Register a raw or qcow2 disk image as an AVAILABLE boot volume; prints its OCID."""
    with open_context(settings_from(data_dir, database_url)) as ctx, progress_bar("importing") as cb:
        vol = volume_admin.import_volume(
            ctx,
            compartment,
            image,
            availability_domain=availability_domain,
            display_name=display_name,
            progress=cb,
        )
    typer.echo(vol.id)


@volume_app.command("path")
def volume_path(volume_id: str, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Print the absolute path of a volume's qcow2 file (to inspect it; attach it to use it)."""
    with open_context(settings_from(data_dir, database_url)) as ctx:
        typer.echo(str(volume_admin.volume_file(ctx, volume_id)))


@volume_app.command("attach")
def volume_attach(volume_id: str, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Serve the volume read-write over NBD from this host; prints the NBD URI last
    (qemu -drive file=URI, qemu-io, nbdcopy). Attaching again prints the same URI."""
    with open_context(settings_from(data_dir, database_url)) as ctx:
        typer.echo(volume_admin.attach(ctx, volume_id))


@volume_app.command("detach")
def volume_detach(volume_id: str, data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Stop serving the volume, after its daemon has flushed every write."""
    with open_context(settings_from(data_dir, database_url)) as ctx:
        volume_admin.detach(ctx, volume_id)
        typer.echo(f"detached {volume_id}")


@volume_app.command("export")
def volume_export(
    volume_id: str,
    dest: Path,
    fmt: Annotated[str, typer.Option("--format", help="raw or qcow2.")] = "raw",
    force: Annotated[
        bool, typer.Option(help="Replace an existing file, or write over a block device.")
    ] = False,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Write the volume to DEST (a file appears whole; a block device is written in place). A
    volume in use is frozen at one instant for the copy."""
    with open_context(settings_from(data_dir, database_url)) as ctx, progress_bar("exporting") as cb:
        volume_admin.export_volume(ctx, volume_id, dest, fmt=fmt, force=force, progress=cb)
