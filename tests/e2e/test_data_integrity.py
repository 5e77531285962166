"""Real data: FULL and INCREMENTAL backups restore bit for bit; corruption is caught, never restored."""

from __future__ import annotations

import os
import random
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.helpers import MIB, Deployment, Tenant, make_image, sha256_file, wait_hydrated, wait_state

pytestmark = pytest.mark.slow(3)

GIB = 1 << 30


def _backup(client: oci.core.BlockstorageClient, volume_id: str, kind: str):  # type: ignore[no-untyped-def]
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type=kind, display_name=kind.lower())
    return wait_state(
        client, "get_boot_volume_backup", client.create_boot_volume_backup(details).data.id, "AVAILABLE"
    )


def _restore(client: oci.core.BlockstorageClient, tenant: Tenant, backup_id: str, final: str = "AVAILABLE"):  # type: ignore[no-untyped-def]
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain="bootvault:AD-1",
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    created = client.create_boot_volume(details).data.id
    if final == "AVAILABLE":  # available at once; the data is in the volume once hydrated
        return wait_hydrated(client, created)
    return wait_state(client, "get_boot_volume", created, final).data


def _mutate(deployment: Deployment, volume_id: str, seed: int) -> None:
    """Rewrite scattered 4 KiB blocks, including some inside holes and past the imaged data, through
    the attached volume (as a machine would)."""
    rng = random.Random(seed)
    writes = [(rng.randrange(0, 12 * MIB // 4096) * 4096, rng.randbytes(4096)) for _ in range(4)]
    writes.append((700 * MIB, b"written far into the sparse tail" * 100))
    deployment.write_volume(volume_id, writes)


def test_full_then_incremental_restore_exactly(
    deployment: Deployment, tenant: Tenant, tmp_path: Path
) -> None:
    client = tenant.client()
    image = tmp_path / "disk.img"
    make_image(image, 12 * MIB + 12345, seed=11)  # a partial last block too
    volume_id = deployment.import_volume(tenant, image, "integrity")
    hash_full = deployment.volume_sha256(volume_id, GIB)
    assert hash_full == sha256_file(image, GIB)
    full = _backup(client, volume_id, "FULL").data
    _mutate(deployment, volume_id, seed=12)
    hash_incr = deployment.volume_sha256(volume_id, GIB)
    assert hash_incr != hash_full
    incr = _backup(client, volume_id, "INCREMENTAL").data
    full_bytes = int(full.system_tags["bootvault"]["uniqueSizeBytes"])
    incr_bytes = int(incr.system_tags["bootvault"]["uniqueSizeBytes"])
    assert 0 < incr_bytes < full_bytes / 2  # only changed blocks were stored again
    restored_full = _restore(client, tenant, full.id)
    restored_incr = _restore(client, tenant, incr.id)
    assert deployment.volume_sha256(restored_full.id, GIB) == hash_full
    assert deployment.volume_sha256(restored_incr.id, GIB) == hash_incr
    # holes stay holes: the restored volume's qcow2 file allocates little of its 1 GiB
    assert os.stat(deployment.volume_path(restored_incr.id)).st_blocks * 512 < 64 * MIB
    export = tmp_path / "export.img"
    deployment.cli("volume", "export", restored_incr.id, str(export))
    assert os.path.getsize(export) == GIB and sha256_file(export) == hash_incr


def test_flipped_byte_makes_restore_faulty(deployment: Deployment, tenant: Tenant, tmp_path: Path) -> None:
    client = tenant.client()
    image = tmp_path / "rand.img"
    image.write_bytes(random.Random(21).randbytes(3 * MIB))
    volume_id = deployment.import_volume(tenant, image, "corruptible")
    backup = _backup(client, volume_id, "FULL").data
    # These random blocks exist only in this backup, so the newest pack holds them.
    packs = sorted((deployment.data_dir / "store" / "packs").rglob("*"), key=lambda p: p.stat().st_mtime)
    victim = [p for p in packs if p.is_file()][-1]
    victim.chmod(0o600)
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))
    faulty = _restore(client, tenant, backup.id, final="FAULTY")
    reason = faulty.system_tags["bootvault"]["lifecycleDetails"]
    assert "corrupt" in reason.lower() or "authentic" in reason.lower()
    assert "block" in reason
    with pytest.raises(AssertionError):
        assert faulty.is_hydrated
