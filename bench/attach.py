"""Attach times: `bootvault volume attach` (the CLI, wall time, as a user runs it) of a plain
volume, of a volume restored instantly and still hydrating, and of the same volume once hydrated;
then, for the hydrating volume, the time from the attach to its first 4 KiB read (the backing
server opens the backup in the background, so the first read may wait for it). `make bench` runs
it and writes bench/RESULTS-attach.md; `BENCH_SRC_REV=<rev>` measures a commit's code instead.

The worker is killed while timing (right after the restore, its copy throttled, so the volume
stays unhydrated; a new one, unthrottled, then hydrates the volume), so nothing else moves
the volume under the measurement. Every attach is followed by a detach, which stops the volume's
daemons: each attach starts them anew. The cases take turns (one attach of each, then again), so
a busy machine's load weighs on all of them alike. One case rewrites the volume's `.backing` file
without the backup's size, as releases before the size was recorded wrote it: the backing server
then opens the backup before it serves (the old attach path, on the same code and machine).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import nbd
from bvrig import BootvaultRig
from bvsource import source_origin
from measure import BenchError, stop_process
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

BENCH = Path(__file__).resolve().parent
AD = "bootvault:AD-1"
MIB = 1 << 20


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=7, help="attaches per case (default 7)")
    p.add_argument("--size-mib", type=int, default=64, help="data in the volume (default 64)")
    p.add_argument("--work", type=Path, default=BENCH / "work" / "attach")
    p.add_argument("--out", type=Path, default=BENCH / "RESULTS-attach.md")
    return p.parse_args()


def make_image(path: Path, size: int) -> None:
    rng = random.Random(7)
    with open(path, "wb") as fh:
        for _ in range(size // MIB):
            fh.write(rng.randbytes(MIB) if rng.random() < 0.6 else bytes(MIB))


def wait(rig: BootvaultRig, getter: str, ident: str, done: str) -> object:
    assert rig.client is not None
    deadline = time.monotonic() + 600
    while True:
        found = getattr(rig.client, getter)(ident).data
        if found.lifecycle_state == "FAULTY":
            raise BenchError(f"{ident} went FAULTY: {found.system_tags}")
        if done == "hydrated" and found.is_hydrated or found.lifecycle_state == done:
            return found
        if time.monotonic() > deadline:
            raise BenchError(f"{ident} did not reach {done}")
        time.sleep(0.05)


def attach_once(rig: BootvaultRig, volume_id: str, first_read: bool = False) -> float:
    """Seconds from starting `volume attach` to its URI (or to the first 4 KiB read through it)."""
    start = time.perf_counter()
    uri = rig.attach(volume_id)
    if first_read:
        h = nbd.NBD()
        h.connect_uri(uri)
        h.pread(4096, 0)
        h.shutdown()
    took = time.perf_counter() - start
    rig.detach(volume_id)
    return took


def in_turns(cases: dict[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    took: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, case in cases.items():
            took[name].append(case())
    return took


def without_size(side: Path, case: Callable[[], float]) -> Callable[[], float]:
    """The case with `.backing` holding the backup id alone (the old path), then put back."""

    def run() -> float:
        written = side.read_text()
        side.write_text(written.split()[0])
        try:
            return case()
        finally:
            side.write_text(written)

    return run


def row(name: str, took: list[float]) -> str:
    cells = " ".join(f"{t:.2f}" for t in took)
    return f"| {name} | {statistics.median(took):.2f} | {min(took):.2f} | {max(took):.2f} | {cells} |"


def main() -> int:
    args = parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    image = args.work / "disk.img"
    make_image(image, args.size_mib * MIB)
    rig = BootvaultRig(args.work, BENCH.parent / "src" / "bootvault", poll_seconds=0.05, block_size=None)
    rig.env["BOOTVAULT_HYDRATE_SPEED_BPS"] = "1024"
    rig.env["BOOTVAULT_LEASE_SECONDS"] = "3"  # the next worker takes the killed one's job over soon
    rig.start()
    started = time.time()
    try:
        assert rig.client is not None
        plain, _ = rig.import_volume(image)
        backup = rig.client.create_boot_volume_backup(
            CreateBootVolumeBackupDetails(boot_volume_id=plain, type="FULL")
        ).data
        wait(rig, "get_boot_volume_backup", backup.id, "AVAILABLE")
        details = CreateBootVolumeDetails(
            compartment_id=rig.tenancy_id,
            availability_domain=AD,
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
        )
        restored = rig.client.create_boot_volume(details).data.id
        wait(rig, "get_boot_volume", restored, "AVAILABLE")
        assert rig.worker is not None
        rig.worker.kill()  # mid-copy: a stopped worker would finish the hydration first
        rig.worker.wait()
        side = rig.volume_path(restored).with_suffix(".backing")
        hydrating = in_turns(
            {
                "plain volume": lambda: attach_once(rig, plain),
                "restored, hydrating": lambda: attach_once(rig, restored),
                "restored, hydrating, `.backing` without the size (old path)": without_size(
                    side, lambda: attach_once(rig, restored)
                ),
                "restored, hydrating: attach + first 4 KiB read": lambda: attach_once(rig, restored, True),
                "restored, hydrating, old path: attach + first 4 KiB read": without_size(
                    side, lambda: attach_once(rig, restored, True)
                ),
            },
            args.repeat,
        )
        rig.env["BOOTVAULT_HYDRATE_SPEED_BPS"] = "0"
        rig.worker = rig._spawn(["worker"], "bootvault-worker.log")
        wait(rig, "get_boot_volume", restored, "hydrated")
        stop_process(rig.worker)
        hydrated = in_turns(
            {
                "plain volume (again)": lambda: attach_once(rig, plain),
                "restored, hydrated": lambda: attach_once(rig, restored),
            },
            args.repeat,
        )
        rows = [row(name, took) for name, took in {**hydrating, **hydrated}.items()]
    finally:
        rig.stop()
    text = (
        "# Attach times\n\n"
        f"`bootvault volume attach` wall time in seconds, {args.repeat} attaches per case, each followed\n"
        f"by a detach; a {args.size_mib} MiB volume (60 % random data). `bench/attach.py`;\n"
        f"code: {source_origin()}.\n\n"
        "| case | median | min | max | all |\n|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
        f"Run took {time.time() - started:.0f} s.\n"
    )
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
