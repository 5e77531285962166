"""The chaos run's mixed workload: the operations a user does, on the volumes and backups kept by
WorkloadBooks (bench/chaosbooks.py). What every volume held when is modelled in
bench/chaosmodel.py, the live volume's writer is in bench/chaoswrite.py.

Operations (`OPS`, weights) are what a user does: writes, FULL and INCREMENTAL backups (some
under a retention lock or a legal hold), instant restores read while they hydrate, clones,
grows, renames, deletes of backups and volumes, deletes of protected backups (must be refused),
re-arming the short-period policy so its schedule fires again, `bootvault gc` and `verify`.
`copy_hook` is where a cross-region copy of a backup plugs in (built on another branch).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from chaosapi import Refused, wait_for
from chaosbooks import AD, WorkloadBooks
from chaosmodel import DATA, SLOTS, UNKNOWN, Vol, live_slots_ok, sha
from chaoswrite import LiveWriter, write_until_acknowledged
from oci.core.models import (
    BootVolumeSourceFromBootVolumeDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    RetentionDuration,
    UpdateBootVolumeBackupDetails,
    UpdateBootVolumeDetails,
    UpdateVolumeBackupPolicyDetails,
    VolumeBackupSchedule,
)

from tests.nbdwriter import BLOCK, RECORD

SCHEDULE_RETENTION = 20  # seconds: scheduled backups expire within the run
MAX_VOLUMES = 8


@dataclass
class Workload(WorkloadBooks):
    """The operations (op_<name>, weighted by OPS) on the volumes and backups of WorkloadBooks."""

    copy_hook: Callable[[Workload, str], None] | None = None  # cross-region copy (another branch)

    def op_write(self, rng: random.Random) -> None:
        """Attach a volume, make 1-4 writes (each one pwrite and a flush), detach."""
        vol = rng.choice(self.quiet_vols())
        with vol.lock:
            if vol.deleted:
                return
            uri = self.attach(vol.id)
            try:
                for _ in range(rng.randint(1, 4)):
                    length = rng.choice([4, 16, 64, 256]) * 1024
                    offset = rng.randrange(0, DATA - length, BLOCK)
                    data = rng.randbytes(length)
                    sent = time.time_ns()
                    acked = write_until_acknowledged(uri, offset, data)
                    vol.writes.append((sent, time.time_ns() if acked else UNKNOWN, offset, data))
                    if not acked:
                        self.problem(f"volume {vol.id}: a write got no answer for 3 minutes")
                        return
            finally:
                self.detach(vol.id)

    def op_backup(self, rng: random.Random) -> None:
        with self.lock:
            vols = [v for v in self.vols.values() if not v.deleted]
        vol = rng.choice(vols)
        details = CreateBootVolumeBackupDetails(
            boot_volume_id=vol.id, type=rng.choice(["FULL", "INCREMENTAL"])
        )
        roll = rng.random()
        if roll < 0.1:
            details.is_indefinite_retention_enabled = True
        elif roll < 0.2:
            details.retention_period = RetentionDuration(retention_time_unit="DAYS", retention_time_amount=1)
            details.is_retention_lock_enabled = True
        try:
            backup = self.api.call("create_boot_volume_backup", details, retry_token=True).data
        except Refused:
            return
        with self.ledger.lock:
            self.ledger.backups_created[backup.id] = vol.id
            if details.is_retention_lock_enabled:
                self.ledger.locked.add(backup.id)
            if details.is_indefinite_retention_enabled:
                self.ledger.held[backup.id] = True

    def op_restore(self, rng: random.Random) -> None:
        with self.lock:
            if sum(not v.deleted for v in self.vols.values()) >= MAX_VOLUMES:
                return
        live_ids = {v.id for v in self.vols.values() if v.live}
        candidates = [b for b in self.available_backups(rng) if b.boot_volume_id not in live_ids]
        if candidates:
            self.restore_and_check(rng.choice(candidates).id, keep=True)

    def op_clone(self, rng: random.Random) -> None:
        with self.lock:
            if sum(not v.deleted for v in self.vols.values()) >= MAX_VOLUMES:
                return
        vol = rng.choice(self.quiet_vols())
        with vol.lock:  # no write meanwhile: the clone holds the volume's current bytes
            details = CreateBootVolumeDetails(
                compartment_id=self.compartment,
                availability_domain=AD,
                source_details=BootVolumeSourceFromBootVolumeDetails(id=vol.id),
            )
            try:
                clone = self.api.call("create_boot_volume", details, retry_token=True).data
            except Refused:
                return
            self.ledger.volumes_created[clone.id] = "clone"
            clone = wait_for(
                lambda: self.api.call("get_boot_volume", clone.id).data,
                lambda v: v.lifecycle_state not in ("PROVISIONING", "RESTORING"),
                timeout=300,
            )
            if clone.lifecycle_state != "AVAILABLE":
                self.problem(
                    f"clone {clone.id} of {vol.id} ended {clone.lifecycle_state}: {clone.system_tags}"
                )
                return
            with self.lock:
                self.vols[clone.id] = Vol(clone.id, vol.content(), clone.size_in_gbs)

    def op_grow(self, rng: random.Random) -> None:
        vol = rng.choice(self.quiet_vols())
        with vol.lock:
            if vol.deleted or vol.size_gbs >= 60:
                return
            try:
                self.api.call(
                    "update_boot_volume", vol.id, UpdateBootVolumeDetails(size_in_gbs=vol.size_gbs + 1)
                )
            except Refused:
                return
            vol.size_gbs += 1
            wait_for(
                lambda: self.api.call("get_boot_volume", vol.id).data,
                lambda v: v.lifecycle_state != "PROVISIONING",
                timeout=300,
            )

    def op_delete_volume(self, rng: random.Random) -> None:
        extra = [v for v in self.quiet_vols() if v.id in self.ledger.volumes_created]
        if len(extra) < 3:
            return
        vol = rng.choice(extra)
        with vol.lock:
            try:
                self.api.call("delete_boot_volume", vol.id)
            except Refused:
                return
            vol.deleted = True
            self.ledger.volumes_deleted.add(vol.id)

    def op_delete_backup(self, rng: random.Random) -> None:
        with self.ledger.lock:
            protected = self.ledger.locked | {b for b, held in self.ledger.held.items() if held}
        pool = [b for b in self.available_backups(rng) if b.id not in protected]
        checked = [b for b in pool if b.id in self.checked]
        pool = checked if checked and rng.random() < 0.8 else pool
        if not pool:
            return
        backup = rng.choice(pool)
        try:
            self.api.call("delete_boot_volume_backup", backup.id)
            self.ledger.backups_deleted.add(backup.id)
        except Refused as exc:
            self.ledger.refused_deletes[exc.code] += 1

    def op_protect(self, rng: random.Random) -> None:
        """Set or clear a legal hold, or lock a backup; or rename one."""
        pool = [b for b in self.available_backups(rng) if b.id not in self.ledger.backups_deleted]
        if not pool:
            return
        backup = rng.choice(pool)
        roll = rng.random()
        if roll < 0.4:
            held = not self.ledger.held.get(backup.id, False)
            details = UpdateBootVolumeBackupDetails(is_indefinite_retention_enabled=held)
        elif roll < 0.6:
            details = UpdateBootVolumeBackupDetails(
                retention_period=RetentionDuration(retention_time_unit="DAYS", retention_time_amount=1),
                is_retention_lock_enabled=True,
            )
        else:
            details = UpdateBootVolumeBackupDetails(display_name=f"renamed-{rng.randrange(1 << 30)}")
        try:
            self.api.call("update_boot_volume_backup", backup.id, details)
        except Refused:
            return  # e.g. it went TERMINATING meanwhile
        with self.ledger.lock:
            if details.is_indefinite_retention_enabled is not None:
                self.ledger.held[backup.id] = details.is_indefinite_retention_enabled
            if details.is_retention_lock_enabled:
                self.ledger.locked.add(backup.id)
            if details.display_name:
                self.ledger.names[backup.id] = details.display_name

    def op_delete_protected(self, rng: random.Random) -> None:
        with self.ledger.lock:
            protected = sorted(self.ledger.locked | {b for b, held in self.ledger.held.items() if held})
        if not protected:
            return
        backup_id = rng.choice(protected)
        try:
            self.api.call("delete_boot_volume_backup", backup_id)
        except Refused as exc:
            self.ledger.refused_deletes[exc.code] += 1
            return
        self.problem(f"backup {backup_id} is locked or held, yet its delete was accepted")

    def op_rearm(self, rng: random.Random) -> None:
        """Move the hourly schedule's offset a few seconds ahead: it fires again (an update
        resets the assignments' cursors)."""
        due = datetime.now(UTC) + timedelta(seconds=rng.uniform(4, 10))
        schedule = VolumeBackupSchedule(
            backup_type=rng.choice(["INCREMENTAL", "FULL"]),
            period="ONE_HOUR",
            offset_type="NUMERIC_SECONDS",
            offset_seconds=due.minute * 60 + due.second,
            retention_seconds=SCHEDULE_RETENTION,
        )
        try:
            self.api.call("update_volume_backup_policy", self.policy_id,
                          UpdateVolumeBackupPolicyDetails(schedules=[schedule]))  # fmt: skip
        except Refused as exc:
            self.problem(f"policy update refused: {exc}")

    def op_gc(self, rng: random.Random) -> None:
        self.rig.cli("gc", check=False, timeout=600)  # fails while a part is down: fine

    def op_verify(self, rng: random.Random) -> None:
        run = self.rig.cli("verify", check=False, timeout=600)
        if run.returncode == 2:
            self.problem(f"verify found damaged backups: {run.stdout[-500:]}")

    def op_copy(self, rng: random.Random) -> None:
        if self.copy_hook is not None:
            pool = self.available_backups(rng)
            if pool:
                self.copy_hook(self, rng.choice(pool).id)


OPS: list[tuple[str, int]] = [
    ("write", 6), ("backup", 6), ("restore", 3), ("clone", 1), ("grow", 1), ("delete_volume", 1),
    ("delete_backup", 3), ("protect", 2), ("delete_protected", 1), ("rearm", 3), ("gc", 1),
    ("verify", 1), ("copy", 1),
]  # fmt: skip


__all__ = ["OPS", "RECORD", "Workload", "Vol", "LiveWriter", "live_slots_ok", "DATA", "SLOTS", "sha"]
