"""One volume of a pool: its file, its daemon, and every operation on them.

Layout in the availability domain's pool directory:

    <ocid>.qcow2                      the volume: qcow2, 64 KiB clusters, persistent dirty bitmaps
    <ocid>.img                        a raw volume of an older release; converted on first use
    <ocid>.backing                    the backup an instantly restored volume still reads from
                                      (pool/backing.py) until it is hydrated, and its size
    <ocid>.base                       raw, read-only: the backup's data, restored locally; the
                                      qcow2's backing once hydrated (pool/hydrate.py)
    .tmp-<random>-<ocid>.qcow2        a volume being created (import, restore, clone), or
    .tmp-<random>-<ocid>.base         a base being restored; renamed into place when whole,
                                      removed by the next run otherwise (both names are cut
                                      at 100 characters after the random part: fsutil.tmp_name)
    .fleece-<hash>-<tag>.qcow2        copy-before-write overlay of a point-in-time view

Runtime files (sockets, pid) are in pool/daemon.py's run directory. Every operation holds the
volume's lock, so a backup, an attach, a resize and an export never interleave on this host.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bootvault.fsutil import atomic_path, is_block_device, tmp_pattern
from bootvault.pool import qemuimg, snapshot
from bootvault.pool.backing import BackingServer
from bootvault.pool.daemon import Runtime
from bootvault.pool.errors import ImageRejected, PoolError, VolumeBusy
from bootvault.pool.nbd import NbdSource

log = logging.getLogger("bootvault.pool")
ORIGIN_BITMAP = "bv.origin"  # records from creation on; no backup starts there, so never read
JOB_LOCK_WAIT = 3600.0  # a job waits out an export or attach in progress (its lease is renewed)
CLI_LOCK_WAIT = 600.0


@dataclass
class BackupView:
    """What a backup reads: the volume at `instant`, and which part of it changed."""

    source: NbdSource
    instant: datetime
    plan: snapshot.BitmapPlan
    committed: bool = False


class PoolVolume:
    def __init__(
        self, directory: Path, run_root: Path, volume_id: str, block_size: int, env: dict[str, str]
    ) -> None:
        self.dir, self.volume_id, self.block_size = directory, volume_id, block_size
        self.path = directory / f"{volume_id}.qcow2"
        self.legacy_path = directory / f"{volume_id}.img"
        self.backing_file = directory / f"{volume_id}.backing"  # the source backup, while hydrating
        self.base_file = directory / f"{volume_id}.base"
        self.runtime = Runtime(run_root, volume_id)
        self.backing = BackingServer(self.runtime, env)

    def exists(self) -> bool:
        return self.path.exists() or self.legacy_path.exists()

    def attached(self) -> bool:
        return self.runtime.mode() == "attached"

    def _spawn(self, mode: str) -> None:
        """Start the volume's daemon (and first its backing server, if it still has one)."""
        self._ensure_backing()
        self.runtime.spawn(self.path, writable_export=mode == "attached", mode=mode)

    def _ensure_backing(self) -> None:
        """Before the image is opened: start its backing server while it has one, or make sure
        the header names the base (a live switch, pool/hydrate.py, leaves the server's name
        there). The caller holds the volume's lock and no daemon runs."""
        if self.backing_file.exists():
            backup_id, *size = self.backing_file.read_text().split()
            self.backing.ensure(backup_id, int(size[0]) if size else None)
        else:
            self.settle_header()

    def settle_header(self) -> None:
        """Name the base as the image's backing in its header, if it has a base and the header
        does not say so yet. Only while no daemon holds the image."""
        if self.base_file.exists() and qemuimg.info(self.path, "qcow2").backing != self.base_file.name:
            qemuimg.rebase_unsafe(self.path, self.base_file.name)

    # -- format ----------------------------------------------------------------------------

    def _ensure_qcow2(self) -> None:
        """Convert a raw volume of an older release (crash-safe: the raw file goes only after
        the qcow2 is whole and in place)."""
        if self.path.exists():
            self.legacy_path.unlink(missing_ok=True)
            return
        if not self.legacy_path.exists():
            raise PoolError(
                f"the data file of boot volume {self.volume_id} is missing from the pool ({self.path})"
            )
        log.info("converting raw volume %s to qcow2", self.volume_id)
        size = os.stat(self.legacy_path).st_size
        self._create(lambda tmp: qemuimg.convert(str(self.legacy_path), "raw", tmp, "qcow2"), size)
        self.legacy_path.unlink()

    def _create(
        self, fill: Callable[[Path], None], size: int, backing: tuple[str, int] | None = None
    ) -> None:
        """Make the volume file: fill a temporary qcow2, grow it to size, start its bitmap,
        (name its backing server, for an instant restore) then rename it into place."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.clear_tmp()
        with atomic_path(self.path) as tmp:
            fill(tmp)
            if qemuimg.info(tmp, "qcow2").virtual_size < size:
                qemuimg.resize(tmp, size)
            qemuimg.add_bitmap(tmp, ORIGIN_BITMAP, self.block_size)
            if backing is not None:
                with atomic_path(self.backing_file) as side:
                    side.write_text(f"{backing[0]}\n{backing[1]}\n")
                qemuimg.rebase_unsafe(tmp, self.backing.backing_spec())

    def clear_tmp(self) -> None:
        """A job that died while creating this volume or its base left a temporary file."""
        for final in (self.path, self.base_file):
            for leftover in self.dir.glob(tmp_pattern(final)):
                leftover.unlink(missing_ok=True)

    # -- creation --------------------------------------------------------------------------

    def create_empty(self, size: int) -> None:
        self._create(lambda tmp: qemuimg.create(tmp, size), size)

    def import_image(self, image: Path, size: int, progress: qemuimg.Progress | None = None) -> None:
        found = qemuimg.probe_import(image)
        if found.virtual_size > size:
            raise ImageRejected(f"{image} holds {found.virtual_size} bytes, more than {size}")
        self._create(
            lambda tmp: qemuimg.convert(str(image), found.format, tmp, "qcow2", progress=progress), size
        )

    def create_lazy(self, size: int, backup_id: str, backup_size: int, holes: list[tuple[int, int]]) -> None:
        """A volume usable at once whatever its size: an empty qcow2 whose backing is the backup,
        served from the object store (pool/backing.py) until hydrate.py switches it to a local
        copy. The backup's holes are zero clusters of the new volume from the start, so neither
        the machine's reads nor the copy ever fetch them."""

        def lazy(tmp: Path) -> None:
            qemuimg.create(tmp, size)
            qemuimg.zero_ranges(tmp, holes)

        self._create(lazy, size, (backup_id, backup_size))

    def clone_from(self, source: PoolVolume, size: int) -> None:
        with source.read_view() as (uri, fmt):
            self._create(lambda tmp: qemuimg.convert(uri, fmt, tmp, "qcow2"), size)

    # -- reading ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def read_view(self, wait: float = JOB_LOCK_WAIT) -> Iterator[tuple[str, str]]:
        """(filename or NBD URI, format) of the volume's current content, frozen while open."""
        with self.runtime.lock(wait):
            self._ensure_qcow2()
            if self.runtime.mode() != "attached":
                self.runtime.stop()  # a transient daemon here belongs to a job that died
                self._ensure_backing()
                yield str(self.path), "qcow2"
                return
            fleece = snapshot.Fleece(self.runtime, self.dir)
            with self.runtime.qmp() as q:
                fleece.start(q, [])
                fleece.export(q, [])
            try:
                yield fleece.uri, "raw"
            finally:
                with self.runtime.qmp() as q:
                    fleece.close(q)

    def export(self, dest: Path, fmt: str, *, force: bool, progress: qemuimg.Progress | None = None) -> None:
        """Write the volume to dest as raw or qcow2. A block device is written in place; a file
        appears whole (tmp + rename); an existing path is replaced only with force."""
        if fmt not in ("raw", "qcow2"):
            raise ImageRejected(f"format must be raw or qcow2, not {fmt!r}")
        dest = Path(os.path.abspath(dest))
        device = is_block_device(dest)
        _check_destination(dest, force=force, device=device)
        with self.read_view(CLI_LOCK_WAIT) as (src, src_fmt):
            if device:
                qemuimg.convert(src, src_fmt, dest, fmt, existing=True, progress=progress)
                return
            with atomic_path(dest, replace=force) as tmp:
                qemuimg.convert(src, src_fmt, tmp, fmt, progress=progress)

    @contextlib.contextmanager
    def backup_view(
        self, backup_id: str, attempt: int, parent_id: str | None, *, incremental: bool, attached: bool
    ) -> Iterator[BackupView]:
        """A point-in-time view for a backup, with the bitmaps rotated at its instant."""
        with self.runtime.lock(JOB_LOCK_WAIT):
            self._ensure_qcow2()
            transient = self._daemon_for_job(attached)
            try:
                yield from self._backup_in_daemon(backup_id, attempt, parent_id, incremental)
            finally:
                if transient:
                    self.runtime.stop()

    def _backup_in_daemon(
        self, backup_id: str, attempt: int, parent_id: str | None, incremental: bool
    ) -> Iterator[BackupView]:
        new = snapshot.bitmap_name(backup_id, attempt)
        fleece = snapshot.Fleece(self.runtime, self.dir)
        with self.runtime.qmp() as q:
            snapshot.clear_leftovers(q, self.runtime, self.dir)
            plan = snapshot.plan_bitmaps(q.bitmaps(), parent_id, incremental)
            fleece.start(q, snapshot.rotate_actions(q, plan, new, self.block_size))
            if plan.incremental:
                snapshot.union_for_reading(q, plan.sources, self.block_size)
            fleece.export(q, [snapshot.READ_BITMAP] if plan.incremental else [])
        log.info("backup %s of %s: %s", backup_id, self.volume_id, plan.reason)
        assert fleece.instant is not None
        view: BackupView | None = None
        try:
            bitmap = snapshot.READ_BITMAP if plan.incremental else None
            view = BackupView(
                NbdSource(fleece.uri, block_size=self.block_size, bitmap=bitmap), fleece.instant, plan
            )
            yield view
        finally:
            if view is not None:
                view.source.close()
            with self.runtime.qmp() as q:
                fleece.close(q)
                if view is not None and view.committed:
                    snapshot.commit_bitmaps(q, new)
                else:
                    snapshot.merge_back(q, plan, new)

    def _daemon_for_job(self, attached: bool) -> bool:
        """Make sure a daemon serves the volume; True if it is ours to stop afterwards."""
        if self.runtime.mode() == "attached":
            return False
        self.runtime.stop()  # a transient daemon here belongs to a job that died
        if attached:  # the machine's daemon died: serve it again
            log.warning("the daemon of attached volume %s was gone; restarting it", self.volume_id)
            self._spawn("attached")
            return False
        self._spawn("transient")
        return True

    # -- serving ---------------------------------------------------------------------------

    def attach(self) -> str:
        """Serve the volume read-write over NBD; the same URI if it is served already."""
        with self.runtime.lock(CLI_LOCK_WAIT):
            self._ensure_qcow2()
            if self.runtime.mode() != "attached":
                self.runtime.stop()
                self._spawn("attached")
            return self.runtime.uri()

    def detach(self) -> None:
        """Stop serving: the daemon flushes, writes its bitmaps and exits; so does the backing
        server of a volume still hydrating (the next reader starts it again)."""
        with self.runtime.lock(CLI_LOCK_WAIT):
            self.runtime.stop()
            self.backing.stop()

    def reconcile(self, attached: bool) -> str | None:
        """Bring the daemon in line with the record, unless an operation holds the volume:
        an attached volume whose daemon died is served again; a transient daemon whose job
        died is stopped. Returns what was done, if anything."""
        try:
            with self.runtime.lock(0):
                mode = self.runtime.mode()
                if attached and mode != "attached" and self.exists():
                    self.runtime.stop()
                    self._ensure_qcow2()
                    self._spawn("attached")
                    self._clear_dead_views()
                    return "restarted the daemon of an attached volume"
                if not attached and mode is not None:
                    self.runtime.stop()
                    return f"stopped a stale {mode} daemon"
                self.runtime.clear_stale()
                if mode == "attached":
                    self._clear_dead_views()
        except PoolError as exc:
            return f"could not reconcile: {exc}"
        return None

    def _clear_dead_views(self) -> None:
        """Nothing holds the volume, so any view (of an export, a clone, a backup) in its daemon
        or pool directory belongs to a process that died: its copy-before-write job would go on
        copying the machine's writes into an overlay file no one reads."""
        with self.runtime.qmp() as q:
            snapshot.clear_leftovers(q, self.runtime, self.dir)

    # -- changes ---------------------------------------------------------------------------

    def grow(self, size: int) -> None:
        """Grow a volume that is not served. QEMU's NBD export holds its node at a fixed size
        (it unshares 'resize'), so a served disk cannot grow under the machine: detach first."""
        with self.runtime.lock(JOB_LOCK_WAIT):
            self._ensure_qcow2()
            if self.runtime.mode() == "attached":
                raise VolumeBusy(f"boot volume {self.volume_id} is attached; detach it to resize it")
            self.runtime.stop()
            self._ensure_backing()
            info = qemuimg.info(self.path, "qcow2")
            if info.virtual_size < size:
                # A killed daemon left its bitmaps in use (inconsistent), and qemu-img refuses to
                # resize an image holding one: drop them, as the next backup would (it reads the
                # volume whole either way).
                for name, flags in info.bitmaps.items():
                    if "in-use" in flags:
                        log.warning("volume %s: dropping inconsistent dirty bitmap %s", self.volume_id, name)
                        qemuimg.remove_bitmap(self.path, name)
                qemuimg.resize(self.path, size)

    def delete(self) -> None:
        with self.runtime.lock(JOB_LOCK_WAIT):
            self.runtime.stop()
            self.backing.stop()
            self.clear_tmp()
            for path in (self.path, self.legacy_path, self.backing_file, self.base_file):
                path.unlink(missing_ok=True)
            for path in self.dir.glob(f".fleece-{self.runtime.dir.name}-*"):
                path.unlink(missing_ok=True)


def _check_destination(dest: Path, *, force: bool, device: bool) -> None:
    if not dest.parent.is_dir():
        raise ImageRejected(f"{dest.parent} is not a directory")
    if dest.is_dir():
        raise ImageRejected(f"{dest} is a directory; name a file or a block device")
    exists = os.path.lexists(dest)
    if exists and not force:
        kind = "block device" if device else "file"
        raise ImageRejected(f"{dest} exists ({kind}); pass --force to overwrite it")
    if exists and not device and not stat.S_ISREG(os.lstat(dest).st_mode) and not os.path.islink(dest):
        raise ImageRejected(f"{dest} is neither a regular file nor a block device")
