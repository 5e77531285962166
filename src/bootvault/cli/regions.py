"""Peer regions: invite, join, list, sync (docs/regions.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bootvault.cli.common import (
    DataDir,
    DbUrl,
    open_context,
    region_app,
    settings_from,
)

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
