"""Bounded memory: a 64 GiB sparse volume holding 1 GiB of data backs up and restores through the
API and a worker process; the worker's peak RSS must stay under 200 MiB and its holes must cost no
reading (the worker reads about 1 GiB, not 64). `make bench` runs it after the peer comparison.

    .venv/bin/python bench/memory.py [--volume-gib 64] [--data-mib 1024]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bvrig import BootvaultRig
from measure import fmt_mib, peak_rss_kib, reset_peak_rss, sync

BENCH = Path(__file__).resolve().parent
MIB = 1 << 20
RSS_LIMIT_MIB = 200
RUN = 4 * MIB


def make_image(path: Path, volume_gib: int, data_mib: int) -> None:
    """Runs of 4 MiB at random places: half random bytes, half text from /usr/share (Random(5))."""
    rng = random.Random(5)
    text = b"".join(
        p.read_bytes() for p in sorted(Path("/usr/share/common-licenses").glob("*")) if p.is_file()
    )
    text = (text * (RUN // max(1, len(text)) + 1))[:RUN]
    slots = rng.sample(range(volume_gib * 1024 // 4), data_mib // 4)
    with open(path, "wb") as fh:
        fh.truncate(volume_gib << 30)
        for n, slot in enumerate(sorted(slots)):
            fh.seek(slot * RUN)
            fh.write(rng.randbytes(RUN) if n % 2 else text)


def read_bytes(pid: int) -> int:
    """Bytes the process asked read(2)-family calls for (/proc/PID/io rchar): holes read nothing."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise RuntimeError("no rchar in /proc/PID/io")


def measure(rig: BootvaultRig, action: str, fn) -> dict[str, float | int]:  # type: ignore[no-untyped-def]
    """A backup reads the volume over NBD (a socket: not in rchar), so its bytes read are the
    worker's own count (log field bytes_read); a restore reads the chunk store's files (rchar)."""
    assert rig.worker is not None
    reset_peak_rss(rig.worker.pid)
    sync()
    read0, start = read_bytes(rig.worker.pid), time.perf_counter()
    result = fn()
    sample = result[0] if isinstance(result, tuple) else result
    read = read_bytes(rig.worker.pid) - read0
    if action == "backup":
        read = int(sample.extra["bytes_read"])
    return {"wall": time.perf_counter() - start, "rss_kib": peak_rss_kib(rig.worker.pid), "read": read}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--volume-gib", type=int, default=64)
    p.add_argument("--data-mib", type=int, default=1024)
    args = p.parse_args()
    work = BENCH / "work" / "memory"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    image = work / "sparse.img"
    make_image(image, args.volume_gib, args.data_mib)
    rig = BootvaultRig(work, BENCH.parent / "src" / "bootvault", poll_seconds=0.05, block_size=None)
    rows = []
    try:
        rig.start()
        rig.import_volume(image)
        image.unlink()
        rows.append(("backup (FULL)", measure(rig, "backup", lambda: rig.backup("full", "FULL"))))
        dest = work / "export.img"
        rows.append(("restore", measure(rig, "restore", lambda: rig.restore("restore", "full", dest))))
    finally:
        rig.stop()
    lines = [
        "# bootvault bounded-memory benchmark",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; `.venv/bin/python bench/memory.py` (part of `make bench`).",
        f"A {args.volume_gib} GiB sparse volume holding {args.data_mib} MiB of data in 4 MiB runs,",
        "half random, half text; backed up (FULL) and restored through the API by a separate worker",
        "process. RSS is the worker's VmHWM (reset through /proc/PID/clear_refs before each step). Read:",
        "for the backup, the bytes the worker read from the volume over NBD (its log's bytes_read; the",
        "volume is a qcow2 in the pool, not attached, so the job serves it with a daemon of its own);",
        "for the restore, the worker's rchar delta (chunk store files).",
        "",
        "| step | wall s | worker peak RSS MiB | bytes read by the worker | RSS < 200 MiB | holes not read |",
        "|---|---|---|---|---|---|",
    ]
    ok = True
    for name, row in rows:
        rss_ok = row["rss_kib"] < RSS_LIMIT_MIB * 1024
        read_ok = row["read"] < 1.25 * args.data_mib * MIB
        ok &= rss_ok and (read_ok or name == "restore")
        read_cell = f"{fmt_mib(row['read'])} MiB"
        holes_cell = "-" if name == "restore" else ("PASS" if read_ok else "FAIL")
        lines.append(
            f"| {name} | {row['wall']:.2f} | {row['rss_kib'] / 1024:.0f} | {read_cell} | "
            f"{'PASS' if rss_ok else 'FAIL'} | {holes_cell} |"
        )
    text = "\n".join(lines) + "\n"
    standard = (args.volume_gib, args.data_mib) == (64, 1024)
    out = BENCH / "RESULTS-memory.md" if standard else BENCH / "work" / "RESULTS-memory-quick.md"
    out.write_text(text)
    print(text)
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
