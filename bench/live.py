"""Live volumes: backups of an attached volume that a machine keeps writing. `make bench` runs it
after bench/run.py and writes bench/RESULTS-live.md.

A 64 GiB volume holding 2 GiB of the standard workload's data (bench/workload.py live_image:
its /usr and random bytes in runs of 1-32 MiB, each at a Random(64) 32 MiB slot, the rest holes)
is imported and attached. Then:

1. FULL backup.
2. (a) 20 MiB written through the attach URI as scattered 4 KiB writes (Random(7), distinct
   4 KiB blocks anywhere in the volume); INCREMENTAL.
3. (b) 20 MiB written as 256 KiB runs at random 4 KiB-aligned offsets (Random(11)); INCREMENTAL.
4. Correctness: detach; export the volume (raw); restore the (b) backup into a new volume and
   export it (raw); the two exports must have the same sha256.
5. Copy-before-write cost: attach again; a writer process does 4 KiB random writes into the
   data at queue depth 1, first with nothing else running, then during a FULL backup.
6. The standard 2 GiB workload's incr-B against restic and borg, from bench/run.py's last run
   (bench/work/last-run.json), when that run was a standard one.
7. What a user sees: steps 1-3 again on a fresh import of the same image, through `bootvault
   serve` alone as `make run` starts it (its in-process worker, every setting at its default),
   beside the figures of the separate worker above.

Wall times run from the CreateBootVolumeBackup call to the first GET that shows AVAILABLE
(polled every --poll-ms, 50 ms by default); bytes read are the worker's (its log line
"backup <id> read <N> bytes", field bytes_read); dirty bytes are counted from the writes at the
bitmap's 64 KiB granularity.

    .venv/bin/python bench/live.py              # the standard run (about 3 minutes)
    .venv/bin/python bench/live.py --quick      # 8 GiB volume, 256 MiB data, 4 MiB changes
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import results
from liverecords import BENCH
from livereport import markdown
from livesteps import Live

STANDARD = {"volume_gib": 64, "data_mib": 2048, "change_mib": 20, "run_kib": 256}
QUICK = {"volume_gib": 8, "data_mib": 256, "change_mib": 4, "run_kib": 256}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--quick", action="store_true", help="small sizes for development (8 GiB / 256 MiB / 4 MiB)"
    )
    p.add_argument("--volume-gib", type=int, help="volume size (default 64)")
    p.add_argument("--data-mib", type=int, help="data in the volume (default 2048)")
    p.add_argument("--change-mib", type=int, help="bytes changed before each incremental (default 20)")
    p.add_argument("--run-kib", type=int, help="length of the clustered writes (default 256)")
    p.add_argument("--writer-seconds", type=float, default=3.0, help="idle writer phase (default 3)")
    p.add_argument("--poll-ms", type=float, default=50, help="GET poll interval, at most 100 (default 50)")
    p.add_argument("--quiet-wait", type=float, default=15, help="max seconds to wait for a quiet machine")
    p.add_argument("--note", default="", help="a paragraph put at the top of the results file")
    p.add_argument("--out", type=Path, help="results file (default bench/RESULTS-live.md for a standard run)")
    p.add_argument("--keep", action="store_true", help="keep bench/work/live (volumes, store, logs)")
    args = p.parse_args()
    base = QUICK if args.quick else STANDARD
    for k, v in base.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if not 0 < args.poll_ms <= 100:
        p.error("--poll-ms must be in (0, 100]")
    args.standard = {k: getattr(args, k) for k in STANDARD} == STANDARD
    return args


def main() -> int:
    args = parse_args()
    started = time.perf_counter()
    live = Live(args)
    failed = None
    try:
        live.run()
    except Exception as exc:  # noqa: BLE001 - report what was measured, then the error
        failed = exc
        if live.rig is not None:
            print("--- worker log tail ---\n" + live.rig.log_tail(live.rig.worker_log_name), file=sys.stderr)
    finally:
        if live.rig is not None:
            live.rig.stop()
    took = time.perf_counter() - started
    command = results.rerun_command("bench/live.py", sys.argv[1:])
    text = markdown(live, args, command, took)
    if failed is not None:
        text += f"\n## Error\n\n```\n{type(failed).__name__}: {failed}\n```\n"
    out = args.out or (
        BENCH / "RESULTS-live.md" if args.standard else BENCH / "work" / "RESULTS-live-quick.md"
    )
    out.write_text(text)
    print(text)
    print(f"results written to {out} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {took:.0f} s)")
    if not args.keep and failed is None:
        shutil.rmtree(live.work, ignore_errors=True)
    if failed is not None:
        raise failed
    return 0 if live.correct else 1  # a missed target is a result; a wrong restore is an error


if __name__ == "__main__":
    sys.exit(main())
