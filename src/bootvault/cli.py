"""`bootvault` command line: the server, the worker and the operator's admin commands."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

from bootvault.config import Settings
from bootvault.domain.errors import BootVaultError
from bootvault.domain.models import JobKind
from bootvault.service import identity, maintenance, volume_admin
from bootvault.service.context import Context

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
tenancy_app = typer.Typer(no_args_is_help=True, help="Tenancies and their API keys.")
compartment_app = typer.Typer(no_args_is_help=True, help="Compartments.")
volume_app = typer.Typer(no_args_is_help=True, help="Boot volumes in the volume pool.")
key_app = typer.Typer(no_args_is_help=True, help="Encryption keys of the local key provider.")
user_app = typer.Typer(no_args_is_help=True, help="Users of the operator console (/console/).")
region_app = typer.Typer(no_args_is_help=True, help="Peer regions: pairing for cross-region copy.")
app.add_typer(tenancy_app, name="tenancy")
app.add_typer(compartment_app, name="compartment")
app.add_typer(volume_app, name="volume")
app.add_typer(key_app, name="key")
app.add_typer(user_app, name="user")
app.add_typer(region_app, name="region")
err = Console(stderr=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory [env BOOTVAULT_DATA_DIR].")]
DbUrl = Annotated[str | None, typer.Option("--database-url", help="[env BOOTVAULT_DATABASE_URL]")]
StoreUrl = Annotated[str | None, typer.Option("--store-url", help="[env BOOTVAULT_STORE_URL]")]


def settings_from(
    data_dir: Path | None, database_url: str | None = None, store_url: str | None = None, **extra: object
) -> Settings:
    overrides = {
        k: v
        for k, v in {
            "data_dir": data_dir,
            "database_url": database_url,
            "store_url": store_url,
            **extra,
        }.items()
        if v is not None
    }
    return Settings(**overrides)  # type: ignore[arg-type]


@contextmanager
def open_context(settings: Settings) -> Iterator[Context]:
    try:
        ctx = Context.open(settings)
    except BootVaultError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    except Exception as exc:  # bad URL, unreachable database, unreadable master key...
        err.print(f"[red]error:[/red] cannot start: {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from exc
    try:
        yield ctx
    except BootVaultError as exc:
        err.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from exc
    finally:
        ctx.close()


@contextmanager
def progress_bar(description: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that draws a bar on a terminal and stays silent otherwise."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        console=err,
        disable=not err.is_terminal,
    ) as bar:
        task = bar.add_task(description, total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)


def _export_settings(settings: Settings) -> None:
    for name in ("data_dir", "database_url", "store_url", "host", "port", "tls_cert", "tls_key", "run_dir"):
        value = getattr(settings, name)
        if value is not None:
            os.environ[f"BOOTVAULT_{name.upper()}"] = str(value)


def _serve_metrics(ctx: Context) -> None:
    if ctx.settings.metrics_port is not None:
        from bootvault.metrics import serve_metrics

        serve_metrics(ctx.db, ctx.settings.metrics_host, ctx.settings.metrics_port)


def _require_libnbd(alternative: str = "") -> None:
    """Workers back volumes up over NBD: without libnbd's binding, say so in one line and stop."""
    from bootvault.external import Missing, require_libnbd

    try:
        require_libnbd()
    except Missing as exc:
        # plain print: rich would wrap the line at the terminal's width
        print(f"error: {exc}" + (f" ({alternative})" if alternative else ""), file=sys.stderr)
        raise typer.Exit(1) from exc


@app.command()
def doctor() -> None:
    """List the programs and libraries bootvault needs besides its Python packages, with their
    versions; exit 1 if one is missing."""
    from bootvault.external import survey

    missing = 0
    for found in survey():
        dep = found.dependency
        if found.problem is None:
            typer.echo(f"ok       {dep.name} {found.version}: {dep.purpose}")
        else:
            missing += 1
            typer.echo(f"MISSING  {dep.missing_line(found.problem)}")
    if missing:
        typer.echo(f"{missing} missing: commands that need them stop with the same message")
        raise typer.Exit(1)


@app.command("settings")
def settings_cmd() -> None:
    """Print every setting (environment variable, default, meaning) as a markdown table."""
    from bootvault.settings_doc import settings_table

    typer.echo(settings_table(), nl=False)


