"""The markdown of a live-volume run (bench/RESULTS-live.md): machine, method, the tables of
backups, of `serve` as a user sees it, of the writer and of the restore check, the targets, and
what bounds each backup's time."""

from __future__ import annotations

import argparse

import results
from liverecords import GRANULARITY, merge_units, standard_incremental
from livesteps import Live
from measure import fmt_mib

READ_LIMIT = 2.0  # an incremental reads at most 2x the dirty bytes
WALL_LIMIT_S = 1.0  # and takes at most 1 s
STANDARD_LIMIT = 0.1  # the standard incr-B takes at most 0.1x the best of restic and borg


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or not b else f"{a / b:.2f}"


def _cell(v: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if v is None else fmt.format(v)


def markdown(live: Live, args: argparse.Namespace, command: str, took: float) -> str:
    info = results.machine()
    lines = ["# bootvault live-volume benchmark", ""]
    if args.note:
        lines += [f"**{args.note}**", ""]
    lines += [
        f"Produced by `bench/live.py`; rerun with `{command}`"
        f"{'' if command == 'make bench' else ' (also part of `make bench`)'}. Whole run: {took:.0f} s.",
        "",
        "## Machine and versions",
        "",
        *[f"- **{k}**: {v}" for k, v in info.items() if k not in ("restic", "borg")],
        "",
        "## Method",
        "",
        f"- {live.facts.get('volume image', '')}",
        "- bootvault: `serve --workers 0` plus one `bootvault worker` (BOOTVAULT_POLL_SECONDS=0.05, "
        "engine defaults: 64 KiB blocks, 3 threads); the volume is imported, then attached "
        "(`bootvault volume attach`): its qemu-storage-daemon (QSD) serves it read-write over NBD, "
        "and every change below is a libnbd pwrite through that URI (then a flush)",
        f"- wall = CreateBootVolumeBackup call (oci SDK) until a GetBootVolumeBackup, polled every "
        f"{args.poll_ms:g} ms, shows AVAILABLE: the measured wall overstates the real one by up to one "
        "poll interval; job = the worker's claim of the job to its end (its log; the end comes after "
        "AVAILABLE is committed, as the job then tears the point-in-time view down and drops the "
        "parent's bitmaps); pickup = Create call to the worker's claim (its job poll is 50 ms)",
        "- bytes read = the worker's log line `backup <id> read <N> bytes` (field bytes_read); "
        "dirty = the 64 KiB units the writes touch (the bitmaps' granularity) × 64 KiB; raw = bytes "
        "written",
        "- CPU = worker + API + QSD (/proc/PID/stat deltas); other CPU = machine busy time not "
        "spent by these (other load)",
        f"- (a): {fmt_mib(live.change)} MiB as 4 KiB writes at distinct Random(7) 4 KiB blocks of "
        f"the whole volume; (b): {fmt_mib(live.change)} MiB as {args.run_kib} KiB runs at Random(11) "
        "4 KiB-aligned offsets (as mutation B of the standard workload); both random bytes",
        "- writer: a separate process (bench/nbdwrite.py) doing 4 KiB pwrites at random 4 KiB-aligned "
        "offsets of the volume's data runs through the attach URI, one at a time (queue depth 1, no "
        f"flush until it stops); idle = {args.writer_seconds:g} s with nothing else running; during "
        "FULL = the writes that started between the Create call and AVAILABLE of a FULL backup "
        "(every first write to a 64 KiB cluster after the backup's instant copies the old cluster "
        "to the point-in-time overlay first: copy-before-write); the backup and the writer share "
        "the 2 cores",
        "- what a user sees: FULL, (a) and (b) again, in that order, on a fresh data directory and import "
        "of the same image, through `bootvault serve` alone as `make run` starts it: its in-process "
        "job worker, every setting at its default (no BOOTVAULT_ variable but the data directory); "
        "the same SDK calls and GET polls",
        "- correctness: after (b)'s incremental the volume is detached and exported "
        "(`bootvault volume export --format raw`); the (b) backup is restored into a new volume "
        "(CreateBootVolume from the backup) and that volume is exported too; the sha256 of the two "
        "raw exports (all of their bytes, holes hashed as the zeros they read as) must be equal",
        *[f"- {k}: {v}" for k, v in live.facts.items() if k != "volume image"],
        "",
        "## Results",
        "",
        "**Backups of the attached volume**",
        "",
        "| step | changed before it | raw written MiB | dirty (64 KiB) MiB | read MiB | read / dirty | "
        "read / raw | wall s | job s | pickup s | CPU s (worker+api+qsd) | stored Δ MiB | other CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    all_steps = [*live.steps, *[w.backup for w in live.writers if w.backup is not None]]
    for st in all_steps:
        x = st.sample.extra
        cpu = f"{st.sample.cpu:.2f} ({x.get('worker_cpu_s')}+{x.get('api_cpu_s')}+{x.get('qsd_cpu_s')})"
        lines.append(
            f"| {st.name}{' (busy)' if st.busy else ''} | {st.what} | "
            f"{fmt_mib(st.raw_written or None)} | {fmt_mib(st.dirty or None)} | "
            f"{fmt_mib(st.bytes_read)} | {_ratio(st.bytes_read, st.dirty)} | "
            f"{_ratio(st.bytes_read, st.raw_written)} | {st.sample.wall:.3f} | {_cell(st.job_s)} | "
            f"{_cell(st.pickup_s)} | {cpu} | {fmt_mib(st.sample.stored)} | {st.other_cpu:.2f} |"
        )
    lines += user_view(live)
    lines += ["", "**Writer at queue depth 1 (4 KiB random writes through the attach URI)**", ""]
    lines += [
        "| phase | window s | writes | writes/s | MB/s | p50 µs | p99 µs | max ms | QSD CPU s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for w in live.writers:
        lines.append(
            f"| {w.phase} | {w.window_s:.2f} | {len(w.latencies_ns)} | {w.iops:,.0f} | "
            f"{w.iops * 4096 / 1e6:.1f} | {w.pct_us(0.5):.0f} | {w.pct_us(0.99):.0f} | "
            f"{max(w.latencies_ns, default=0) / 1e6:.1f} | {w.qsd_cpu_s:.2f} |"
        )
    if len(live.writers) == 2 and live.writers[0].iops:
        idle, busy = live.writers
        lines += [
            "",
            f"During the FULL backup the writer kept {busy.iops / idle.iops:.0%} of its idle throughput; "
            f"its p99 latency went from {idle.pct_us(0.99):.0f} µs to {busy.pct_us(0.99):.0f} µs "
            f"({busy.pct_us(0.99) / idle.pct_us(0.99):.1f}x).",
        ]
    v = live.verify
    if v:
        same = v["sha_volume"] == v["sha_restored"]
        lines += [
            "",
            "**Correctness**",
            "",
            "| what | sha256 of the raw export | allocated MiB | s |",
            "|---|---|---|---|",
            f"| the detached volume after (b) | `{v['sha_volume']}` | {fmt_mib(v['alloc_volume'])} | "
            f"{v['volume_export_s']:.2f} (export) |",
            f"| restore of incr-b into a new volume | `{v['sha_restored']}` | "
            f"{fmt_mib(v['alloc_restored'])} | {v['restore_s']:.2f} (restore) + "
            f"{v['restore_export_s']:.2f} (export) |",
            "",
            f"Equal: **{'yes' if same else 'NO'}** (hashing both took {v['hash_s']:.1f} s).",
        ]
    lines += ["", "**Targets**", "", "| target | value | limit | result |", "|---|---|---|---|"]

    def target(name: str, value: float | None, limit: float, unit: str = "") -> None:
        if value is None:
            lines.append(f"| {name} | - | <= {limit:g}{unit} | n/a |")
            return
        ok = value <= limit
        lines.append(f"| {name} | {value:.3f}{unit} | <= {limit:g}{unit} | {'PASS' if ok else 'FAIL'} |")

    for st in live.steps[1:]:
        read = st.bytes_read
        target(f"{st.name}: bytes read / dirty bytes (64 KiB)", read / st.dirty if read else None, READ_LIMIT)
        target(
            f"{st.name}: bytes read / raw bytes written", read / st.raw_written if read else None, READ_LIMIT
        )
        target(f"{st.name}: wall (Create → AVAILABLE)", st.sample.wall, WALL_LIMIT_S, " s")
    for st in live.serve_steps[1:]:
        target(f"{st.name} (defaults): wall (Create → AVAILABLE)", st.sample.wall, WALL_LIMIT_S, " s")
    std = standard_incremental()
    std_line = "bench/work/last-run.json not found: run bench/run.py (the standard run) first"
    if std is not None:
        data = std["data"]
        if not data.get("standard"):
            std_line = f"bench/run.py's last run was not a standard run ({data.get('command')})"
            target("standard workload incr-B: wall / best peer", None, STANDARD_LIMIT)
        elif std["bv"] is None or std["peer"] is None:
            std_line = "bench/run.py's last run has no bootvault or no peer incr-B"
            target("standard workload incr-B: wall / best peer", None, STANDARD_LIMIT)
        else:
            bv, peer = std["bv"], std["peer"]
            target("standard workload incr-B: wall / best peer", bv["wall"] / peer["wall"], STANDARD_LIMIT)
            others = ", ".join(f"{p['tool']} {p['wall']:.2f} s" for p in std["peers"])
            std_line = (
                f"from bench/run.py's run finished {data['finished']} (`{data['command']}`, "
                f"{data['results_file']}): bootvault incr-B {bv['wall']:.2f} s (read "
                f"{fmt_mib(bv['extra'].get('bytes_read'))} MiB), best peer {peer['tool']} "
                f"{peer['wall']:.2f} s ({others}); same durability as documented there (`sync` before "
                "every command; each tool commits its repository durably before it returns)"
            )
    else:
        target("standard workload incr-B: wall / best peer", None, STANDARD_LIMIT)
    if v:
        ok = v["sha_volume"] == v["sha_restored"]
        lines.append(
            f"| restore of incr-b equals the detached volume | - | sha256 equal | "
            f"{'PASS' if ok else 'FAIL'} |"
        )
    lines += ["", f"Standard workload: {std_line}.", ""]
    lines += physical_limits(live)
    return "\n".join(lines) + "\n"


def user_view(live: Live) -> list[str]:
    """The separate worker's walls beside those of `serve` as `make run` starts it."""
    if not live.serve_steps:
        return []
    lines = [
        "",
        "**What a user sees: Create → AVAILABLE through `serve` as `make run` starts it**",
        "",
        "| step | separate worker wall s | `serve` wall s | `serve` job s | `serve` pickup s | "
        "`serve` CPU s (serve+qsd) | `serve` read MiB | other CPU s | "
        "`serve` as the SDK's waiter sees it s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for st, first in zip(live.serve_steps, live.steps, strict=False):
        x = st.sample.extra
        busy = " (busy)" if st.busy else ""
        lines.append(
            f"| {first.name}{busy} | {first.sample.wall:.3f} | {st.sample.wall:.3f} | "
            f"{_cell(st.job_s)} | {_cell(st.pickup_s)} | {st.sample.cpu:.2f} ({x.get('worker_cpu_s')}+"
            f"{x.get('qsd_cpu_s')}) | {fmt_mib(st.bytes_read)} | {st.other_cpu:.2f} | "
            f"{waiter_sees(st.sample.wall)} |"
        )
    lines += [
        "",
        "The last column is computed, not measured: `oci.wait_until` (and the SDK's "
        "`..._and_wait_for_state`) GETs after 1, 2, 4, 8 ... s of sleep, so a backup that takes the "
        "`serve` wall is first seen AVAILABLE at the next of 1, 3, 7, 15 ... s (plus the GETs' own time).",
    ]
    return lines


def waiter_sees(wall: float) -> int:
    """When the SDK's waiter (sleeps of 1, 2, 4 ... s, at most 30) first sees a state reached after wall s."""
    at, sleep = 0, 1
    while at < wall:
        at, sleep = at + sleep, min(2 * sleep, 30)
    return at


def physical_limits(live: Live) -> list[str]:
    """Where the time of each backup goes, next to what this machine can do at all."""
    p = live.probe
    out = ["## What bounds it", ""]
    if p:
        mbs = p["seq_bytes"] / 1e6 / p["seq_s"]
        out.append(
            f"- NBD read of the attached export from Python (libnbd, 4 MiB preads, 1 connection, "
            f"page cache warm): {fmt_mib(p['seq_bytes'])} MiB in {p['seq_s']:.2f} s = {mbs:,.0f} MB/s "
            "(../shared/reference/live-volumes/README.md §2: 2 GiB in 1.6-1.8 s without hashing)."
        )
    full = live.steps[0] if live.steps else None
    if full is not None and full.bytes_read and full.sample.wall:
        x = full.sample.extra
        out.append(
            f"- full: {fmt_mib(full.bytes_read)} MiB read in {full.sample.wall:.2f} s "
            f"({full.bytes_read / 1e6 / full.sample.wall:,.0f} MB/s of the wall); CPU: worker "
            f"{x.get('worker_cpu_s')} s (hash, compress, encrypt, pack), QSD {x.get('qsd_cpu_s')} s "
            f"(reading the qcow2, serving NBD), API {x.get('api_cpu_s')} s. The end-to-end ceiling of "
            "this machine for read, hash, compress and write is 1 000-1 190 MB/s on 2 cores "
            "(machine-limits.md, zstd level 3; the engine uses level 1)."
        )
    for st in live.steps[1:]:
        floor = st.extra.get("floor_s")
        if floor is None:
            continue
        units, extents = st.dirty // GRANULARITY, len(merge_units(st.extra["units"]))
        x = st.sample.extra
        why = (
            f"{floor / max(1, extents) * 1e6:.0f} µs per 64 KiB request: QSD serves NBD requests one "
            "at a time in one thread, so small scattered extents cost round trips, not bandwidth"
            if units < 2 * extents
            else f"{st.dirty / 1e6 / floor:,.0f} MB/s"
        )
        out.append(
            f"- {st.name}: {units} dirty 64 KiB units in {extents} extents. Reading just those through "
            f"the attach URI on one connection takes {floor:.3f} s ({why}). The job took "
            f"{_cell(st.job_s)} s (worker CPU {x.get('worker_cpu_s')} s, QSD "
            f"CPU {x.get('qsd_cpu_s')} s): its fixed part is the job pickup ({_cell(st.pickup_s)} s), "
            "the point-in-time view's setup and teardown over QMP, the manifest and the database "
            "commit; the wall adds up to one GET poll interval."
        )
    out += [
        "- Per 64 KiB dirty unit an incremental reads, hashes (blake3 ~7.8 GB/s per core) and "
        "compresses (zstd level 1: 550-650 MB/s per core on text/binary, several GB/s on zeros and "
        "random) one block (machine-limits.md). 4 KiB scattered writes dirty 16x their size at "
        "this granularity, which is why (a) reads ~16x its raw bytes while (b) reads ~1.2x: the "
        "bitmap cannot tell which 4 KiB of a 64 KiB unit changed.",
        "- Copy-before-write: while a backup's point-in-time view exists, the first write to each "
        "64 KiB cluster first copies the old cluster into the view's overlay (a 64 KiB read and a "
        "64 KiB qcow2 write in QSD) before the 4 KiB write proceeds; later writes to the same "
        "cluster pay nothing extra. QSD runs the writer's requests and the backup's reads in one "
        "thread, and the worker's hashing and compression take the same 2 cores.",
    ]
    return out
