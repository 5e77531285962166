"""The operator's identity and maintenance commands: tenancies, console users, compartments, keys,
gc and verify."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Annotated

import typer

from bootvault.cli.common import (
    DataDir,
    DbUrl,
    StoreUrl,
    app,
    compartment_app,
    err,
    key_app,
    open_context,
    settings_from,
    tenancy_app,
    user_app,
)
from bootvault.domain.models import JobKind
from bootvault.service import identity, maintenance, volume_admin
from bootvault.service.context import Context


@tenancy_app.command("create")
def tenancy_create(
    name: Annotated[str, typer.Option(help="Tenancy name.")],
    oci_config: Annotated[Path, typer.Option("--oci-config", help="Where to write the OCI config file.")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a tenancy with an admin user and API key; write an OCI config for it."""
    from bootvault.ociconfig import config_paths, write_oci_config
    from bootvault.service.identity import generate_api_key

    try:
        config_paths(oci_config)  # refuse before anything is created
    except FileExistsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from exc
    with open_context(settings_from(data_dir, database_url)) as ctx:
        new = identity.create_tenancy(ctx, name, generate_api_key())
        write_oci_config(oci_config, new, ctx.settings.region)
        typer.echo(f"OCI config: {oci_config}")
        typer.echo(new.tenancy_id)


def _read_password() -> str:
    """The password from a prompt on a terminal (asked twice), else the first line of stdin."""
    import getpass

    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password again: ") != first:
            err.print("[red]error:[/red] the passwords differ")
            raise typer.Exit(1)
        return first
    return sys.stdin.readline().rstrip("\r\n")


@user_app.command("create")
def user_create(
    tenancy: Annotated[str, typer.Option(help="The tenancy OCID the user belongs to.")],
    name: Annotated[str, typer.Option(help="Sign-in name (unique).")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a console user; the password is read from stdin (or prompted for on a terminal).
    Prints the user OCID."""
    from bootvault.service import console_users

    password = _read_password()
    with open_context(settings_from(data_dir, database_url)) as ctx:
        typer.echo(console_users.create_user(ctx, tenancy, name, password))


@compartment_app.command("create")
def compartment_create(
    parent: Annotated[str, typer.Option(help="Parent compartment (or tenancy) OCID.")],
    name: Annotated[str, typer.Option(help="Compartment name.")],
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create a compartment; prints its OCID."""
    with open_context(settings_from(data_dir, database_url)) as ctx:
        typer.echo(identity.create_compartment(ctx, parent, name))


@key_app.command("create")
def key_create(
    compartment: Annotated[str, typer.Option(help="Compartment OCID the key belongs to.")],
    display_name: Annotated[str, typer.Option(help="Key name.")] = "key",
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Create an AES-256 master key usable as kmsKeyId; prints its OCID."""
    with open_context(settings_from(data_dir, database_url)) as ctx:
        typer.echo(identity.create_kms_key(ctx, compartment, display_name))


def _run_maintenance(ctx: Context, kind: JobKind, resource: str) -> str:
    """Queue a maintenance job and run it here, tracked like any job (lease, start time)."""
    from bootvault.worker.main import Worker
    from bootvault.worker.wakeup import Wakeup

    job_id = maintenance.queue_now(ctx, kind, resource)
    worker, stop = Worker(ctx), threading.Event()
    wakeup, deadline = Wakeup(ctx.db, stop), time.monotonic() + 3600
    try:
        # Wait while an older job of the same kind holds the lane, or while a worker process that
        # claimed this job first runs it (then its outcome is the answer): woken when a job ends.
        while not worker.run_once(job_id) and maintenance.ended(ctx, job_id) is None:
            if time.monotonic() > deadline:
                raise typer.Exit(1)
            wakeup.wait(ctx.settings.poll_seconds)
    finally:
        stop.set()
    job = maintenance.ended(ctx, job_id)
    assert job is not None
    if job.last_error:
        err.print(f"[red]error:[/red] {job.last_error}")
        raise typer.Exit(1)
    return job.result or "{}"


@app.command()
def gc(data_dir: DataDir = None, database_url: DbUrl = None, store_url: StoreUrl = None) -> None:
    """Collect garbage now: condemn unreferenced packs, repack sparse ones, delete condemned ones
    whose grace period has passed. Prints a JSON report."""
    with open_context(settings_from(data_dir, database_url, store_url)) as ctx:
        typer.echo(_run_maintenance(ctx, JobKind.GC, "gc"))


@app.command()
def verify(
    backup: Annotated[str | None, typer.Option(help="Verify only this backup OCID.")] = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    store_url: StoreUrl = None,
) -> None:
    """Re-read stored data of every AVAILABLE backup (or one); damaged backups go FAULTY."""
    with open_context(settings_from(data_dir, database_url, store_url)) as ctx:
        if backup is not None:
            volume_admin.require_backup(ctx, backup)
        report = _run_maintenance(ctx, JobKind.VERIFY, backup or "verify")
        typer.echo(report)
        if json.loads(report).get("faulty"):
            raise typer.Exit(2)
