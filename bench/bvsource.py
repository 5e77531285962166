"""Where the bootvault code of a bench run comes from: a snapshot of the working tree's package,
or of a git revision ($BENCH_SRC_REV), that every bootvault process of the run imports."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

SRC_REV_ENV = "BENCH_SRC_REV"


def source_origin() -> str:
    """Where the bootvault code of a run comes from: the working tree, or $BENCH_SRC_REV."""
    rev = os.environ.get(SRC_REV_ENV)
    if not rev:
        return "working tree"
    full = subprocess.run(
        ["git", "rev-parse", "--short", f"{rev}^{{commit}}"], capture_output=True, text=True, check=True
    )
    return f"git {full.stdout.strip()} (${SRC_REV_ENV}={rev})"


def snapshot_source(src: Path, dest: Path) -> str:
    """Copy the bootvault package to dest (imported via PYTHONPATH); return a digest of the copy.

    Every bootvault process of a run then uses the same code even if src/ is edited meanwhile.
    With $BENCH_SRC_REV set (a git revision), the package is taken from that commit instead of
    the working tree: other people's unfinished edits stay out of the run.
    """
    shutil.rmtree(dest, ignore_errors=True)
    rev = os.environ.get(SRC_REV_ENV)
    if rev:
        dest.mkdir(parents=True)
        rel = src.resolve().relative_to(src.resolve().parents[1])  # src/bootvault
        archive = subprocess.run(
            ["git", "archive", "--format=tar", rev, str(rel)],
            cwd=src.resolve().parents[1],
            capture_output=True,
            check=True,
        )
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
        shutil.move(dest / rel, dest / "bootvault")
        shutil.rmtree(dest / rel.parts[0])
    else:
        shutil.copytree(src, dest / "bootvault", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    h = hashlib.sha256()
    for path in sorted((dest / "bootvault").rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(dest)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]
