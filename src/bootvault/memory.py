"""Keep a long-running worker's resident memory close to what it really holds.

glibc raises its mmap threshold every time a large block is freed, after which multi-MiB
buffers (segments, packs, blobs) come from the heap and are kept there after use, and every
thread gets its own arena. Both make RSS grow with time instead of with live data. A fixed
threshold maps large buffers and returns them on free; two arenas bound fragmentation."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

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
    ok = all(
        mallopt(param, value) == 1
        for param, value in ((M_MMAP_THRESHOLD, 1 << 20), (M_TRIM_THRESHOLD, 4 << 20), (M_ARENA_MAX, 2))
    )
    if not ok:
        log.warning("mallopt refused a setting; memory use may grow with time")
    return ok
