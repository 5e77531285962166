"""The volume pool: where boot volumes live and how they are served. One directory per
availability domain holds the volume files (pool/volume.py); a run directory on this host holds
the sockets of the daemons that serve them (pool/daemon.py). The service gets every volume
through `VolumePool.volume`, so paths are spelled here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from bootvault.pool import hydrate
from bootvault.pool.backing import BackingServer
from bootvault.pool.daemon import Runtime, socket_root
from bootvault.pool.errors import DaemonFailed, ImageRejected, PoolError, VolumeBusy
from bootvault.pool.volume import BackupView, PoolVolume

__all__ = [
    "hydrate",
    "BackupView",
    "DaemonFailed",
    "ImageRejected",
    "PoolError",
    "PoolVolume",
    "VolumeBusy",
    "VolumePool",
    "socket_root",
]


class VolumePool:
    def __init__(
        self,
        pool_dirs: dict[str, Path],
        default_root: Path,
        run_root: Path,
        block_size: int,
        env: dict[str, str] | None = None,
    ) -> None:
        self.pool_dirs, self.default_root = pool_dirs, default_root
        self.run_root, self.block_size = socket_root(run_root), block_size
        self.env = env or {}  # settings for the backing servers this host starts

    def directory(self, availability_domain: str) -> Path:
        """Each availability domain has its own pool directory, as volumes are AD-local in OCI."""
        if availability_domain in self.pool_dirs:
            return self.pool_dirs[availability_domain]
        return self.default_root / availability_domain.replace(":", "_").replace("/", "_")

    def volume(self, availability_domain: str, volume_id: str) -> PoolVolume:
        return PoolVolume(
            self.directory(availability_domain), self.run_root, volume_id, self.block_size, self.env
        )

    def runtimes(self) -> Iterator[tuple[str, Runtime]]:
        """(volume id, runtime) of every volume with runtime files on this host."""
        if not self.run_root.is_dir():
            return
        for entry in sorted(self.run_root.iterdir()):
            try:
                volume_id = (entry / "volume").read_text().strip()
            except OSError:
                continue
            yield volume_id, Runtime(self.run_root, volume_id)

    def reap_stale(
        self, attached_ids: set[str], still_wanted: Callable[[str], bool] | None = None
    ) -> list[str]:
        """Stop daemons no record asks for (their job died) unless an operation holds them, and
        clear the files of daemons that are gone. A served daemon that was started after the
        caller read its records is asked about again (still_wanted) before it goes.
        Returns the volume ids it stopped."""
        stopped = []
        for volume_id, runtime in self.runtimes():
            if volume_id in attached_ids:
                continue
            try:
                with runtime.lock(0):
                    recorded = runtime.mode() == "attached"
                    if recorded and still_wanted is not None and still_wanted(volume_id):
                        continue
                    if runtime.pid() is not None:
                        runtime.stop()
                        stopped.append(volume_id)
                    runtime.clear_stale()
                    BackingServer(runtime, self.env).stop()
            except PoolError:
                continue  # in use: its owner is alive and will clean up
        return stopped
