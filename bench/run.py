"""Benchmark bootvault against restic and borg on the standard workload; `make bench` runs it.

Steps: full (image v0) -> mutation A -> incremental A -> restore of the A backup -> mutation B ->
incremental B. Every tool backs up the same state at every step, in a rotating order: the peers
a raw image file, bootvault its volume (imported from that file and attached: the mutations go
through the NBD URI, and its content is checked through `volume export --format raw`).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import peers as peer_mod
import report
import results
import workload
from bvrig import BootvaultRig
from bvsource import source_origin
from measure import BenchError, Sample, drop_caches, fmt_mib, machine_busy_cpu, wait_quiet
from nbdwrite import apply_writes, read_probe

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
ALL_TOOLS = [report.BV, *peer_mod.PEER_NAMES]
STANDARD_MIB = 2048


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size-mib", type=int, default=STANDARD_MIB, help="image size (default 2048)")
    p.add_argument("--only", default="", help=f"comma list of tools to run, from {','.join(ALL_TOOLS)}")
    p.add_argument("--skip-peers", action="store_true", help="run bootvault only")
    p.add_argument("--cold", action="store_true", help="drop the page cache before every measured command")
    p.add_argument("--poll-seconds", type=float, default=0.05, help="bootvault worker job poll interval")
    p.add_argument("--block-size", type=int, default=0, help="BOOTVAULT_BLOCK_SIZE (default: engine's)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=30,
        help="max seconds to wait for other load to stop before each command",
    )
    p.add_argument("--keep", action="store_true", help="keep repositories and images in bench/work/run")
    p.add_argument("--out", type=Path, help="results file (default bench/RESULTS.md for a standard run)")
    p.add_argument("--note", default="", help="a paragraph put at the top of the results file")
    args = p.parse_args()
    tools = [t.strip() for t in args.only.split(",") if t.strip()] or list(ALL_TOOLS)
    unknown = set(tools) - set(ALL_TOOLS)
    if unknown:
        p.error(f"unknown tool(s) {sorted(unknown)}; known: {ALL_TOOLS}")
    if args.skip_peers:
        tools = [t for t in tools if t == report.BV]
    args.tools = [t for t in ALL_TOOLS if t in tools]
    if args.size_mib < 64:
        p.error("--size-mib must be at least 64")
    return args


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = BENCH / "work"
        self.run_dir = self.work / "run"
        self.image = self.run_dir / "vol.img"
        self.samples: list[Sample] = []
        self.failed: dict[str, str] = {}
        self.facts: dict[str, str] = {}
        self.hashes: dict[str, str] = {}
        self.changed: dict[str, int] = {}
        self.size = args.size_mib * workload.MIB
        self.rig: BootvaultRig | None = None
        self.uri: str | None = None  # the attached bootvault volume
        self.peers = peer_mod.make_peers(self.run_dir, args.tools)
        self.step_no = 0
        self.source_alloc_a = 0
        self.waited = 0.0
        self.noisy: list[str] = []

    def log(self, msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    def prepare(self) -> None:
        need_peers = any(t != report.BV for t in self.args.tools)
        installed = peer_mod.ensure_installed(need_peers)  # before the image: it changes /usr
        if installed:
            self.facts["installed"] = ", ".join(installed)
        start = time.perf_counter()
        base, meta = workload.base_image(self.work / "cache", self.args.size_mib)
        took = time.perf_counter() - start
        self.log(f"base image {base.name} ({'cached' if meta['cached'] else f'built in {took:.1f} s'})")
        self.facts["base image"] = (
            f"{fmt_mib(self.size)} MiB, MiB by kind {meta['mib']}, allocated "
            f"{fmt_mib(int(str(meta['allocated'])))} MiB, sha256 {meta['sha256']}"
        )
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True)
        workload.sparse_copy(base, self.image)
        self.hashes["v0"] = str(meta["sha256"])
        for peer in self.peers:
            self.guard(peer.name, "init", peer.init)
        if report.BV in self.args.tools:
            src = ROOT / "src" / "bootvault"
            self.rig = BootvaultRig(self.run_dir, src, self.args.poll_seconds, self.args.block_size or None)
            self.facts["bootvault code"] = (
                f"src/bootvault ({source_origin()}) snapshotted at start into bench/work/run/bv-src "
                f"(digest {self.rig.source_digest}); every bootvault process imports it through PYTHONPATH"
            )

            def start_bv() -> None:
                assert self.rig is not None
                self.rig.start()
                _, took = self.rig.import_volume(self.image)
                self.facts["bootvault import"] = f"{took:.2f} s (`bootvault volume import`, not compared)"
                self.uri = self.rig.attach()
                self.facts["bootvault volume"] = (
                    "qcow2 in the pool, attached (`bootvault volume attach`) for the whole run; "
                    "mutations written through its NBD URI with libnbd (pwrite, then flush)"
                )
                self.check_same("import")

            self.guard(report.BV, "start", start_bv)

    def guard(self, tool: str, step: str, fn: Callable[[], object]) -> object:
        """Run fn(); on failure record the exact error against tool and skip its later steps."""
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - any failure of a tool is a result to report
            detail = str(exc) if isinstance(exc, BenchError) else traceback.format_exc()
            if tool == report.BV and self.rig is not None:
                detail += "\n--- worker log tail ---\n" + self.rig.log_tail("bootvault-worker.log")
            self.failed[tool] = f"{step}: {detail}"
            self.samples.append(Sample(tool, step, error=f"{step}: {detail}"))
            self.log(f"{tool} FAILED at {step}: {detail}")
            return None

    def check_same(self, when: str) -> None:
        """The bootvault volume (its raw export) must equal the working image (same mutations)."""
        if self.rig is None or self.uri is None:
            return
        digest = self.hashes.get(when) or workload.sha256_file(self.image)
        dest = self.run_dir / "check-export.img"
        self.rig.export(self.rig.volume_id, dest, f"check-{when}")
        try:
            if not workload.matches(dest, self.size, digest):
                raise BenchError(
                    f"after {when} the bootvault volume's raw export differs from the working image"
                )
        finally:
            dest.unlink(missing_ok=True)

    def mutate(self, name: str, writes: Callable[[int], Iterator[workload.Write]]) -> None:
        changed = workload.apply_to_file(self.image, writes(self.size))
        self.hashes[name] = workload.sha256_file(self.image)
        self.changed[name] = changed
        if self.uri is not None and report.BV not in self.failed:
            uri = self.uri
            self.guard(report.BV, f"mutate-{name}", lambda: apply_writes(uri, writes(self.size)))
            if report.BV not in self.failed:
                self.guard(report.BV, f"check-{name}", lambda: self.check_same(name))
        self.log(f"mutation {name}: {fmt_mib(changed)} MiB rewritten, sha256 {self.hashes[name][:16]}…")

    def order(self) -> list[str]:
        k = self.step_no % len(self.args.tools)
        self.step_no += 1
        return self.args.tools[k:] + self.args.tools[:k]

    def step(self, step: str, run_one: Callable[[str], Sample]) -> None:
        for tool in self.order():
            if tool in self.failed:
                self.samples.append(Sample(tool, step, error=f"skipped: {tool} failed earlier"))
                continue
            if self.args.cold and not drop_caches():
                self.facts["page cache"] = "--cold asked, but drop_caches is not permitted here: warm"
            if self.args.quiet_wait > 0:
                waited, quiet = wait_quiet(self.args.quiet_wait)
                self.waited += waited
                if not quiet:
                    self.log(f"machine still busy after {waited:.0f} s; measuring {tool} {step} anyway")
                    self.noisy.append(f"{tool} {step}")
            busy = machine_busy_cpu()
            s = self.guard(tool, step, functools.partial(run_one, tool))
            if isinstance(s, Sample):
                s.other_cpu = max(0.0, machine_busy_cpu() - busy - s.cpu)
                self.samples.append(s)
                if s.allocated is not None:
                    what = (
                        f"allocated {fmt_mib(s.allocated)} MiB, sha256 {'OK' if s.verified else 'MISMATCH'}"
                    )
                else:
                    what = f"stored {fmt_mib(s.stored)} MiB"
                self.log(f"{step:9} {tool:13} wall {s.wall:6.2f} s  cpu {s.cpu:6.2f} s  {what}")

    def backup(self, step: str, kind: str, archive: str) -> Callable[[str], Sample]:
        def run_one(tool: str) -> Sample:
            if tool == report.BV:
                assert self.rig is not None
                return self.rig.backup(step, kind)
            return self.peer(tool).backup(self.image, step, archive)

        return run_one

    def peer(self, name: str) -> peer_mod.Peer:
        return next(p for p in self.peers if p.name == name)

    def restore_one(self, tool: str) -> Sample:
        expect = self.hashes["A"]
        if tool == report.BV:
            assert self.rig is not None
            dest = self.run_dir / "restore-bootvault.img"
            sample, _ = self.rig.restore("restore-A", "incr-A", dest)
            sample.verified = workload.matches(dest, self.size, expect)  # its raw export
            sample.allocated = workload.allocated(dest)
            dest.unlink()
            return sample
        sample, restored = self.peer(tool).restore(self.image, "incrA", "restore-A")
        sample.verified = workload.matches(restored, self.size, expect)
        sample.allocated = workload.allocated(restored)
        shutil.rmtree(self.run_dir / f"restore-{tool}", ignore_errors=True)  # free the space
        return sample

    def probe_nbd(self) -> None:
        """How fast the attached volume's data reads over NBD at all (not a measured step)."""
        if self.uri is None or report.BV in self.failed:
            return
        with open(self.image, "rb") as fh:
            ranges = list(workload.data_extents(fh.fileno(), self.size))
        rates = []
        for conns in (1, 2):
            n, took = read_probe(self.uri, ranges, conns, 1 << 30)
            rates.append(f"{conns} connection{'s' if conns > 1 else ''} {n / 1e6 / took:,.0f} MB/s")
        self.facts["NBD read of the attached volume"] = (
            f"{', '.join(rates)} (Python libnbd, 4 MiB preads of its data, up to 1 GiB, page cache "
            "warm, no hashing; measured after the full step): the most a backup could read at"
        )

    def run(self) -> None:
        self.prepare()
        self.step("full", self.backup("full", "FULL", "full"))
        self.probe_nbd()
        self.mutate("A", workload.writes_a)
        self.facts["source allocated after A"] = f"{fmt_mib(workload.allocated(self.image))} MiB"
        self.source_alloc_a = workload.allocated(self.image)
        self.step("incr-A", self.backup("incr-A", "INCREMENTAL", "incrA"))
        self.step("restore-A", self.restore_one)
        self.mutate("B", workload.writes_b)
        self.step("incr-B", self.backup("incr-B", "INCREMENTAL", "incrB"))
        self.facts["other load"] = (
            f"waited {self.waited:.0f} s in total for the machine to be quiet (< 0.25 CPU busy) before "
            f"commands; started while still busy: {', '.join(self.noisy) or 'none'}"
        )


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    bench = Bench(args)
    try:
        bench.run()
    finally:
        if bench.rig is not None:
            bench.rig.stop()
    if not args.keep and not bench.failed:  # ~9 GiB at 2 GiB; logs stay, a failed run keeps everything
        for child in bench.run_dir.iterdir():
            if child.is_dir() and child.name != "logs":
                shutil.rmtree(child)
            elif child.is_file():
                child.unlink()
    tables = [
        report.raw_table(bench.samples, args.tools),
        report.ratio_table(bench.samples),
        report.targets_table(bench.samples, bench.changed.get("B", 0), bench.source_alloc_a),
    ]
    report.print_tables(tables)
    standard = args.size_mib == STANDARD_MIB and args.tools == ALL_TOOLS and not args.block_size
    out = args.out or (BENCH / "RESULTS.md" if standard else bench.work / f"RESULTS-{args.size_mib}mib.md")
    command = results.rerun_command("bench/run.py", sys.argv[1:])
    took = time.perf_counter() - started
    text = results.markdown(
        args, tables, results.machine(), bench.facts, bench.hashes, bench.changed, bench.failed, command, took
    )
    out.write_text(text + "\n")
    dump = {
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "size_mib": args.size_mib,
        "tools": args.tools,
        "standard": standard,
        "results_file": str(out.relative_to(ROOT)) if out.is_relative_to(ROOT) else str(out),
        "machine": results.machine(),
        "changed": bench.changed,
        "samples": [dataclasses.asdict(s) for s in bench.samples],
    }
    (bench.work / "last-run.json").write_text(json.dumps(dump, indent=1) + "\n")
    print(f"results written to {out} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {took:.0f} s)")
    return 1 if bench.failed else 0


if __name__ == "__main__":
    sys.exit(main())
