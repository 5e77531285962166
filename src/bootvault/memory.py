"""Keep a long-running worker's resident memory close to what it really holds.

glibc gives every thread its own arena and moves its mmap threshold as large blocks come and go,
so RSS drifts with the history of allocations instead of following live data. Two arenas bound
fragmentation, and a fixed threshold above the engine's largest buffers (17 MiB packs, reused)
keeps those buffers in the heap, where they are recycled without fresh page faults. A fixed
threshold also pins the trim threshold at 128 KiB, so a restore, which frees and allocates 64 KiB
blocks by the thousand, gave its heap back and took it again (brk, then page faults) all the
time: up to 32 MiB of free heap is kept, and the heap grows 16 MiB at a time (hydrating the
2 GiB bench volume: restore 2.1-2.2 s -> 1.8 s)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
SETTINGS = (
    (M_MMAP_THRESHOLD, 32 << 20),
    (M_ARENA_MAX, 2),
    (M_TRIM_THRESHOLD, 32 << 20),
    (M_TOP_PAD, 16 << 20),
)

log = logging.getLogger("bootvault.memory")


def tune_malloc() -> bool:
    """Apply the settings above when running on glibc; returns whether they took effect."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False  # not glibc (musl, macOS): nothing to tune
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = all(mallopt(param, value) == 1 for param, value in SETTINGS)
    if not ok:
        log.warning("mallopt refused a setting; memory use may grow with time")
    return ok
