"""Scheduled backups, expiry, retention lock and legal hold on a live deployment: an API process
without workers and two `bootvault worker` processes (each runs the scheduler), one of them
killed and restarted around the due time. Time is real: an hourly schedule whose offset falls
LEAD seconds ahead, a retention of seconds (BOOTVAULT_MIN_RETENTION_SECONDS=1) and a retention
DAY shortened to DAY seconds (BOOTVAULT_RETENTION_DAY_SECONDS), so a 1-DAY lock ends in a minute.

The module's tests run in order and share one timeline (waits overlap): legal hold, a locked
manual backup refusing deletes, the schedule firing, expiry, the locked scheduled backup
surviving delete, expiry and GC, and both locked backups going once their locks end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import oci
import pytest
from oci.core.models import (
    CreateBootVolumeBackupDetails,
    CreateVolumeBackupPolicyAssignmentDetails,
    CreateVolumeBackupPolicyDetails,
    RetentionDuration,
    VolumeBackupSchedule,
)
from sqlalchemy import create_engine, text

from tests.e2e.test_oci_cli import oci_json, run_oci
from tests.helpers import BIN, MIB, Deployment, Tenant, make_image, wait_state

LEAD = 40  # seconds from the policies' creation to their due time
DAY = 60  # seconds in a retention DAY for this deployment
PLAIN_RETENTION, LOCKED_RETENTION = 15, 5


class Worker:
    def __init__(self, dep: Deployment, name: str) -> None:
        log = open(dep.root / f"{name}.log", "ab")  # noqa: SIM115 - the process keeps it
        self.proc = subprocess.Popen([str(BIN / "bootvault"), "worker"], env=dep.env, stdout=log, stderr=log)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class World:
    dep: Deployment
    tenant: Tenant
    plain_volume: str
    locked_volume: str
    due: datetime
    workers: list[Worker]
    manual_locked: str = ""
    held: str = ""
    scheduled: dict[str, Any] = field(default_factory=dict)  # volume -> its scheduled backup

    @property
    def client(self) -> oci.core.BlockstorageClient:
        return self.tenant.client()

    def sql(self, query: str) -> list[Any]:
        engine = create_engine(f"sqlite:///{self.dep.data_dir / 'bootvault.db'}")
        try:
            with engine.connect() as conn:
                return list(conn.execute(text(query)))
        finally:
            engine.dispose()


def _sleep_until(when: datetime) -> None:
    time.sleep(max(0.0, (when - datetime.now(UTC)).total_seconds()))


def _hourly(retention: int, offset: int, **lock: Any) -> CreateVolumeBackupPolicyDetails:
    schedule = VolumeBackupSchedule(
        backup_type="INCREMENTAL",
        period="ONE_HOUR",
        offset_type="NUMERIC_SECONDS",
        offset_seconds=offset,
        retention_seconds=retention,
        **lock,
    )
    return CreateVolumeBackupPolicyDetails(schedules=[schedule])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("schedule")
    dep = Deployment(root, workers=0)
    dep.env.update(
        BOOTVAULT_MIN_RETENTION_SECONDS="1",
        BOOTVAULT_SCHEDULER_INTERVAL_SECONDS="0.5",
        BOOTVAULT_RETENTION_DAY_SECONDS=str(DAY),
        BOOTVAULT_GC_GRACE_SECONDS="0",
    )
    dep.start()
    workers = [Worker(dep, "worker0"), Worker(dep, "worker1")]
    try:
        tenant = dep.new_tenant("sched")
        vols = []
        for name in ("plain", "locked"):
            image = root / f"{name}.img"
            make_image(image, MIB, seed=len(name))
            vols.append(dep.import_volume(tenant, image, name))
        w = World(dep, tenant, vols[0], vols[1], datetime.now(UTC), workers)
        # A manual backup under a 1-DAY retention lock, made with the oci CLI, and one on legal hold.
        w.manual_locked = oci_json(
            dep, tenant, "bv", "boot-volume-backup", "create", "--boot-volume-id", w.plain_volume,
            "--retention-period", json.dumps({"retentionTimeUnit": "DAYS", "retentionTimeAmount": 1}),
            "--is-retention-lock-enabled", "true",
        )["data"]["id"]  # fmt: skip
        w.held = w.client.create_boot_volume_backup(
            CreateBootVolumeBackupDetails(
                boot_volume_id=w.locked_volume, is_indefinite_retention_enabled=True
            )
        ).data.id
        w.due = (datetime.now(UTC) + timedelta(seconds=LEAD)).replace(microsecond=0)
        offset = w.due.minute * 60 + w.due.second
        client, compartment = w.client, tenant.tenancy_id
        plain = _hourly(PLAIN_RETENTION, offset)
        locked = _hourly(
            LOCKED_RETENTION,
            offset,
            retention_period=RetentionDuration(retention_time_unit="DAYS", retention_time_amount=1),
            is_retention_lock_enabled=True,
        )
        for details, volume in ((plain, w.plain_volume), (locked, w.locked_volume)):
            details.compartment_id = compartment
            policy = client.create_volume_backup_policy(details).data
            client.create_volume_backup_policy_assignment(
                CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume, policy_id=policy.id)
            )
        yield w
    finally:
        for worker in workers:
            worker.stop()
        dep.stop()


def _refused(w: World, backup_id: str, words: str) -> None:
    """The API and the oci CLI both get 409 Conflict with a message saying why."""
    with pytest.raises(oci.exceptions.ServiceError) as err:
        w.client.delete_boot_volume_backup(backup_id)
    assert (err.value.status, err.value.code) == (409, "Conflict") and words in err.value.message
    cli = run_oci(
        w.dep, w.tenant, "bv", "boot-volume-backup", "delete", "--boot-volume-backup-id", backup_id, "--force"
    )
    assert cli.returncode != 0 and "Conflict" in cli.stdout + cli.stderr
    assert w.client.get_boot_volume_backup(backup_id).data.lifecycle_state in (
        "AVAILABLE",
        "CREATING",
        "REQUEST_RECEIVED",
    )


def test_legal_hold_blocks_deletion_until_cleared(world: World) -> None:
    held = wait_state(world.client, "get_boot_volume_backup", world.held, "AVAILABLE").data
    assert held.is_indefinite_retention_enabled is True and held.time_retention_expires_at is None
    _refused(world, world.held, "legal hold")
    cleared = oci_json(
        world.dep, world.tenant, "bv", "boot-volume-backup", "update", "--boot-volume-backup-id", world.held,
        "--is-indefinite-retention-enabled", "false", "--force",
    )["data"]  # fmt: skip
    assert cleared["is-indefinite-retention-enabled"] is False
    world.client.delete_boot_volume_backup(world.held)
    wait_state(world.client, "get_boot_volume_backup", world.held, "TERMINATED")


def test_locked_manual_backup_refuses_deletion_and_removal_of_its_lock(world: World) -> None:
    locked = wait_state(world.client, "get_boot_volume_backup", world.manual_locked, "AVAILABLE").data
    assert locked.is_retention_lock_enabled is True
    assert locked.retention_period.retention_time_unit == "DAYS"
    assert locked.time_retention_expires_at == locked.time_request_received + timedelta(seconds=DAY)
    _refused(world, world.manual_locked, "retention lock")
    args = ["--boot-volume-backup-id", world.manual_locked, "--is-retention-lock-enabled", "false", "--force"]
    unlock = run_oci(world.dep, world.tenant, "bv", "boot-volume-backup", "update", *args)
    assert unlock.returncode != 0 and "cannot be removed" in unlock.stdout + unlock.stderr


def test_hourly_schedule_makes_one_scheduled_backup_with_a_worker_restarted(world: World) -> None:
    assert datetime.now(UTC) < world.due - timedelta(seconds=3), "the module's setup took too long"
    _sleep_until(world.due - timedelta(seconds=2))
    world.workers[0].kill()  # around the due time: one worker dies...
    _sleep_until(world.due + timedelta(seconds=1))
    world.workers[0] = Worker(world.dep, "worker0-restarted")  # ...and comes back
    deadline = time.monotonic() + 60
    for volume in (world.plain_volume, world.locked_volume):
        while True:
            found = world.client.list_boot_volume_backups(world.tenant.tenancy_id, boot_volume_id=volume).data
            scheduled = [b for b in found if b.source_type == "SCHEDULED"]
            if scheduled or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert len(scheduled) == 1, scheduled
        world.scheduled[volume] = scheduled[0]
    time.sleep(3)  # several more ticks of both schedulers: still one each
    for volume, first in world.scheduled.items():
        again = world.client.list_boot_volume_backups(world.tenant.tenancy_id, boot_volume_id=volume).data
        assert [b.id for b in again if b.source_type == "SCHEDULED"] == [first.id]
        assert world.due <= first.time_request_received < world.due + timedelta(seconds=5)
        assert (
            first.display_name
            == f"Auto-backup for {world.due:%Y-%m-%d} via policy: {first.display_name.split(': ')[1]}"
        )
    runs = world.sql("SELECT asset_id, due_time, backup_id FROM scheduled_runs")
    assert sorted(r.backup_id for r in runs) == sorted(b.id for b in world.scheduled.values())
    plain = wait_state(
        world.client, "get_boot_volume_backup", world.scheduled[world.plain_volume].id, "AVAILABLE"
    ).data
    assert plain.type == "INCREMENTAL" and plain.source_type == "SCHEDULED"
    assert plain.expiration_time == plain.time_created + timedelta(seconds=PLAIN_RETENTION)


def test_scheduled_backup_expires_to_terminated(world: World) -> None:
    backup_id = world.scheduled[world.plain_volume].id
    gone = wait_state(
        world.client, "get_boot_volume_backup", backup_id, "TERMINATED", timeout=PLAIN_RETENTION + 30
    ).data
    assert datetime.now(UTC) >= gone.expiration_time


def test_locked_scheduled_backup_survives_delete_expiry_and_gc_until_its_lock_ends(world: World) -> None:
    backup_id = world.scheduled[world.locked_volume].id
    locked = wait_state(world.client, "get_boot_volume_backup", backup_id, "AVAILABLE").data
    assert (
        locked.is_retention_lock_enabled is True and locked.expiration_time < locked.time_retention_expires_at
    )
    assert locked.expiration_time == locked.time_created + timedelta(seconds=LOCKED_RETENTION)
    _refused(world, backup_id, "retention lock")
    _sleep_until(locked.expiration_time + timedelta(seconds=2))  # expired: expiry has looked at it
    assert world.client.get_boot_volume_backup(backup_id).data.lifecycle_state == "AVAILABLE"
    for _ in range(2):  # condemn, then sweep: nothing of the locked backup may go
        assert world.dep.cli("gc").returncode == 0
    verified = json.loads(world.dep.cli("verify", "--backup", backup_id).stdout.strip().splitlines()[-1])
    assert verified == {"checked": 1, "faulty": {}}
    retain = world.sql(
        f"SELECT state, result FROM jobs WHERE kind = 'RETAIN' AND resource_id = '{backup_id}'"
    )
    assert [r.state for r in retain] == ["SUCCEEDED"] and "no object lock" in retain[0].result
    assert datetime.now(UTC) < locked.time_retention_expires_at, "the checks outlasted the lock: raise DAY"
    # Once the lock ends, expiry deletes it (it expired long ago).
    wait_state(world.client, "get_boot_volume_backup", backup_id, "TERMINATED", timeout=DAY + 30)


def test_locked_manual_backup_can_be_deleted_once_its_lock_ends(world: World) -> None:
    locked = world.client.get_boot_volume_backup(world.manual_locked).data
    _sleep_until(locked.time_retention_expires_at + timedelta(seconds=1))
    world.client.delete_boot_volume_backup(world.manual_locked)
    wait_state(world.client, "get_boot_volume_backup", world.manual_locked, "TERMINATED")
