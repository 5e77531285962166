"""Jobs run by separate worker processes: queued work, in-progress conflicts, SIGKILL recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.helpers import (
    BIN,
    MIB,
    Deployment,
    Tenant,
    make_image,
    raw_request,
    sha256_file,
    wait_hydrated,
    wait_state,
)

pytestmark = pytest.mark.slow(2.5)


@pytest.fixture(scope="module")
def api_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """An API process with no worker: jobs wait until a test starts `bootvault worker`."""
    dep = Deployment(tmp_path_factory.mktemp("apionly"), workers=0)
    dep.start()
    yield dep
    dep.stop()


class WorkerProcess:
    def __init__(self, dep: Deployment) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "bootvault"), "worker"],
            env=dep.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def _backup(client: oci.core.BlockstorageClient, volume_id: str, name: str, kind: str = "FULL") -> str:
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, display_name=name, type=kind)
    return client.create_boot_volume_backup(details).data.id


def test_in_progress_conflicts_then_queue_in_order(api_only: Deployment, tmp_path: Path) -> None:
    tenant = api_only.new_tenant("queue")
    client = tenant.client()
    image = tmp_path / "q.img"
    make_image(image, 4 * MIB, seed=5)
    volume_id = api_only.import_volume(tenant, image, "queued-volume")
    first = _backup(client, volume_id, "first")
    second = _backup(client, volume_id, "second")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.delete_boot_volume_backup(first)
    assert (err.value.status, err.value.code) == (409, "IncorrectState")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.delete_boot_volume(volume_id)
    assert (err.value.status, err.value.code) == (409, "IncorrectState")
    assert client.get_boot_volume_backup(second).data.lifecycle_state == "REQUEST_RECEIVED"
    worker = WorkerProcess(api_only)
    try:
        a = wait_state(client, "get_boot_volume_backup", first, "AVAILABLE").data
        b = wait_state(client, "get_boot_volume_backup", second, "AVAILABLE").data
    finally:
        worker.stop()
    assert a.time_created < b.time_created  # the second waited for the first


def _wait_for(client: oci.core.BlockstorageClient, backup_id: str, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get_boot_volume_backup(backup_id).data.lifecycle_state
        if state in states:
            return state
        time.sleep(0.02)
    raise AssertionError(f"backup {backup_id} never reached {states}")


def _big_volume(dep: Deployment, tenant: Tenant, tmp_path: Path) -> tuple[str, Path]:
    image = tmp_path / "big.img"
    with open(image, "wb") as fh:
        for i in range(768):
            fh.write(os.urandom(MIB) if i % 3 else bytes(MIB))
    return dep.import_volume(tenant, image, "big-volume"), image


def test_worker_killed_mid_backup_recovers(api_only: Deployment, tmp_path: Path) -> None:
    tenant = api_only.new_tenant("kill")
    client = tenant.client()
    volume_id, image = _big_volume(api_only, tenant, tmp_path)
    backup_id = _backup(client, volume_id, "killed")
    worker = WorkerProcess(api_only)
    try:
        _wait_for(client, backup_id, {"CREATING"}, timeout=60)
        worker.kill()
        assert client.get_boot_volume_backup(backup_id).data.lifecycle_state == "CREATING"
    finally:
        worker.stop()
    replacement = WorkerProcess(api_only)
    try:
        final = _wait_for(client, backup_id, {"AVAILABLE", "FAULTY"}, timeout=120)
        assert final == "AVAILABLE", client.get_boot_volume_backup(backup_id).data.system_tags
        details = CreateBootVolumeDetails(
            compartment_id=tenant.tenancy_id,
            availability_domain="bootvault:AD-1",
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
        )
        restored = client.create_boot_volume(details).data.id
        wait_state(client, "get_boot_volume", restored, "AVAILABLE")
        wait_hydrated(client, restored)  # the hydration copy runs on the replacement worker
    finally:
        replacement.stop()
    assert api_only.volume_sha256(restored, 1 << 30) == sha256_file(image, 1 << 30)


def test_gives_up_after_repeated_deaths(tmp_path: Path) -> None:
    """A job whose worker dies every time ends FAULTY with a reason, never stuck."""
    dep = Deployment(tmp_path / "dep", workers=0)
    dep.env["BOOTVAULT_MAX_JOB_ATTEMPTS"] = "1"
    dep.start()
    try:
        tenant = dep.new_tenant("giveup")
        client = tenant.client()
        volume_id, _ = _big_volume(dep, tenant, tmp_path)
        backup_id = _backup(client, volume_id, "doomed")
        worker = WorkerProcess(dep)
        _wait_for(client, backup_id, {"CREATING"}, timeout=60)
        worker.kill()
        replacement = WorkerProcess(dep)
        try:
            assert _wait_for(client, backup_id, {"FAULTY", "AVAILABLE"}, timeout=60) == "FAULTY"
        finally:
            replacement.stop()
        reason = client.get_boot_volume_backup(backup_id).data.system_tags["bootvault"]["lifecycleDetails"]
        assert "Gave up after 1 attempt:" in reason
    finally:
        dep.stop()


def test_percent_complete_rises_while_imaging(api_only: Deployment, tmp_path: Path) -> None:
    tenant = api_only.new_tenant("progress")
    client = tenant.client()
    volume_id, _ = _big_volume(api_only, tenant, tmp_path)
    backup_id = _backup(client, volume_id, "watched")
    seen: list[int] = []
    worker = WorkerProcess(api_only)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            body = raw_request(tenant, "GET", f"/bootVolumeBackups/{backup_id}").json()
            seen.append(body["backupProgress"])
            if body["lifecycleState"] == "AVAILABLE":
                break
            time.sleep(0.01)
    finally:
        worker.stop()
    assert seen[-1] == 100 and seen == sorted(seen)
    assert any(0 < p < 100 for p in seen), seen
