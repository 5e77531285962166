"""The console's Jinja2 environment: templates from the package, autoescaping on for every
template (names and tags are user data), and filters that show sizes, times and user strings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup, escape

from bootvault.domain.lifecycle import BACKUP_IN_PROGRESS
from bootvault.domain.models import BackupState

UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
SHORT = 80  # characters of a user string shown in a list cell (the detail page shows all)


B = BackupState
BACKUP_STATES_SHOWN = (B.AVAILABLE, B.CREATING, B.REQUEST_RECEIVED, B.FAULTY, B.TERMINATING, B.TERMINATED)


def human_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    value, unit = float(n), 0
    while value >= 1024 and unit < len(UNITS) - 1:
        value, unit = value / 1024, unit + 1
    return f"{int(value)} {UNITS[unit]}" if unit == 0 else f"{value:.1f} {UNITS[unit]}"


def when(t: datetime | None) -> str:
    if t is None:
        return "—"
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def user_text(value: Any, limit: int | None = None) -> Markup:
    """A user-controlled string, escaped and isolated: <bdi> keeps a right-to-left override
    inside it from reordering the text around it; `limit` shortens it (the title has it all)."""
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        return Markup('<bdi title="{}">{}…</bdi>').format(text, text[:limit])
    return Markup("<bdi>{}</bdi>").format(escape(text))


def short(value: Any) -> Markup:
    return user_text(value, SHORT)


def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("bootvault.console", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(bytes=human_bytes, when=when, user=user_text, short=short)
    # the lifecycle's own states, so no template spells one (domain/lifecycle.py)
    env.globals.update(BACKUP_IN_PROGRESS=BACKUP_IN_PROGRESS, BACKUP_STATES=BACKUP_STATES_SHOWN)
    return env
