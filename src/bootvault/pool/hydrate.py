"""Hydration of an instantly restored volume: QEMU's block-stream job copies every cluster the
volume does not have yet from its backing (the backup, served lazily) into the qcow2, then drops
the backing from the image. It only fills clusters the volume has not written, so it never copies
over the machine's newer writes, and a restarted job simply goes on with what is still missing.
The backing server reports the backup's holes, so they are never copied.

The job runs inside the volume's daemon (mode "hydrating" when no machine is attached), so it
survives the worker that started it; the HYDRATE job of the service only starts, watches,
throttles and finishes it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import nbd

from bootvault.pool.daemon import NODE, STREAM_JOB
from bootvault.pool.errors import DaemonFailed, PoolError
from bootvault.pool.nbd import Connections
from bootvault.pool.volume import JOB_LOCK_WAIT, PoolVolume

JOB = STREAM_JOB
CHUNK = 4 << 20
MANUAL_END = {"auto-finalize": False, "auto-dismiss": False}  # finalize() drops the backing, durably


@dataclass
class HydrationStatus:
    done: bool  # the volume holds all its data and no longer has a backing
    running: bool  # copying, or copied and waiting for finalize()
    copied: int = 0
    total: int = 0
    error: str | None = None


def _job(q: Any) -> dict[str, Any] | None:
    return next((j for j in q.run("query-jobs") if j.get("id") == JOB), None)


def _has_backing(q: Any) -> bool:
    for node in q.run("query-named-block-nodes", flat=True):
        if node["node-name"] == NODE:
            return bool(node.get("backing_file") or node["image"].get("backing-filename"))
    raise DaemonFailed(f"the daemon has no node {NODE}")


def start(vol: PoolVolume, speed: int = 0) -> None:
    """Make sure the volume's daemon runs and a stream job is copying (idempotent)."""
    if not vol.backing_file.exists():
        return
    with vol.runtime.lock(JOB_LOCK_WAIT):
        if vol.runtime.mode() not in ("attached", "hydrating"):
            vol.runtime.stop()
            vol._spawn("hydrating")
        with vol.runtime.qmp() as q:
            job = _job(q)
            if job is not None and job.get("status") == "concluded":
                q.run("job-dismiss", id=JOB)
                job = None
            if job is None and _has_backing(q):
                q.run("block-stream", **{"job-id": JOB, "device": NODE, "speed": speed, **MANUAL_END})


def status(vol: PoolVolume) -> HydrationStatus:
    if not vol.backing_file.exists():
        return HydrationStatus(done=True, running=False)
    if vol.runtime.pid() is None:
        return HydrationStatus(done=False, running=False, error="the volume's daemon is not running")
    with vol.runtime.qmp() as q:
        job = _job(q)
        block = next((j for j in q.run("query-block-jobs") if j.get("device") == JOB), None)
        copied, total = (block["offset"], block["len"]) if block else (0, 0)
        if job is not None and job.get("status") == "concluded":
            q.run("job-dismiss", id=JOB)
            if job.get("error"):
                return HydrationStatus(False, False, copied, total, error=job["error"])
            job = None
        if job is None:
            return HydrationStatus(done=not _has_backing(q), running=False, copied=total, total=total)
        if job.get("status") == "pending":  # all copied; the backing goes only in finalize()
            _finalize(vol, q)
            return HydrationStatus(done=not _has_backing(q), running=False, copied=total, total=total)
        return HydrationStatus(False, True, copied, total)


def _finalize(vol: PoolVolume, q: Any) -> None:
    """Make the copied data durable, then let QEMU drop the backing from the image, then make
    that durable: a kill at any point leaves either the backing in place or all data on disk."""
    _flush(vol, q)
    q.run("job-finalize", id=JOB)
    q.run("job-dismiss", id=JOB)
    _flush(vol, q)


def _flush(vol: PoolVolume, q: Any) -> None:
    """A flush of the volume node (qcow2 metadata caches and fsync), sent over an NBD export of
    its own: QMP has no flush command."""
    export = "flush"
    q.run("block-export-add", type="nbd", id=export, **{"node-name": NODE}, name=export, writable=False)
    try:
        h = nbd.NBD()
        h.connect_uri(vol.runtime.uri(export))
        h.flush()
        h.shutdown()
    finally:
        q.run("block-export-del", id=export, mode="hard")


