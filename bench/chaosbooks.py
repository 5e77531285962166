"""The chaos workload's bookkeeping (bench/chaosload.py's Workload builds on it): its volumes and
what they held, the backups checked and the problems found; the volumes' access through the admin
CLI and NBD; restoring a backup and judging its bytes against the model (bench/chaosmodel.py)."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaosapi import Api, Ledger, Refused, wait_for
from chaosmodel import DATA, SLOTS, Vol, live_slots_ok, ns
from chaosrig import Rig
from chaoswrite import LiveWriter
from oci.core.models import BootVolumeSourceFromBootVolumeBackupDetails, CreateBootVolumeDetails

from tests.nbdwriter import BLOCK

AD = "bootvault:AD-1"


@dataclass
class WorkloadBooks:
    rig: Rig
    api: Api
    ledger: Ledger
    compartment: str
    policy_id: str = ""
    vols: dict[str, Vol] = field(default_factory=dict)
    checked: dict[str, str] = field(default_factory=dict)  # backup id -> "ok" or the problem
    faulty: dict[str, str] = field(default_factory=dict)  # FAULTY at the end -> its reason
    fleeces_left: list[str] = field(default_factory=list)  # overlays a killed backup left
    problems: list[str] = field(default_factory=list)
    writer: LiveWriter | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, what: str) -> None:
        with self.lock:
            self.problems.append(f"{time.strftime('%H:%M:%S')} {what}")

    # -- volumes through the admin CLI and NBD -------------------------------------------------

    def attach(self, volume_id: str) -> str:
        return self._cli_retry("volume", "attach", volume_id).stdout.strip().splitlines()[-1]

    def detach(self, volume_id: str) -> None:
        self._cli_retry("volume", "detach", volume_id)

    def _cli_retry(self, *args: str, tries: int = 20) -> Any:
        for attempt in range(tries):
            run = self.rig.cli(*args, check=False, timeout=120)
            if run.returncode == 0:
                return run
            time.sleep(min(5.0, 0.5 * (attempt + 1)))
        raise RuntimeError(f"bootvault {' '.join(args)} kept failing: {run.stderr[-500:]}")

    def read_data(self, volume_id: str, length: int) -> bytes:
        """The first `length` bytes of the volume, read through its NBD URI while attached."""
        import nbd

        for attempt in range(10):
            uri = self.attach(volume_id)
            try:
                h = nbd.NBD()
                h.connect_uri(uri)
                try:
                    return bytes(h.pread(length, 0))
                finally:
                    h.shutdown()
            except nbd.Error as exc:  # a killed daemon or backing server: served again soon
                last = str(exc)
                time.sleep(1 + attempt)
            finally:
                self.detach(volume_id)
        raise RuntimeError(f"volume {volume_id}: reads kept failing: {last}")

    def import_volume(self, image: Path, name: str) -> str:
        out = self._cli_retry("volume", "import", "--compartment", self.compartment, "--display-name", name,
                              str(image))  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    def quiet_vols(self) -> list[Vol]:
        with self.lock:
            return [v for v in self.vols.values() if not v.deleted and not v.live]

    def available_backups(self, rng: random.Random) -> list[Any]:
        resp = self.api.call(
            "list_boot_volume_backups", self.compartment, lifecycle_state="AVAILABLE", limit=1000
        )
        return [b for b in resp.data if b.boot_volume_id in self.vols]

    def restore_and_check(self, backup_id: str, *, keep: bool) -> None:
        """Restore the backup instantly, read it through NBD while it hydrates, compare it with
        what its volume held at its timeCreated; `keep` it as a volume of the workload."""
        details = CreateBootVolumeDetails(
            compartment_id=self.compartment,
            availability_domain=AD,
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
        )
        try:
            volume = self.api.call("create_boot_volume", details, retry_token=True).data
        except Refused:
            return  # the backup went meanwhile (expired, deleted)
        self.ledger.volumes_created[volume.id] = "restore"
        volume = wait_for(
            lambda: self.api.call("get_boot_volume", volume.id).data,
            lambda v: v.lifecycle_state != "RESTORING",
            timeout=120,
        )
        backup = self.api.call("get_boot_volume_backup", backup_id).data
        source = self.vols[backup.boot_volume_id]
        if volume.lifecycle_state != "AVAILABLE":
            self.checked[backup_id] = f"restore ended {volume.lifecycle_state}: {volume.system_tags}"
            self.problem(f"backup {backup_id}: {self.checked[backup_id]}")
            return
        length = DATA + (SLOTS * BLOCK if source.live else 0)
        data = self.read_data(volume.id, length)
        self.checked[backup_id] = self.judge(source, data, ns(backup.time_created))
        if self.checked[backup_id] != "ok":
            self.problem(f"backup {backup_id} of {source.id}: {self.checked[backup_id]}")
        if keep and not source.live:
            with self.lock:
                self.vols[volume.id] = Vol(volume.id, data[:DATA], volume.size_in_gbs)
        elif not keep:
            self.delete_volume_now(volume.id)

    def judge(self, source: Vol, data: bytes, t_ns: int) -> str:
        if not source.live:
            return "ok" if source.matches(data[:DATA], t_ns) else "restored bytes differ from the volume's"
        if data[:DATA] != source.base:
            return "the live volume's static part differs"
        assert self.writer is not None
        problems = live_slots_ok(data[DATA:], list(self.writer.writes), t_ns)
        return "ok" if not problems else "; ".join(problems[:3])

    def delete_volume_now(self, volume_id: str) -> None:
        try:
            self.api.call("delete_boot_volume", volume_id)
            self.ledger.volumes_deleted.add(volume_id)
        except Refused:
            pass
