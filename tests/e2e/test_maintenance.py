"""`bootvault gc` and `bootvault verify` against a live deployment."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.helpers import MIB, Deployment, Tenant, sha256_file, wait_hydrated, wait_state

pytestmark = pytest.mark.slow(2)


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("maint"))
    d.env["BOOTVAULT_GC_GRACE_SECONDS"] = "0"
    d.start()
    yield d
    d.stop()


def _store_bytes(dep: Deployment) -> int:
    return sum(p.stat().st_size for p in (dep.data_dir / "store" / "packs").rglob("*") if p.is_file())


def _backup(client: oci.core.BlockstorageClient, volume_id: str) -> str:
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type="FULL")
    backup_id = client.create_boot_volume_backup(details).data.id
    wait_state(client, "get_boot_volume_backup", backup_id, "AVAILABLE")
    return backup_id


def _volume(dep: Deployment, tenant: Tenant, path: Path, mib: int) -> str:
    path.write_bytes(os.urandom(mib * MIB))
    return dep.import_volume(tenant, path, path.stem)


def test_gc_frees_deleted_backups_and_keeps_live_ones(dep: Deployment, tmp_path: Path) -> None:
    tenant = dep.new_tenant("gc")
    client = tenant.client()
    doomed = _backup(client, _volume(dep, tenant, tmp_path / "doomed.img", 24))
    keep_image = tmp_path / "keep.img"
    kept = _backup(client, _volume(dep, tenant, keep_image, 8))
    client.delete_boot_volume_backup(doomed)
    wait_state(client, "get_boot_volume_backup", doomed, "TERMINATED")
    before = _store_bytes(dep)
    first = json.loads(dep.cli("gc").stdout.strip().splitlines()[-1])
    assert first["condemned_packs"] >= 2 and first["deleted_packs"] == 0
    second = json.loads(dep.cli("gc").stdout.strip().splitlines()[-1])
    assert second["deleted_packs"] == first["condemned_packs"] and second["freed_bytes"] >= 24 * MIB
    assert before - _store_bytes(dep) >= 24 * MIB
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain="bootvault:AD-1",
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=kept),
    )
    restored = wait_hydrated(client, client.create_boot_volume(details).data.id)
    assert dep.volume_sha256(restored.id, 1 << 30) == sha256_file(keep_image, 1 << 30)


def test_verify_marks_damaged_backup_faulty(dep: Deployment, tmp_path: Path) -> None:
    tenant = dep.new_tenant("verify")
    client = tenant.client()
    good = _backup(client, _volume(dep, tenant, tmp_path / "good.img", 2))
    clean = json.loads(dep.cli("verify", "--backup", good).stdout.strip().splitlines()[-1])
    assert clean == {"checked": 1, "faulty": {}}
    bad = _backup(client, _volume(dep, tenant, tmp_path / "bad.img", 2))
    packs = sorted((dep.data_dir / "store" / "packs").rglob("*"), key=lambda p: p.stat().st_mtime)
    victim = [p for p in packs if p.is_file()][-1]  # the newest pack holds only `bad`'s random blocks
    victim.chmod(0o600)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x40
    victim.write_bytes(bytes(data))
    run = dep.cli("verify", check=False)
    assert run.returncode == 2
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert bad in report["faulty"] and good not in report["faulty"]
    damaged = client.get_boot_volume_backup(bad).data
    assert damaged.lifecycle_state == "FAULTY"
    assert "failed authentication" in damaged.system_tags["bootvault"]["lifecycleDetails"]
    assert client.get_boot_volume_backup(good).data.lifecycle_state == "AVAILABLE"


def test_gc_during_a_backup_keeps_what_it_reuses(dep: Deployment, tmp_path: Path) -> None:
    """A backup reuses blocks of a deleted backup while `bootvault gc` runs twice; it still restores."""
    tenant = dep.new_tenant("gcrace")
    client = tenant.client()
    image = tmp_path / "race.img"
    volume_id = _volume(dep, tenant, image, 256)
    old = _backup(client, volume_id)
    client.delete_boot_volume_backup(old)
    wait_state(client, "get_boot_volume_backup", old, "TERMINATED")
    dep.write_volume(volume_id, [(128 * MIB, os.urandom(128 * MIB))])  # new data in the second half only
    expected = dep.volume_sha256(volume_id, 1 << 30)
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type="INCREMENTAL")
    new = client.create_boot_volume_backup(details).data.id
    while client.get_boot_volume_backup(new).data.lifecycle_state == "REQUEST_RECEIVED":
        pass
    reports = [json.loads(dep.cli("gc").stdout.strip().splitlines()[-1]) for _ in range(2)]
    wait_state(client, "get_boot_volume_backup", new, "AVAILABLE")
    reports += [json.loads(dep.cli("gc").stdout.strip().splitlines()[-1]) for _ in range(2)]
    assert sum(r["condemned_packs"] for r in reports) >= 1  # the deleted backup's packs were condemned
    details2 = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain="bootvault:AD-1",
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=new),
    )
    restored = wait_hydrated(client, client.create_boot_volume(details2).data.id)
    assert dep.volume_sha256(restored.id, 1 << 30) == expected
