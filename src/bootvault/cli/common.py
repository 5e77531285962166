"""What every command shares: the Typer apps, the options naming where the data lives, the
context a command opens, and its progress bar."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

from bootvault.config import Settings
from bootvault.domain.errors import BootVaultError
from bootvault.service.context import Context

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="The bootvault server, its worker and the operator's admin commands.",
)
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
