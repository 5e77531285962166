"""bench/RESULTS.md: machine, versions, workload facts and the three tables."""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import peers
from bvsource import SRC_REV_ENV, source_origin
from measure import fmt_mib
from report import Table

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def _sh(*cmd: str) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT).stdout.strip()
    except OSError:
        return "?"


def rerun_command(script: str, argv: list[str]) -> str:
    """The command that reruns this script with these arguments, less --note (it describes this
    run, not the next); `make bench` when make ran it without arguments."""
    args, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            args.append(a)
    if os.environ.get("MAKELEVEL") and not args:
        return "make bench"
    return " ".join(shlex.quote(x) for x in [".venv/bin/python", script, *args])


def machine() -> dict[str, str]:
    """Date (date -u), CPU model and count, memory, kernel, filesystem, and tool versions."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next(int(ln.split()[1]) for ln in meminfo if ln.startswith("MemTotal"))
    df = _sh("df", "-T", str(BENCH)).splitlines()
    fs = df[-1].split()[1] if len(df) > 1 else "?"
    dirty = _sh("git", "status", "--porcelain", "--", "src")
    if os.environ.get(SRC_REV_ENV):
        code = source_origin()
    else:
        code = f"git {_sh('git', 'rev-parse', '--short', 'HEAD')}" + (
            f" + {len(dirty.splitlines())} uncommitted path(s) under src/" if dirty else " (src/ clean)"
        )
    return {
        "date": _sh("date", "-u"),
        "cpu": f"{model}, nproc {_sh('nproc')} (os.cpu_count {os.cpu_count()})",
        "memory": f"{mem_kib / (1 << 20):.1f} GiB",
        "kernel / filesystem": f"{platform.release()} / {fs}",
        "python": sys.version.split()[0],
        "bootvault": code,
        **peers.versions(),
    }


def markdown(
    args: argparse.Namespace,
    tables: list[Table],
    info: dict[str, str],
    facts: dict[str, str],
    hashes: dict[str, str],
    changed: dict[str, int],
    failed: dict[str, str],
    command: str,
    took: float,
) -> str:
    n_b = changed.get("B", 0) // (256 << 10)
    lines = ["# bootvault benchmark results", ""]
    if getattr(args, "note", ""):
        lines += [f"**{args.note}**", ""]
    lines += [
        f"Produced by `bench/run.py`; rerun with `{command}`. Whole run: {took:.0f} s.",
        "",
        "## Machine and versions",
        "",
        *[f"- **{k}**: {v}" for k, v in info.items()],
        "",
        "## Workload and method",
        "",
        f"- image {args.size_mib} MiB: runs of 1-32 MiB picked by Random(42) weighted by remaining MiB; "
        "40 % holes, 40 % /usr bytes (sorted walk, no repeats), 20 % Random(4242).randbytes",
        f"- mutation A: Random(7) sample of 1 % of the 4 KiB blocks ({fmt_mib(changed.get('A'))} MiB)",
        f"- mutation B: Random(11), {n_b} extents of 256 KiB ({fmt_mib(changed.get('B'))} MiB)",
        "- steps: full, mutate A, incr-A, restore of the incr-A backup, mutate B, incr-B; "
        "the tool order rotates at every step",
        "- every mutation is applied to the peers' image file and, through the NBD URI of the attached "
        "bootvault volume, to that volume; the volume's raw export (`bootvault volume export --format "
        "raw`) is then compared with the image by sha256",
        "- peers: /usr/bin/time -v (CPU = user+sys, peak RSS); wall measured around the command; "
        "stored = `du -sb` growth of the repository; `sync` before every measured command",
        f"- bootvault: `serve --workers 0` plus one `bootvault worker`, BOOTVAULT_POLL_SECONDS="
        f"{args.poll_seconds}, block size {args.block_size or 'engine default'}; oci SDK, GET polled "
        "every 100 ms; CPU = worker + API + the volume's qemu-storage-daemon (which reads the qcow2 and "
        "serves it over NBD) process deltas (/proc/PID/stat); peak RSS = worker VmHWM "
        "(reset through clear_refs); restore = create volume from the backup until AVAILABLE, "
        "plus `bootvault volume export` to a file",
        f"- page cache: {'dropped before every command' if args.cold else 'warm (not dropped)'}",
        *[f"- {k}: {v}" for k, v in facts.items()],
        *[f"- sha256 of state {k}: `{v}`" for k, v in hashes.items()],
        "",
        "## Results",
        "",
    ]
    for t in tables:
        lines += [t.markdown(), ""]
    if failed:
        lines += ["## Errors", ""]
        for tool, err in failed.items():
            lines += [f"**{tool}**", "", "```", err.strip()[-4000:], "```", ""]
    return "\n".join(lines)
