"""NBD I/O of the bench. Changes to an attached volume go through its NBD URI (`bootvault
volume attach` prints it), never into the qcow2 file: the daemon's dirty bitmaps see only writes
made through it.

As a module: `apply_writes(uri, writes)`; `read_probe` (NBD read throughput). As a script: the
latency writer of bench/live.py, a process doing 4 KiB writes at random 4 KiB-aligned offsets of
the given ranges at queue depth 1 (one pwrite at a time, no flush until the end) until a stop
file appears, then writing one line per write to --out: `<start monotonic ns> <latency ns>`.

    python bench/nbdwrite.py URI --ranges START:END,... --seed N --stop FILE --out FILE
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import sys
import threading
import time
from array import array
from collections.abc import Iterable
from pathlib import Path

import nbd

BLOCK = 4096
MAX_REQUEST = 32 << 20  # QEMU's NBD server refuses larger requests


def connect(uri: str) -> nbd.NBD:
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def apply_writes(uri: str, writes: Iterable[tuple[int, bytes]]) -> int:
    """pwrite every (offset, bytes) through the URI, then flush; return the bytes written."""
    h = connect(uri)
    total = 0
    try:
        for off, data in writes:
            view = memoryview(data)
            for pos in range(0, len(view), MAX_REQUEST):
                h.pwrite(view[pos : pos + MAX_REQUEST], off + pos)
            total += len(data)
        h.flush()
    finally:
        h.shutdown()
    return total


def read_probe(uri: str, ranges: list[tuple[int, int]], connections: int, limit: int) -> tuple[int, float]:
    """Read up to `limit` bytes of the ranges through the URI with 4 MiB preads, split over
    `connections` threads each with its own connection; returns (bytes read, seconds)."""
    chunks: list[tuple[int, int]] = []
    total = 0
    for a, b in ranges:
        for pos in range(a, b, 4 << 20):
            n = min(4 << 20, b - pos, limit - total)
            if n <= 0:
                break
            chunks.append((pos, n))
            total += n
    handles = [connect(uri) for _ in range(connections)]

    def work(k: int) -> None:
        for pos, n in chunks[k::connections]:
            handles[k].pread(n, pos)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.perf_counter() - start
    for h in handles:
        h.shutdown()
    return total, took


def _parse_ranges(text: str) -> list[tuple[int, int]]:
    out = []
    for part in text.split(","):
        a, b = part.split(":")
        out.append((int(a), int(b)))
    return out


def latency_writer(uri: str, ranges: list[tuple[int, int]], seed: int, stop: Path, out: Path) -> int:
    """QD1 4 KiB random writes into ranges until `stop` exists; timings written to `out`."""
    rng = random.Random(seed)
    blocks = [(a // BLOCK, b // BLOCK) for a, b in ranges if b - a >= BLOCK]
    cum = list(itertools.accumulate(b - a for a, b in blocks))
    payload = rng.randbytes(BLOCK * 64)  # 64 different 4 KiB payloads, reused in turn
    starts, lats = array("q"), array("q")
    h = connect(uri)
    n = 0
    try:
        while not stop.exists():
            for _ in range(64):  # check the stop file every 64 writes (a stat costs ~2 us)
                a, b = rng.choices(blocks, cum_weights=cum)[0]
                off = rng.randrange(a, b) * BLOCK
                data = payload[(n % 64) * BLOCK : (n % 64 + 1) * BLOCK]
                t0 = time.monotonic_ns()
                h.pwrite(data, off)
                t1 = time.monotonic_ns()
                starts.append(t0)
                lats.append(t1 - t0)
                n += 1
        h.flush()
    finally:
        h.shutdown()
    tmp = out.with_suffix(".tmp")
    with open(tmp, "w") as fh:
        fh.writelines(f"{s} {lat}\n" for s, lat in zip(starts, lats, strict=True))
    os.replace(tmp, out)
    return n


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("uri")
    p.add_argument("--ranges", required=True, help="comma list of START:END byte ranges to write into")
    p.add_argument("--seed", type=int, default=99)
    p.add_argument("--stop", type=Path, required=True, help="stop when this file exists")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    latency_writer(args.uri, _parse_ranges(args.ranges), args.seed, args.stop, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