@app.command()
def serve(
    data_dir: DataDir = None,
    database_url: DbUrl = None,
    store_url: StoreUrl = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int, typer.Option(help="In-process worker threads (0: API only).")] = 1,
    processes: Annotated[int, typer.Option(help="API processes sharing the port.")] = 1,
    tls_cert: Annotated[
        Path | None, typer.Option(help="Serve HTTPS with this certificate chain (PEM).")
    ] = None,
    tls_key: Annotated[Path | None, typer.Option(help="The private key of --tls-cert (PEM).")] = None,
    tls_demo: Annotated[
        bool,
        typer.Option(
            help="Serve HTTPS with a local CA and certificate made on first start in <data dir>/tls "
            "(clients trust tls/ca.pem; see docs/tls.md)."
        ),
    ] = False,
    demo: Annotated[bool, typer.Option(help="Create a demo tenancy and volume on first start.")] = False,
) -> None:
    """Serve the OCI API (and run workers in-process)."""
    from bootvault.server import run_server
    from bootvault.tls import TlsError, check_pair, ensure_demo_tls

    if (tls_cert is None) != (tls_key is None):
        err.print("[red]error:[/red] --tls-cert and --tls-key go together")
        raise typer.Exit(2)
    if tls_demo and tls_cert is not None:
        err.print("[red]error:[/red] --tls-demo makes its own certificate: leave out --tls-cert/--tls-key")
        raise typer.Exit(2)
    if workers > 0:
        _require_libnbd("or serve the API alone with --workers 0")
    settings = settings_from(
        data_dir, database_url, store_url, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key
    )
    with open_context(settings) as ctx:
        try:
            ca_bundle = None
            if tls_demo:
                warnings: list[str] = []
                made = ensure_demo_tls(ctx.settings, warnings)
                for w in warnings:
                    err.print(f"[yellow]warning:[/yellow] {w}")
                ctx.settings = ctx.settings.model_copy(update={"tls_cert": made.cert, "tls_key": made.key})
                ca_bundle = made.ca_cert
            elif ctx.settings.tls_cert or ctx.settings.tls_key:
                if not (ctx.settings.tls_cert and ctx.settings.tls_key):
                    raise TlsError("BOOTVAULT_TLS_CERT and BOOTVAULT_TLS_KEY go together")
                check_pair(ctx.settings.tls_cert, ctx.settings.tls_key)
        except TlsError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(1) from exc
        if demo:
            from bootvault.demo import ensure_demo, print_demo

            print_demo(ctx, ensure_demo(ctx), ca_bundle)
        _serve_metrics(ctx)
        if processes > 1:
            _export_settings(ctx.settings)  # the API processes read them from the environment
        run_server(ctx, workers, processes)


@app.command()
def worker(data_dir: DataDir = None, database_url: DbUrl = None, store_url: StoreUrl = None) -> None:
    """Run a worker alone: claims jobs from the database until stopped, and runs the backup
    policy scheduler and expiry."""
    from bootvault.logs import setup_logging
    from bootvault.worker.main import Worker
    from bootvault.worker.scheduler import start_scheduler

    _require_libnbd()
    setup_logging()
    with open_context(settings_from(data_dir, database_url, store_url)) as ctx:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        _serve_metrics(ctx)
        scheduler = start_scheduler(ctx, stop)
        Worker(ctx).run(stop)
        if scheduler is not None:
            scheduler.join(timeout=10)


@app.command()
def migrate(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Create or upgrade the database schema."""
    with open_context(settings_from(data_dir, database_url)):
        typer.echo("schema is up to date")


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
    import sys

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


Endpoint = Annotated[str, typer.Option("--endpoint", help="Where peers reach THIS region's API.")]
CaFile = Annotated[
    Path | None,
    typer.Option("--ca-file", help="CA (PEM) peers trust for this region (default: the demo CA)."),
]


@region_app.command("invite")
def region_invite(
    endpoint: Endpoint, ca_file: CaFile = None, data_dir: DataDir = None, database_url: DbUrl = None
) -> None:
    """Make a one-time token (valid an hour) that another region joins with; printed last."""
    from bootvault.service import regions

    with open_context(settings_from(data_dir, database_url)) as ctx:
        token = regions.invite(ctx, endpoint, str(ca_file) if ca_file else None)
        typer.echo(
            f"region {ctx.settings.region}: give this token to `bootvault region join` in the other region"
        )
        typer.echo(token)


@region_app.command("join")
def region_join(
    token: Annotated[str, typer.Argument(help="The token `region invite` printed.")],
    endpoint: Endpoint,
    ca_file: CaFile = None,
    data_dir: DataDir = None,
    database_url: DbUrl = None,
) -> None:
    """Pair this region with the one that made TOKEN (it must be serving); pairs both ways and
    exchanges tenancies, users, API keys and compartments."""
    from bootvault.service import regions

    with open_context(settings_from(data_dir, database_url)) as ctx:
        name = regions.join(ctx, endpoint, token, str(ca_file) if ca_file else None)
        typer.echo(f"paired {ctx.settings.region} with {name}")


@region_app.command("list")
def region_list(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """The peer regions, one a line: name and endpoint."""
    from bootvault.service import regions

    with open_context(settings_from(data_dir, database_url)) as ctx:
        for p in regions.peers(ctx):
            typer.echo(f"{p.name} {p.endpoint}")


@region_app.command("sync")
def region_sync(data_dir: DataDir = None, database_url: DbUrl = None) -> None:
    """Push tenancies, users, API keys and compartments to every peer now (also done by a job
    after every change); prints how many rows each lacked."""
    from bootvault.service import regions

    with open_context(settings_from(data_dir, database_url)) as ctx:
        for p in regions.peers(ctx):
            typer.echo(f"{p.name} {regions.push_identity(ctx, p.name)}")


def main() -> None:
    from bootvault.memory import tune_malloc

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    tune_malloc()
    app()
