"""docs/settings.md's table is what `Settings` says: a setting added, removed, renamed, given
another default or another meaning in config.py without regenerating the table fails here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bootvault.config import Settings
from bootvault.settings_doc import BEGIN, END, settings_table, with_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_committed_table_is_the_generated_one() -> None:
    committed = DOC.read_text()
    assert committed == with_table(committed), (
        "docs/settings.md differs from Settings: run `python -m bootvault.settings_doc docs/settings.md`"
    )


def test_every_setting_has_a_row_with_its_default() -> None:
    table = settings_table()
    names = re.findall(r"^\| `BOOTVAULT_(\w+)` \|", table, flags=re.M)
    assert [n.lower() for n in names] == list(Settings.model_fields)
    assert "| `BOOTVAULT_HYDRATE_SPEED_BPS` | 0 | A cap on the hydration copy" in table
    assert "| `BOOTVAULT_HYDRATE_THROTTLED_BPS` | 33554432 (32 MiB/s) |" in table
    assert "| `BOOTVAULT_PORT` | 8420 |" in table
    assert '| `BOOTVAULT_AVAILABILITY_DOMAINS` | `["bootvault:AD-1"]` |' in table


def test_a_changed_default_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    committed = DOC.read_text()
    monkeypatch.setattr(Settings.model_fields["port"], "default", 9999)
    assert with_table(committed) != committed


def test_a_setting_without_a_meaning_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Settings.model_fields["port"], "description", None)
    with pytest.raises(ValueError, match="setting port has no docstring"):
        settings_table()


def test_markers_are_required() -> None:
    with pytest.raises(ValueError, match="markers"):
        with_table("# no table here\n")
    assert with_table(f"a\n{BEGIN}\nold\n{END}\nb\n").endswith(f"{END}\nb\n")
