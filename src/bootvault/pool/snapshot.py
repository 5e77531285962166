"""Point-in-time views of a served volume, and the dirty bitmaps that make incrementals cheap.

A view is copy-before-write fleecing: a temporary qcow2 overlay `fleece-<tag>` whose backing is
the volume node, a `blockdev-backup sync=none` job that copies old data there before the
machine overwrites it, and a read-only NBD export `snap-<tag>` of the overlay. Writes go on at
full speed; the export keeps the bytes of the instant the job started. That instant is read
from QSD's own JOB_STATUS_CHANGE event, emitted inside the drained section of the transaction:
a write the machine saw completed before it is in the view, one it sent after it is not.

Bitmaps are persistent, named `bv.<backup id>.<attempt>`, and record the changes since that
backup's instant. A backup's transaction adds its own bitmap and disables every other one, so
the union of all `bv.*` bitmaps is always a superset of the changes since the oldest of them.
An incremental whose parent P still has a bitmap `bv.P.*` reads that union; otherwise it reads
every allocated cluster. Only after the backup is committed are the older bitmaps removed; on
failure they are merged back into the parent's, which records again: no change is forgotten.
A bitmap left "in use" by a killed daemon is inconsistent: all are dropped, the backup reads
everything, and its own new bitmap starts a clean history.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bootvault.pool import qemuimg
from bootvault.pool.daemon import NODE, Qmp, Runtime
from bootvault.pool.errors import DaemonFailed

log = logging.getLogger("bootvault.pool")
PREFIX = "bv."
READ_BITMAP = "bvread"  # transient union of the bitmaps an incremental reads


def bitmap_name(backup_id: str, attempt: int) -> str:
    return f"{PREFIX}{backup_id}.{attempt}"


def _backup_of(name: str) -> str | None:
    if not name.startswith(PREFIX) or name.count(".") < 2:
        return None
    return name[len(PREFIX) :].rsplit(".", 1)[0]


@dataclass
class BitmapPlan:
    """What the next backup reads, decided from the bitmaps the volume has."""

    incremental: bool
    reason: str
    sources: list[str] = field(default_factory=list)  # unioned into READ_BITMAP
    base: str | None = None  # the parent's own bitmap: where changes merge back on failure
    drop: list[str] = field(default_factory=list)  # unusable: removed before the transaction


def plan_bitmaps(
    bitmaps: dict[str, dict[str, Any]], parent_id: str | None, want_incremental: bool
) -> BitmapPlan:
    ours = {n: b for n, b in bitmaps.items() if n.startswith(PREFIX)}
    if any(b.get("inconsistent") for b in ours.values()):
        return BitmapPlan(
            False, "the dirty bitmap was left inconsistent by an unclean stop", drop=sorted(ours)
        )
    base_names = sorted((n for n in ours if parent_id and _backup_of(n) == parent_id), key=_attempt)
    base = base_names[-1] if base_names else None
    if not want_incremental:
        return BitmapPlan(False, "a FULL backup reads every allocated cluster", base=base)
    if parent_id is None:
        return BitmapPlan(False, "the first backup of the volume reads every allocated cluster", base=base)
    if base is None:
        return BitmapPlan(False, "no dirty bitmap was started at the parent backup", base=None)
    return BitmapPlan(True, "reading only the clusters changed since the parent", sorted(ours), base)


def _attempt(name: str) -> int:
    try:
        return int(name.rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return 0


class Fleece:
    """A read-only point-in-time export of a served volume, torn down in order on close."""

    def __init__(self, runtime: Runtime, pool_dir: Path) -> None:
        self.runtime = runtime
        self.tag = secrets.token_hex(4)
        self.node, self.job, self.export_id = f"fleece-{self.tag}", f"fleecing-{self.tag}", f"snap-{self.tag}"
        self.file = pool_dir / f".fleece-{runtime.dir.name}-{self.tag}.qcow2"
        self.instant: datetime | None = None

    @property
    def uri(self) -> str:
        return self.runtime.uri(self.export_id)

    def start(self, q: Qmp, actions: list[dict[str, Any]]) -> None:
        """Create the overlay and run `actions` and the fleecing job in one transaction."""
        qemuimg.create(self.file, q.virtual_size())
        q.run(
            "blockdev-add",
            driver="qcow2",
            **{"node-name": self.node},
            file={"driver": "file", "filename": str(self.file)},
            backing=NODE,
            discard="unmap",
        )
        q.events()  # forget older events: the one we want comes with this transaction
        backup = {"device": NODE, "target": self.node, "sync": "none", "job-id": self.job}
        before = datetime.now(UTC)
        q.run("transaction", actions=[*actions, {"type": "blockdev-backup", "data": backup}])
        after = datetime.now(UTC)
        self.instant = _created_at(q.events(), self.job) or before + (after - before) / 2

    def export(self, q: Qmp, bitmaps: list[str]) -> None:
        q.run(
            "block-export-add",
            type="nbd",
            id=self.export_id,
            **{"node-name": self.node},
            name=self.export_id,
            writable=False,
            bitmaps=bitmaps,
        )

    def close(self, q: Qmp) -> None:
        for command, args in (
            ("block-export-del", {"id": self.export_id, "mode": "hard"}),
            ("block-job-cancel", {"device": self.job, "force": True}),
        ):
            with contextlib.suppress(DaemonFailed):
                q.run(command, **args)
        _wait_gone(q, "query-block-exports", self.export_id)
        _wait_gone(q, "query-jobs", self.job)
        with contextlib.suppress(DaemonFailed):
            q.run("blockdev-del", **{"node-name": self.node})
        self.file.unlink(missing_ok=True)


def _created_at(events: list[dict[str, Any]], job: str) -> datetime | None:
    for ev in events:
        data = ev.get("data", {})
        if (
            ev.get("event") == "JOB_STATUS_CHANGE"
            and data.get("id") == job
            and data.get("status") == "created"
        ):
            ts = ev["timestamp"]
            return datetime.fromtimestamp(ts["seconds"] + ts["microseconds"] / 1e6, UTC)
    return None


def _wait_gone(q: Qmp, query: str, ident: str, timeout: float = 10.0) -> None:
    """Exports and jobs end asynchronously; their node can be deleted only once they have."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(item.get("id") == ident for item in q.run(query)):
            return
        time.sleep(0.01)
    log.warning("%s %s did not end in %.0f s", query, ident, timeout)


