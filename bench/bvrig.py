"""bootvault end to end: `serve --workers 0` (API) plus a separate `bootvault worker`, driven by the oci SDK;
or, with in_process=True, `serve` alone as `make run` starts it (its in-process worker, default settings).

Times run from the Create call until a GET (polled every 100 ms unless asked otherwise) shows
AVAILABLE. CPU is the utime+stime delta of the worker and API processes (/proc/PID/stat) plus
that of the volume's qemu-storage-daemon (QSD, which serves the volume over NBD: its pid file is
in the run directory); peak RSS is the worker's VmHWM, reset before each step via
/proc/PID/clear_refs. The bytes a backup read are taken from the worker's log line
"backup <id> read <N> bytes" (field bytes_read).

Volumes are qcow2 files served by QSD: changes go through the URI `attach` returns, and their
content is read back through `bootvault volume export --format raw`, never from the pool file.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from bvproc import BIN, BootvaultProcesses, QsdMeter
from measure import BenchError, Sample, Timed, du_bytes, proc_cpu, sync, timed
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

POLL_S = 0.1  # the SDK itself waits >= 1 s; 20 ms polls cost the API (and the cores) ~1 CPU-s per step
STEP_TIMEOUT_S = 1800


class BootvaultRig(BootvaultProcesses):
    name = "bootvault"

    def __init__(
        self,
        work: Path,
        src: Path,
        poll_seconds: float | None,
        block_size: int | None,
        poll_s: float = POLL_S,
        in_process: bool = False,
    ) -> None:
        """poll_seconds: the worker's BOOTVAULT_POLL_SECONDS (None: its default). in_process: one
        `serve` process runs the API and the job worker (`make run`), instead of two processes."""
        super().__init__(work, src, poll_seconds, block_size, in_process)
        self.poll_s = poll_s
        self.volume_id = ""
        self.backups: dict[str, str] = {}  # step -> backup OCID
        self.attached: set[str] = set()

    def stop(self) -> None:
        """Stop the worker and the API, then every QSD of this rig's run directory (they
        daemonize, so they outlive both): detach what is attached, SIGTERM what is left."""
        for volume_id in sorted(self.attached):
            try:
                self.detach(volume_id)
            except BenchError as exc:
                print(f"detach {volume_id} at stop failed: {exc}", file=sys.stderr)
        self._stop_processes()
        for pidfile in sorted((self.data_dir / "run").glob("*/qsd.pid")):
            try:
                pid = int(pidfile.read_text().strip())
                if b"qemu-storage-daemon" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGTERM)
            except (OSError, ValueError):
                continue

    # -- volume pool -------------------------------------------------------------------------
    def import_volume(self, image: Path) -> tuple[str, float]:
        """Import a raw image as a volume (the rig's volume); returns its OCID and the time taken."""
        start = time.perf_counter()
        out = self.cli(
            "volume", "import", "--compartment", self.tenancy_id, "--display-name", "bench", str(image)
        )
        took = time.perf_counter() - start
        self.volume_id = out.strip().splitlines()[-1]
        return self.volume_id, took

    def volume_path(self, volume_id: str) -> Path:
        """The volume's qcow2 file in the pool: to stat it, never to read or write its bytes."""
        return Path(self.cli("volume", "path", volume_id).strip())

    def attach(self, volume_id: str | None = None) -> str:
        """Serve the volume read-write over NBD; returns the URI (the last line printed)."""
        volume_id = volume_id or self.volume_id
        uri = self.cli("volume", "attach", volume_id).strip().splitlines()[-1]
        self.attached.add(volume_id)
        return uri

    def detach(self, volume_id: str | None = None) -> None:
        volume_id = volume_id or self.volume_id
        self.cli("volume", "detach", volume_id)
        self.attached.discard(volume_id)

    def export(self, volume_id: str, dest: Path, log: str = "export") -> Timed:
        """`bootvault volume export VOLUME DEST --format raw --force`, timed."""
        return timed(
            [str(BIN / "bootvault"), "volume", "export", volume_id, str(dest), "--format", "raw", "--force"],
            self.logs / f"bootvault.{log}.log",
            env=self.env,
        )

    def runtime_dir(self, volume_id: str) -> Path:
        """The volume's runtime directory (pool/daemon.py: run dir / sha256(volume id)[:16])."""
        return self.data_dir / "run" / hashlib.sha256(volume_id.encode()).hexdigest()[:16]

    def qsd_pid(self, volume_id: str | None = None) -> int | None:
        """The pid of the QSD serving the volume now, if one is running."""
        try:
            pid = int((self.runtime_dir(volume_id or self.volume_id) / "qsd.pid").read_text().strip())
            proc_cpu(pid)
        except (OSError, ValueError):
            return None
        return pid

    # -- measured steps ----------------------------------------------------------------------
    def _wait(self, getter: str, ident: str, start: float, meter: QsdMeter | None = None) -> Any:
        assert self.client is not None
        while True:
            if meter is not None:
                meter.sample()
            data = getattr(self.client, getter)(ident).data
            state = data.lifecycle_state
            if state == "AVAILABLE":
                return data
            if state in ("FAULTY", "TERMINATED", "TERMINATING"):
                raise BenchError(
                    f"{ident} went {state}: lifecycleDetails={getattr(data, 'lifecycle_details', None)!r} "
                    f"systemTags={data.system_tags!r}"
                )
            self._check_alive()
            if time.perf_counter() - start > STEP_TIMEOUT_S:
                raise BenchError(f"{ident} still {state} after {STEP_TIMEOUT_S} s")
            time.sleep(self.poll_s)

    def backup(self, step: str, kind: str) -> Sample:
        """CreateBootVolumeBackup until AVAILABLE. CPU includes the volume's QSD (reading the
        qcow2 and serving NBD is part of the backup's cost)."""
        assert self.client is not None
        store = self.data_dir / "store"
        before = du_bytes(store)
        begin = self._begin()
        meter = QsdMeter(lambda: self.qsd_pid(self.volume_id))
        created_at, start = time.time(), time.perf_counter()
        details = CreateBootVolumeBackupDetails(boot_volume_id=self.volume_id, type=kind, display_name=step)
        backup_id = self.client.create_boot_volume_backup(details).data.id
        data = self._wait("get_boot_volume_backup", backup_id, start, meter)
        sample = Sample(self.name, step, wall=time.perf_counter() - start)
        meter.sample()
        self._fill(sample, begin)
        sample.cpu += meter.cpu
        sample.extra["qsd_cpu_s"] = round(meter.cpu, 3)
        bytes_read = self.worker_bytes_read(backup_id)
        if bytes_read is not None:
            sample.extra["bytes_read"] = bytes_read
        sample.extra["backup_id"] = backup_id
        sample.extra["created_at"] = created_at
        after = du_bytes(store)
        sample.stored, sample.repo_total = after - before, after
        tags = (data.system_tags or {}).get("bootvault", {})
        sample.extra["unique_size_bytes"] = int(tags.get("uniqueSizeBytes", -1))
        self.backups[step] = backup_id
        return sample

    def restore(self, step: str, of_step: str, dest: Path) -> tuple[Sample, Path]:
        """Restore the backup taken at of_step into a new volume, then export it to dest."""
        assert self.client is not None
        begin = self._begin()
        start = time.perf_counter()
        details = CreateBootVolumeDetails(
            compartment_id=self.tenancy_id,
            availability_domain="bootvault:AD-1",
            display_name=f"restore-{of_step}",
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=self.backups[of_step]),
        )
        volume_id = self.client.create_boot_volume(details).data.id
        # The job fills the new volume through a QSD of its own (pool/volume.py: runtime
        # "fill:<volume id>"), which lives only while the job runs: sampled at every poll.
        meter = QsdMeter(lambda: self.qsd_pid(f"fill:{volume_id}"))
        self._wait("get_boot_volume", volume_id, start, meter)
        restore_wall = time.perf_counter() - start
        sample = Sample(self.name, step, wall=restore_wall)
        self._fill(sample, begin)
        sample.cpu += meter.cpu
        sample.extra["qsd_cpu_s"] = round(meter.cpu, 3)
        dest.unlink(missing_ok=True)
        sync()
        exp = self.export(volume_id, dest, f"{step}.export")
        sample.wall += exp.wall
        sample.cpu += exp.cpu
        sample.rss_kib = max(sample.rss_kib, exp.rss_kib)
        pool_file = self.volume_path(volume_id)
        sample.extra.update(
            restore_wall_s=round(restore_wall, 3),
            export_wall_s=round(exp.wall, 3),
            export_cpu_s=round(exp.cpu, 3),
            export_rss_kib=exp.rss_kib,
            pool_file_allocated=os.stat(pool_file).st_blocks * 512,
        )
        sample.extra["volume_id"] = volume_id
        return sample, pool_file