def set_speed(vol: PoolVolume, speed: int) -> None:
    """Bytes per second for the copy; 0 is unlimited."""
    with vol.runtime.qmp() as q:
        if _job(q) is not None:
            q.run("block-job-set-speed", device=JOB, speed=speed)


def reads_served(vol: PoolVolume) -> int:
    """Bytes the machine has read from the volume (its export), to yield to on-demand reads."""
    with vol.runtime.qmp() as q:
        for stats in q.run("query-blockstats", **{"query-nodes": True}):
            if stats.get("node-name") == NODE:
                return int(stats["stats"]["rd_bytes"])
    return 0


def finish(vol: PoolVolume) -> None:
    """The volume is whole: stop its backing server and, if no machine uses it, its daemon."""
    with vol.runtime.lock(JOB_LOCK_WAIT):
        if vol.runtime.mode() == "hydrating":
            vol.runtime.stop()
        vol.backing.stop()
        vol.backing_file.unlink(missing_ok=True)


class Prefill:
    """The fast part of hydration: read the backup's data ranges in parallel through a
    copy-on-read filter over the volume. QEMU copies each cluster the volume does not have into it
    (serialised against the machine's writes, so never over them) and skips the ones it has, so a
    restarted prefill only reads. block-stream then finds nothing left to copy and only drops the
    backing (finalize)."""

    EXPORT, NODE_NAME = "prefill", "prefill-cor"

    def __init__(self, vol: PoolVolume, ranges: list[tuple[int, int]], connections: int = 4) -> None:
        self.vol, self.ranges, self.connections = vol, ranges, connections
        self.read = 0  # bytes this prefill has read (the backing server serves these and the machine's)
        self._lock = threading.Lock()

    def open(self) -> None:
        with self.vol.runtime.lock(JOB_LOCK_WAIT):
            if self.vol.runtime.mode() not in ("attached", "hydrating"):
                self.vol.runtime.stop()
                self.vol._spawn("hydrating")
            with self.vol.runtime.qmp() as q:
                if self.NODE_NAME not in q.node_names():
                    q.run("blockdev-add", driver="copy-on-read", **{"node-name": self.NODE_NAME}, file=NODE)
                if not any(e["id"] == self.EXPORT for e in q.run("query-block-exports")):
                    q.run(
                        "block-export-add",
                        type="nbd",
                        id=self.EXPORT,
                        **{"node-name": self.NODE_NAME},
                        name=self.EXPORT,
                        writable=False,
                    )

    def run(self, keep_going: Callable[[Prefill], float]) -> None:
        """Read every range once. keep_going(self) is asked between chunks and returns seconds
        to pause (the caller's throttle), or raises to stop."""
        conns = Connections(self.vol.runtime.uri(self.EXPORT))
        chunks = [(p, min(end, p + CHUNK)) for start, end in self.ranges for p in range(start, end, CHUNK)]
        cursor = iter(chunks)

        def reader() -> None:
            h = conns.handle()
            while True:
                with self._lock:
                    chunk = next(cursor, None)
                if chunk is None:
                    return
                pause = keep_going(self)
                if pause:
                    time.sleep(pause)
                h.pread(chunk[1] - chunk[0], chunk[0])
                with self._lock:
                    self.read += chunk[1] - chunk[0]

        try:
            with ThreadPoolExecutor(self.connections, thread_name_prefix="bv-prefill") as pool:
                for fut in [pool.submit(reader) for _ in range(self.connections)]:
                    fut.result()
        except nbd.Error as exc:
            raise PoolError(f"the copy from the backup failed: {exc}") from exc
        finally:
            conns.close()

    def close(self) -> None:
        with self.vol.runtime.qmp() as q:
            if any(e["id"] == self.EXPORT for e in q.run("query-block-exports")):
                q.run("block-export-del", id=self.EXPORT, mode="hard")
                deadline = time.monotonic() + 10
                while any(e["id"] == self.EXPORT for e in q.run("query-block-exports")):
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)
            if self.NODE_NAME in q.node_names():
                q.run("blockdev-del", **{"node-name": self.NODE_NAME})
