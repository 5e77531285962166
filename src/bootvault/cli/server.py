"""The server, the worker and the checks of the host: serve, worker, migrate, doctor, settings."""

from __future__ import annotations

import os
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from bootvault.cli.common import (
    DataDir,
    DbUrl,
    StoreUrl,
    app,
    err,
    open_context,
    settings_from,
)
from bootvault.config import Settings
from bootvault.service.context import Context


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
