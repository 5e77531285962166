"""Hydration of an instantly restored volume, on the pool's side.

An instantly restored volume starts as an empty qcow2 whose backing is the backup, read over NBD
from its backing server (pool/backing.py). Hydration makes it local in two steps:

1. The engine restores the backup into `<ocid>.base`, a raw file beside the volume (written
   under a temporary name, fsynced, then renamed: a base that exists is whole).
2. The qcow2's backing switches from the backing server to that file, and the server stops.

The backing server and the base hold the same bytes, the backup's, so the switch may happen at
any instant, even under a running machine, and a kill on either side of it leaves a correct
volume. The machine's writes are in the qcow2 and are never copied over: the base only answers
for clusters the qcow2 does not have.

With a daemon serving the volume, the switch is live: the base is added as a node and the qcow2
node is reopened onto it (QMP `blockdev-reopen`). The image's header is then rewritten the next
time the volume is opened without a daemon (`PoolVolume.settle_header`), because QEMU 7.2's
`change-backing-file` records the qcow2's own format for the new backing, not raw.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bootvault.fsutil import atomic_path, fsync_dir
from bootvault.pool.daemon import QCOW2_NODE, STREAM_JOB
from bootvault.pool.errors import DaemonFailed
from bootvault.pool.volume import JOB_LOCK_WAIT, PoolVolume

BASE_NODE = "base"


@contextlib.contextmanager
def base_target(vol: PoolVolume) -> Iterator[Path]:
    """A temporary path for the restore of the base; renamed into place when the caller is done."""
    vol.clear_tmp()
    with atomic_path(vol.base_file) as tmp:
        yield tmp


def switch_to_base(vol: PoolVolume) -> bool:
    """Make the volume read from its base instead of its backing server, then stop the server.
    False if the volume was deleted meanwhile (its base, restored too late, goes as well)."""
    with vol.runtime.lock(JOB_LOCK_WAIT):
        if not vol.path.exists():
            vol.base_file.unlink(missing_ok=True)
            vol.backing.stop()
            return False
        if not vol.base_file.exists():
            raise DaemonFailed(f"the base of boot volume {vol.volume_id} is missing ({vol.base_file})")
        attached = vol.runtime.mode() == "attached"
        if not attached:  # no machine: whatever daemon runs (a dead job's, an earlier release's) can go
            vol.runtime.stop()
        if vol.backing_file.exists():
            if attached:
                with vol.runtime.qmp() as q:
                    _reopen_onto_base(q, vol.base_file)
            vol.backing_file.unlink()
            fsync_dir(vol.dir)
        if not attached:
            vol.settle_header()
        vol.backing.stop()
        return True


def _reopen_onto_base(q: Any, base: Path) -> None:
    _cancel_stream(q)
    if BASE_NODE not in q.node_names():
        q.run(
            "blockdev-add",
            driver="raw",
            **{"node-name": BASE_NODE, "read-only": True},
            file={"driver": "file", "filename": str(base)},
        )
    q.run("blockdev-reopen", options=[{**QCOW2_NODE, "backing": BASE_NODE}])


def _cancel_stream(q: Any) -> None:
    """An earlier release hydrated with a block-stream job, which holds the node: stop it (what
    it copied stays; the base answers for the rest)."""
    if _stream_job(q) is None:
        return
    q.run("job-cancel", id=STREAM_JOB)
    deadline = time.monotonic() + 30
    while (job := _stream_job(q)) is not None:
        if job.get("status") == "concluded":
            q.run("job-dismiss", id=STREAM_JOB)
            return
        if time.monotonic() > deadline:
            raise DaemonFailed("an earlier hydration job of the daemon would not stop")
        time.sleep(0.02)


def _stream_job(q: Any) -> dict[str, Any] | None:
    return next((j for j in q.run("query-jobs") if j.get("id") == STREAM_JOB), None)
