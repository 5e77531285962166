"""The chaos run's mixed workload, and the model of what every volume held when.

Volumes hold DATA bytes of content that matter (the rest of their size reads as zeros, and is
not compared). The workload changes a volume only through its NBD URI (`bootvault volume attach`,
one pwrite, a flush, `volume detach`), under the volume's lock, and records each write's window
[sent, acknowledged] (the host's realtime clock, the one QEMU stamps a backup's image with). So
the bytes a backup must restore to are known exactly from its `timeCreated` t: every block is the
content after all writes acknowledged before t, except the blocks of the (at most one) write in
flight at t, which may hold either side (`Vol.matches`).

One volume, `live`, stays attached while a writer thread writes sequence-stamped 4 KiB blocks
with FUA (tests/nbdwriter.py's format) into its region after DATA and logs every write's send
and acknowledgement: its backups and its final content are checked against that log.

Operations (`OPS`, weights) are what a user does: writes, FULL and INCREMENTAL backups (some
under a retention lock or a legal hold), instant restores read while they hydrate, clones,
grows, renames, deletes of backups and volumes, deletes of protected backups (must be refused),
re-arming the short-period policy so its schedule fires again, `bootvault gc` and `verify`.
`copy_hook` is where a cross-region copy of a backup plugs in (built on another branch).
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chaosapi import Api, Ledger, Refused, wait_for
from chaosrig import Rig
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    BootVolumeSourceFromBootVolumeDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    RetentionDuration,
    UpdateBootVolumeBackupDetails,
    UpdateBootVolumeDetails,
    UpdateVolumeBackupPolicyDetails,
    VolumeBackupSchedule,
)

from tests.nbdwriter import BLOCK, RECORD, Write, block, slot_of

MIB = 1 << 20
DATA = 4 * MIB
SLOTS = 256  # the live writer's region: SLOTS 4 KiB blocks at DATA
AD = "bootvault:AD-1"
SCHEDULE_RETENTION = 20  # seconds: scheduled backups expire within the run
MAX_VOLUMES = 8
UNKNOWN = 1 << 62  # the acknowledgement time of a write that never got one: in flight for ever


def ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000) * 1000


@dataclass
class Vol:
    id: str
    base: bytes  # DATA bytes at creation
    size_gbs: int
    writes: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # sent, acked, offset, data
    lock: threading.Lock = field(default_factory=threading.Lock)
    deleted: bool = False
    live: bool = False

    def content(self, until_ns: int | None = None, *, inclusive: bool = False) -> bytes:
        """DATA after the writes acknowledged before `until_ns` (all: None); `inclusive` adds a
        write in flight at that instant."""
        out = bytearray(self.base)
        for sent, acked, offset, data in self.writes:
            if until_ns is None or acked < until_ns or (inclusive and sent <= until_ns):
                out[offset : offset + len(data)] = data
        return bytes(out)

    def matches(self, data: bytes, t_ns: int) -> bool:
        """`data` is what this volume may have held at instant t: block by block, the state
        before or after a write in flight then (1 ms of slack for the clocks' rounding)."""
        before, after = self.content(t_ns - 1_000_000), self.content(t_ns + 1_000_000, inclusive=True)
        if data in (before, after):
            return True
        return all(
            data[p : p + BLOCK] in (before[p : p + BLOCK], after[p : p + BLOCK])
            for p in range(0, DATA, BLOCK)
        )


class LiveWriter(threading.Thread):
    """Sequence-stamped 4 KiB FUA writes into the live volume, about 100 a second, reconnecting
    through a killed daemon; `writes` is the log (acked -1: no answer)."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True, name="live-writer")
        self.uri, self.stop_event, self.writes = uri, threading.Event(), []  # type: list[Write]

    def run(self) -> None:
        import nbd

        h: Any = None
        seq = 0
        while not self.stop_event.is_set():
            if h is None:
                try:
                    h = nbd.NBD()
                    h.connect_uri(self.uri)
                except nbd.Error:
                    h = None
                    time.sleep(0.1)
                    continue
            sent = time.time_ns()
            try:
                h.pwrite(block(seq, SLOTS), DATA + slot_of(seq, SLOTS) * BLOCK, nbd.CMD_FLAG_FUA)
                acked = time.time_ns()
            except nbd.Error:
                acked, h = -1, None
            self.writes.append(Write(seq, sent, acked))
            seq += 1
            time.sleep(0.01)
        if h is not None:
            h.shutdown()


def live_slots_ok(region: bytes, writes: list[Write], t_ns: int | None) -> list[str]:
    """Problems with the live region at instant t (None: after every write): each slot holds a
    write sent by then, no older than the last one acknowledged before it."""
    problems, last_acked = [], [-1] * SLOTS
    sent_by = {w.seq: w.sent for w in writes}
    for w in writes:
        if w.acked >= 0 and (t_ns is None or w.acked < t_ns - 1_000_000):
            last_acked[slot_of(w.seq, SLOTS)] = w.seq
    for slot in range(SLOTS):
        data = region[slot * BLOCK : (slot + 1) * BLOCK]
        found = -1 if data == bytes(BLOCK) else int.from_bytes(data[8:16], "little")
        if found >= 0 and data != block(found, SLOTS):
            problems.append(f"slot {slot}: damaged or foreign bytes")
        elif found < last_acked[slot]:
            problems.append(f"slot {slot}: holds {found}, write {last_acked[slot]} was acknowledged")
        elif found >= 0 and (
            found not in sent_by or (t_ns is not None and sent_by[found] > t_ns + 1_000_000)
        ):
            problems.append(f"slot {slot}: holds write {found}, not sent by then")
    return problems


def _write_until_acknowledged(uri: str, offset: int, data: bytes) -> bool:
    """Through a killed daemon (served again by the reconcile): the same bytes again until a
    flush acknowledges them; False if none did within 3 minutes (the write may have landed)."""
    import nbd

    deadline = time.monotonic() + 180
    while True:
        try:
            h = nbd.NBD()
            h.connect_uri(uri)
            h.pwrite(data, offset)
            h.flush()
            h.shutdown()
            return True
        except nbd.Error:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)


@dataclass
class Workload:
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
    copy_hook: Callable[[Workload, str], None] | None = None  # cross-region copy (another branch)
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

    # -- the operations ------------------------------------------------------------------------

    def quiet_vols(self) -> list[Vol]:
        with self.lock:
            return [v for v in self.vols.values() if not v.deleted and not v.live]

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
                    acked = _write_until_acknowledged(uri, offset, data)
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

    def available_backups(self, rng: random.Random) -> list[Any]:
        resp = self.api.call(
            "list_boot_volume_backups", self.compartment, lifecycle_state="AVAILABLE", limit=1000
        )
        return [b for b in resp.data if b.boot_volume_id in self.vols]

    def op_restore(self, rng: random.Random) -> None:
        with self.lock:
            if sum(not v.deleted for v in self.vols.values()) >= MAX_VOLUMES:
                return
        live_ids = {v.id for v in self.vols.values() if v.live}
        candidates = [b for b in self.available_backups(rng) if b.boot_volume_id not in live_ids]
        if candidates:
            self.restore_and_check(rng.choice(candidates).id, keep=True)

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


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


__all__ = ["OPS", "RECORD", "Workload", "Vol", "LiveWriter", "live_slots_ok", "DATA", "SLOTS", "sha"]
