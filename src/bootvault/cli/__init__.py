"""`bootvault` command line: the server, the worker and the operator's admin commands."""

from __future__ import annotations

import os

# Each module registers its commands on the apps of cli/common, in the order --help lists them.
# isort: off
from bootvault.cli import server, volumes, admin, regions  # noqa: F401

# isort: on
from bootvault.cli.common import app

__all__ = ["app", "main"]


def main() -> None:
    from bootvault.memory import tune_malloc

    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    tune_malloc()
    app()
