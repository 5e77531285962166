"""`bootvault doctor` and the one-line messages of missing dependencies, with real programs: PATH
is narrowed to a directory that holds QEMU's tools but not nbdkit."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bootvault import external
from bootvault.cli import app


@pytest.fixture
def without_nbdkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("qemu-img", "qemu-storage-daemon"):
        found = shutil.which(program)
        assert found, f"{program} is needed by this test (make install)"
        (bin_dir / program).symlink_to(found)
    monkeypatch.setenv("PATH", str(bin_dir))


def test_everything_is_found_here() -> None:
    found = {f.dependency.name: f for f in external.survey()}
    assert [f.problem for f in found.values()] == [None] * len(external.ALL), found
    assert re.fullmatch(r"\d+\.\d+\.\d+", found["qemu-img"].version or "")
    assert re.fullmatch(r"\d+\.\d+\.\d+ \(Python 3\.11\.\d+\)", found["nbdkit python plugin"].version or "")
    assert re.fullmatch(r"\d+\.\d+\.\d+", found["libnbd Python binding (module nbd)"].version or "")


def test_doctor_lists_what_is_missing_and_fails(without_nbdkit: None) -> None:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("ok       qemu-storage-daemon ") and lines[1].startswith("ok       qemu-img ")
    assert lines[2] == (
        "MISSING  nbdkit is missing (nbdkit not found on PATH): it serves a backup to a volume restored "
        "from it while the volume hydrates (instant restore). Install the Debian package nbdkit."
    )
    assert lines[3].startswith("MISSING  nbdkit python plugin is missing (nbdkit not found on PATH)")
    assert "nbdkit-plugin-python" in lines[3]
    assert lines[4].startswith("ok       libnbd Python binding (module nbd) ")
    assert lines[5] == "2 missing: commands that need them stop with the same message"


def test_doctor_passes_when_all_are_there() -> None:
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.output.splitlines() if line.startswith("ok ")]) == len(external.ALL)
