"""Progress reporting and kernel writeback hints shared by backup and restore."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable
from typing import Any

Progress = Callable[[int, int], None]


class ProgressReporter:
    """Throttled progress: calls back at most about every 1% and always at the end."""

    def __init__(self, total: int, callback: Progress | None) -> None:
        self.total, self.callback = total, callback
        self.step = max(1, total // 100)
        self.last = -1

    def update(self, done: int) -> None:
        if self.callback is not None and (self.last < 0 or done - self.last >= self.step):
            self.last = done
            self.callback(min(done, self.total), self.total)

    def finish(self) -> None:
        if self.callback is not None and self.last != self.total:
            self.last = self.total
            self.callback(self.total, self.total)


_SYNC_FILE_RANGE_WRITE = 2
_libc: Any = None


def start_writeback(fd: int) -> None:
    """Ask the kernel to start writing fd's dirty pages now (sync_file_range, asynchronous), so
    the final fsync of a large restore has little left to wait for. A no-op where unavailable."""
    global _libc
    if _libc is None:
        name = ctypes.util.find_library("c")
        _libc = ctypes.CDLL(name, use_errno=True) if name else False
    if _libc and hasattr(_libc, "sync_file_range"):
        _libc.sync_file_range(
            ctypes.c_int(fd),
            ctypes.c_longlong(0),
            ctypes.c_longlong(0),
            ctypes.c_uint(_SYNC_FILE_RANGE_WRITE),
        )