def clear_leftovers(q: Qmp, runtime: Runtime, pool_dir: Path) -> None:
    """Remove what a backup or clone that died left in a daemon still running: exports, jobs,
    overlay nodes and their files. Only called with the volume's lock held."""
    for export in q.run("query-block-exports"):
        if export["id"].startswith("snap-"):
            with contextlib.suppress(DaemonFailed):
                q.run("block-export-del", id=export["id"], mode="hard")
            _wait_gone(q, "query-block-exports", export["id"])
    for job in q.run("query-jobs"):
        if job["id"].startswith("fleecing-"):
            with contextlib.suppress(DaemonFailed):
                q.run("job-cancel", id=job["id"])
            _wait_gone(q, "query-jobs", job["id"])
            with contextlib.suppress(DaemonFailed):
                q.run("job-dismiss", id=job["id"])
    for node in sorted(q.node_names()):
        if node.startswith("fleece-"):
            with contextlib.suppress(DaemonFailed):
                q.run("blockdev-del", **{"node-name": node})
    if READ_BITMAP in q.bitmaps():
        q.run("block-dirty-bitmap-remove", node=NODE, name=READ_BITMAP)
    for stale in pool_dir.glob(f".fleece-{runtime.dir.name}-*.qcow2"):
        log.info("removing stale fleece file %s", stale)
        stale.unlink(missing_ok=True)


def rotate_actions(q: Qmp, plan: BitmapPlan, new_bitmap: str, granularity: int) -> list[dict[str, Any]]:
    """Drop unusable bitmaps now; return the transaction actions that start `new_bitmap` and
    freeze every other one."""
    for name in plan.drop:
        log.warning("dropping dirty bitmap %s: %s", name, plan.reason)
        q.run("block-dirty-bitmap-remove", node=NODE, name=name)
    current = q.bitmaps()
    if new_bitmap in current:  # only a crashed run of this very attempt number could have made it
        q.run("block-dirty-bitmap-remove", node=NODE, name=new_bitmap)
        current.pop(new_bitmap)
    add = {"node": NODE, "name": new_bitmap, "persistent": True, "granularity": granularity}
    actions: list[dict[str, Any]] = [{"type": "block-dirty-bitmap-add", "data": add}]
    for name, b in sorted(current.items()):
        if name.startswith(PREFIX) and b.get("recording"):
            actions.append({"type": "block-dirty-bitmap-disable", "data": {"node": NODE, "name": name}})
    return actions


def union_for_reading(q: Qmp, sources: list[str], granularity: int) -> None:
    q.run("block-dirty-bitmap-add", node=NODE, name=READ_BITMAP, persistent=False, disabled=True,
          granularity=granularity)  # fmt: skip
    q.run("block-dirty-bitmap-merge", node=NODE, target=READ_BITMAP, bitmaps=sources)


def commit_bitmaps(q: Qmp, keep: str) -> None:
    """The backup is committed: only its own bitmap (changes since its instant) is still needed."""
    for name in q.bitmaps():
        if name != keep and (name.startswith(PREFIX) or name == READ_BITMAP):
            q.run("block-dirty-bitmap-remove", node=NODE, name=name)


def merge_back(q: Qmp, plan: BitmapPlan, new_bitmap: str) -> None:
    """The backup failed: fold every change recorded since the parent back into the parent's
    bitmap and let it record again, so the next incremental still sees all of them."""
    bitmaps = q.bitmaps()
    if READ_BITMAP in bitmaps:
        q.run("block-dirty-bitmap-remove", node=NODE, name=READ_BITMAP)
    if plan.base is None or plan.base not in bitmaps:
        return  # nothing usable to return to; the new bitmap goes on recording
    others = [n for n in bitmaps if n.startswith(PREFIX) and n != plan.base]
    actions: list[dict[str, Any]] = [
        {"type": "block-dirty-bitmap-merge", "data": {"node": NODE, "target": plan.base, "bitmaps": others}},
        {"type": "block-dirty-bitmap-enable", "data": {"node": NODE, "name": plan.base}},
    ]
    actions += [{"type": "block-dirty-bitmap-remove", "data": {"node": NODE, "name": n}} for n in others]
    if others:
        q.run("transaction", actions=actions)
    else:
        q.run("block-dirty-bitmap-enable", node=NODE, name=plan.base)
    log.info(
        "merged bitmaps %s back into %s after a failed backup (new was %s)", others, plan.base, new_bitmap
    )
