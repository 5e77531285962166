"""API speed: wrk against `bootvault serve` on embedded defaults (SQLite, local store), next to a
bare Starlette app on uvicorn (bench/bareapp.py) in the same run; `make bench` runs it and writes
bench/RESULTS-api.md.

Requests are signed once by the oci SDK's own signer and replayed by wrk for the length of one
run (a signature is valid for the five-minute date skew; every run signs afresh). wrk runs with
one thread on the same 2-core machine as the server, so the two share the cores.

Phases:
1. the bare app: GET of one document at 1, 10 and 50 connections, and a list of 25 at 50; then
   the same app with one process per core (item and list at 50): every target compares both
   sides at the same number of processes;
2. bootvault (`serve`, one process, one in-process worker) with 1,000 backups in one compartment
   (rows inserted through the store's table, not the API): a backup created on the idle service,
   from the create response to the job's claim; GetBootVolumeBackup at 1, 10 and 50 connections;
   ListBootVolumeBackups of 25 at 50; list pages with filters and both sorts; 1,000 hostile
   requests; the server's RSS throughout;
3. the same compartment grown to 100,000 backups: the same list pages again;
4. `serve --processes N` for N = 1, 2, 4: GetBootVolumeBackup and the list of 25 at 50 connections.

The pieces: bench/apirig.py (the deployment, signing, wrk), bench/apiprobes.py (the measurements
beyond throughput), bench/apireport.py (the report).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from apiprobes import fresh_latency, hostile_requests, pages_phase, start_latency, step_costs
from apireport import Report, pct, render
from apirig import (
    BENCH,
    LARGE,
    ROOT,
    SMALL,
    WRK,
    WRK_REPORT_LUA,
    Deployment,
    RssWatch,
    free_port,
    run_wrk,
    status_kib,
    wait_port,
)
from bvsource import SRC_REV_ENV, snapshot_source, source_origin
from measure import machine_busy_cpu, stop_process

# -- phases --------------------------------------------------------------------------------------


def bare_phase(work: Path, rep: Report, seconds: float, conns: list[int]) -> None:
    """The bare app at one process (every connection count, and the list) and at one process
    per core (50 connections, item and list): each bootvault figure is judged against the bare
    app run with the same number of processes."""
    cores = os.cpu_count() or 1
    for processes in sorted({1, cores}):
        print(f"bare Starlette app, {processes} process(es)", flush=True)
        port = free_port()
        log = work / "logs" / f"bare-{processes}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, str(BENCH / "bareapp.py"), str(port), str(processes)], stdout=out, stderr=out
            )
        try:
            wait_port(port, proc, log)
            suffix = "" if processes == 1 else f" x{processes}"
            for c in conns if processes == 1 else [50]:
                url = f"http://127.0.0.1:{port}/item"
                rep.bare.append(
                    run_wrk(f"bare GET /item{suffix}", url, WRK_REPORT_LUA, c, seconds, work, pid=proc.pid)
                )
            url = f"http://127.0.0.1:{port}/list"
            rep.bare.append(
                run_wrk(f"bare GET /list (25){suffix}", url, WRK_REPORT_LUA, 50, seconds, work, pid=proc.pid)
            )
        finally:
            stop_process(proc)


def bootvault_phase(dep: Deployment, rep: Report, args: argparse.Namespace) -> None:
    s, conns = args.seconds, args.connections
    rep.insert_s[SMALL] = dep.insert_backups(SMALL, 0)
    dep.start(processes=1, workers=1)
    try:
        assert dep.proc is not None
        print("backup start on an idle service", flush=True)
        rep.start_ms = start_latency(dep, args.creates)
        backup_id = dep.first_backup()
        rep.rss_idle_kib = status_kib(dep.proc.pid, "VmRSS")
        print("freshly signed GetBootVolumeBackup, 1 connection", flush=True)
        rep.fresh_ms = fresh_latency(dep, f"/bootVolumeBackups/{backup_id}", args.fresh)
        print(f"  p50 {statistics.median(rep.fresh_ms):.2f} ms, p99 {pct(rep.fresh_ms, 99):.2f} ms")
        print("step costs, in-process", flush=True)
        rep.steps = step_costs(dep, backup_id)
        for name, us in rep.steps:
            print(f"  {us:8.1f} us  {name}")
        print("bootvault serve, 1 process, 1,000 backups", flush=True)
        with RssWatch(dep.proc.pid) as watch:
            for c in conns:
                rep.get.append(
                    run_wrk(
                        "GetBootVolumeBackup",
                        dep.endpoint,
                        dep.script(f"/bootVolumeBackups/{backup_id}"),
                        c,
                        s,
                        dep.work,
                        pid=dep.proc.pid,
                    )
                )
            query = f"/bootVolumeBackups?compartmentId={dep.compartment_id}&limit=25"
            rep.list25.append(
                run_wrk(
                    "ListBootVolumeBackups (25)",
                    dep.endpoint,
                    dep.script(query),
                    50,
                    s,
                    dep.work,
                    pid=dep.proc.pid,
                )
            )
        rep.rss_load_kib = watch.peak_kib
        pages_phase(dep, rep, SMALL, args.page_seconds, args.page_connections)
        print(f"{args.hostile} hostile requests", flush=True)
        with RssWatch(dep.proc.pid) as watch:
            rep.hostile = hostile_requests(dep.port, args.hostile, dep.config, dep.endpoint)
            dep.get(f"/bootVolumeBackups/{backup_id}")  # still serving
        rep.rss_hostile_kib = watch.peak_kib
        for k, v in sorted(rep.hostile.items()):
            print(f"  {v:5d}  {k}")
        print(f"  peak RSS {rep.rss_hostile_kib / 1024:.1f} MiB", flush=True)
        print(f"growing the compartment to {LARGE:,} backups", flush=True)
        rep.insert_s[LARGE] = dep.insert_backups(LARGE - SMALL, SMALL)
        pages_phase(dep, rep, LARGE, args.page_seconds, args.page_connections)
    finally:
        dep.stop()
    for n in args.processes:
        print(f"bootvault serve --processes {n} --workers 0", flush=True)
        dep.start(processes=n, workers=0)
        try:
            assert dep.proc is not None
            query = f"/bootVolumeBackups?compartmentId={dep.compartment_id}&limit=25"
            with RssWatch(dep.proc.pid) as watch:
                get = run_wrk(
                    f"GetBootVolumeBackup, {n} process(es)",
                    dep.endpoint,
                    dep.script(f"/bootVolumeBackups/{backup_id}"),
                    50,
                    s,
                    dep.work,
                    pid=dep.proc.pid,
                )
                list25 = run_wrk(
                    f"ListBootVolumeBackups (25), {n} process(es)",
                    dep.endpoint,
                    dep.script(query),
                    50,
                    s,
                    dep.work,
                    pid=dep.proc.pid,
                )
            rep.processes.append((n, get, list25, watch.peak_kib))
        finally:
            dep.stop()


def baseline_phase(work: Path, rev: str, args: argparse.Namespace) -> Report:
    """GetBootVolumeBackup, the list of 25 and the list pages again, on the code of git revision
    `rev` (the "before"), in a deployment of its own, in the same run."""
    base = Report()
    previous = os.environ.get(SRC_REV_ENV)
    os.environ[SRC_REV_ENV] = rev
    try:
        base.facts["source"] = source_origin()
        snapshot_source(ROOT / "src" / "bootvault", work / "src")
    finally:
        if previous is None:
            del os.environ[SRC_REV_ENV]
        else:
            os.environ[SRC_REV_ENV] = previous
    print(f"baseline: {base.facts['source']}", flush=True)
    dep = Deployment(work / "run", work / "src")
    dep.setup()
    base.insert_s[SMALL] = dep.insert_backups(SMALL, 0)
    dep.start(processes=1, workers=1)
    try:
        path = f"/bootVolumeBackups/{dep.first_backup()}"
        for c in args.connections:
            base.get.append(
                run_wrk(
                    "GetBootVolumeBackup",
                    dep.endpoint,
                    dep.script(path),
                    c,
                    args.seconds,
                    dep.work,
                    pid=dep.proc.pid,
                )
            )
        query = f"/bootVolumeBackups?compartmentId={dep.compartment_id}&limit=25"
        base.list25.append(
            run_wrk(
                "ListBootVolumeBackups (25)",
                dep.endpoint,
                dep.script(query),
                50,
                args.seconds,
                dep.work,
                pid=dep.proc.pid,
            )
        )
        pages_phase(dep, base, SMALL, args.page_seconds, args.page_connections)
        base.insert_s[LARGE] = dep.insert_backups(LARGE - SMALL, SMALL)
        pages_phase(dep, base, LARGE, args.page_seconds, args.page_connections)
    finally:
        dep.stop()
    return base


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10, help="length of each throughput run")
    p.add_argument("--connections", type=lambda v: [int(x) for x in v.split(",")], default=[1, 10, 50])
    p.add_argument("--page-seconds", type=float, default=6, help="per query, split over 3 runs")
    p.add_argument("--page-connections", type=int, default=1)
    p.add_argument("--processes", type=lambda v: [int(x) for x in v.split(",")], default=[1, 2, 4])
    p.add_argument("--creates", type=int, default=10)
    p.add_argument("--hostile", type=int, default=1000)
    p.add_argument("--fresh", type=int, default=500, help="freshly signed requests, one at a time")
    p.add_argument("--out", type=Path, help="results file (default bench/RESULTS-api.md)")
    p.add_argument("--baseline", metavar="REV", help="also measure the code of this git revision (before)")
    p.add_argument("--quiet-wait", type=float, default=120, help="max seconds to wait for a quiet machine")
    return p.parse_args()


def wait_for_quiet(max_wait: float) -> str:
    """Wait (up to max_wait) until other processes use less than half a CPU over 3 s."""
    start = time.monotonic()
    while True:
        before = machine_busy_cpu()
        time.sleep(3)
        busy = (machine_busy_cpu() - before) / 3
        if busy < 0.5:
            return f"Other load at the start: {busy:.2f} CPUs (waited {time.monotonic() - start:.0f} s)."
        if time.monotonic() - start > max_wait:
            return f"The machine never got quiet: {busy:.2f} CPUs busy at the start after {max_wait:.0f} s."


@contextmanager
def deployment(work: Path) -> Iterator[Deployment]:
    src_digest = snapshot_source(ROOT / "src" / "bootvault", work / "src")
    dep = Deployment(work / "run", work / "src")
    dep.src_digest = src_digest  # type: ignore[attr-defined]
    try:
        yield dep
    finally:
        dep.stop()


def main() -> None:
    args = parse_args()
    if not Path(WRK).exists():
        raise SystemExit("wrk is missing: apt-get install wrk (make system-packages)")
    work = BENCH / "work" / "api"
    rep = Report(started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    rep.facts["quiet"] = wait_for_quiet(args.quiet_wait)
    rep.facts["load"] = "load average " + " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1/5/15 min)"
    rep.facts["source"] = source_origin()
    print(rep.facts["quiet"], rep.facts["load"], flush=True)
    with deployment(work) as dep:
        (work / "run").mkdir(parents=True, exist_ok=True)
        dep.setup()
        bare_phase(dep.work, rep, args.seconds, args.connections)
        bootvault_phase(dep, rep, args)
    base = baseline_phase(BENCH / "work" / "api-baseline", args.baseline, args) if args.baseline else None
    rep.facts["notes"] = f"Load average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}." + (
        f" Code from ${SRC_REV_ENV}." if os.environ.get(SRC_REV_ENV) else ""
    )
    text = render(rep, args, base)
    out = args.out or BENCH / "RESULTS-api.md"
    out.write_text(text)
    (work / "results.json").write_text(
        json.dumps(
            {
                k: v
                for k, v in rep.__dict__.items()
                if k not in ("bare", "get", "list25", "pages", "processes")
            }
            | {"runs": [r.as_dict() for r in rep.bare + rep.get + rep.list25]},
            indent=1,
            default=str,
        )
    )
    print(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
