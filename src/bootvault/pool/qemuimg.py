"""qemu-img for the offline work on image files: inspect, create, convert, resize, bitmaps.

Only files that no daemon holds open are touched here; a served volume is changed over QMP
(pool/daemon.py). QEMU's own image locking backs this up: qemu-img fails rather than write an
image a daemon has open.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bootvault.pool.errors import ImageRejected, PoolError

QEMU_IMG = "qemu-img"
PROGRESS = re.compile(rb"\((\d+\.\d+)/100%\)")
Progress = Callable[[int, int], None]
CLUSTER = 64 << 10


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int
    backing: str | None
    bitmaps: dict[str, list[str]]  # name -> flags ("auto", "in-use")


def _run(*args: str, what: str) -> str:
    try:
        out = subprocess.run([QEMU_IMG, *args], capture_output=True, text=True, timeout=3600)
    except FileNotFoundError as exc:
        raise PoolError("qemu-img is not installed (Debian package qemu-utils)") from exc
    if out.returncode != 0:
        raise PoolError(f"{what} failed: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def info(path: Path, fmt: str | None = None) -> ImageInfo:
    """Probe an image. -U: readable even while a daemon has it open (for reporting only)."""
    args = ["info", "-U", "--output=json", *(["-f", fmt] if fmt else []), str(path)]
    data = json.loads(_run(*args, what=f"reading {path}"))
    specific = data.get("format-specific", {}).get("data", {})
    bitmaps = {b["name"]: list(b.get("flags", [])) for b in specific.get("bitmaps", []) or []}
    return ImageInfo(data["format"], int(data["virtual-size"]), data.get("backing-filename"), bitmaps)


def probe_import(path: Path) -> ImageInfo:
    """An image we accept to import: raw or qcow2, and no backing file (it would pull in another
    file's data, possibly one the operator never meant to expose)."""
    found = info(path)
    if found.format not in ("raw", "qcow2"):
        raise ImageRejected(f"{path} is a {found.format} image; only raw and qcow2 images can be imported.")
    if found.backing:
        raise ImageRejected(
            f"{path} is a qcow2 image with a backing file ({found.backing}); "
            "flatten it first (qemu-img convert -O qcow2) and import the result."
        )
    return found


def create(path: Path, size: int) -> None:
    _run("create", "-q", "-f", "qcow2", "-o", f"cluster_size={CLUSTER}", str(path), str(size), what="create")


def convert(
    src: str,
    src_fmt: str,
    dst: Path,
    dst_fmt: str,
    *,
    existing: bool = False,
    progress: Progress | None = None,
) -> None:
    """Copy src to dst (sparse: zero clusters are not written). existing: write into dst in place
    (a block device or a pre-created image) instead of creating it. progress(done, 100)."""
    args = ["convert", "-p" if progress else "-q", "-f", src_fmt, "-O", dst_fmt, "-W", "-m", "4"]
    if dst_fmt == "qcow2" and not existing:
        args += ["-o", f"cluster_size={CLUSTER}"]
    if existing:
        args.append("-n")
    if progress is None:
        _run(*args, src, str(dst), what=f"copying {src} to {dst}")
        return
    proc = subprocess.Popen([QEMU_IMG, *args, src, str(dst)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdout, stderr = proc.stdout, proc.stderr
    assert stdout is not None and stderr is not None
    for line in iter(lambda: stdout.read(64), b""):  # "    (12.34/100%)\r" per step
        for match in PROGRESS.findall(line):
            progress(int(float(match)), 100)
    err = stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise PoolError(f"copying {src} to {dst} failed: {err.strip()}")


def resize(path: Path, size: int) -> None:
    _run("resize", "-q", "-f", "qcow2", str(path), str(size), what="resize")


def add_bitmap(path: Path, name: str, granularity: int) -> None:
    _run("bitmap", "--add", "--enable", "-g", str(granularity), str(path), name, what="adding a bitmap")


def remove_bitmap(path: Path, name: str) -> None:
    _run("bitmap", "--remove", str(path), name, what="removing a bitmap")


def rebase_unsafe(path: Path, backing: str) -> None:
    """Name a backing file without opening it (-u): the data is served by a backing server."""
    _run(
        "rebase", "-u", "-f", "qcow2", "-F", "raw", "-b", backing, str(path), what="setting the backing file"
    )


ZERO_PIECE = 1 << 30  # qemu-io's `write -z` takes at most 2 GiB - 512 bytes at once (without -n)


def zero_ranges(path: Path, ranges: list[tuple[int, int]]) -> None:
    """Mark [start, end) ranges of a new qcow2 (no backing yet) as zero clusters: allocated as
    zeros in this layer, so reads and QEMU's block-stream never go to the backing for them."""
    if not ranges:
        return
    script = "".join(
        f"write -z {pos} {min(end, pos + ZERO_PIECE) - pos}\n"
        for start, end in ranges
        for pos in range(start, end, ZERO_PIECE)
    )
    out = subprocess.run(
        ["qemu-io", "-f", "qcow2", str(path)], input=script, capture_output=True, text=True, timeout=600
    )
    if out.returncode != 0 or "error" in out.stdout.lower():
        raise PoolError(f"marking zero ranges failed: {(out.stderr or out.stdout).strip()[-300:]}")
