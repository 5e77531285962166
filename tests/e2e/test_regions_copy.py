"""Cross-region copy between two regions on one machine (each its own data dir, port and SQLite
database), driven by the oci SDK and the bootvault CLI: pairing, global identity, copies of FULL
and INCREMENTAL backups sending only what the destination lacks, restores compared by hash, work
requests read from both regions, and the bad requests."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CopyBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.helpers import MIB, Tenant, make_image, raw_request, sha256_file, wait_hydrated, wait_state
from tests.regions import Region, client_in, pair, work_requests_in

AD = "bootvault:AD-1"
GIB = 1 << 30


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Region, Region]]:
    alpha = Region(tmp_path_factory.mktemp("alpha"), "alpha-1")
    beta = Region(tmp_path_factory.mktemp("beta"), "beta-1")
    alpha.start()
    beta.start()
    yield alpha, beta
    alpha.stop()
    beta.stop()


@pytest.fixture(scope="module")
def paired(regions: tuple[Region, Region]) -> tuple[Region, Region, Tenant]:
    alpha, beta = regions
    tenant = alpha.new_tenant("before")  # created before pairing: must reach beta with it
    pair(alpha, beta)
    return alpha, beta, tenant


def _backup(client: oci.core.BlockstorageClient, volume_id: str, kind: str) -> str:
    made = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type=kind)
    )
    return wait_state(client, "get_boot_volume_backup", made.data.id, "AVAILABLE").data.id


def _sent(tenant: Tenant, region: Region, wr_id: str) -> int:
    """Bytes the copy sent, from its work request's last log line in the source region."""
    logs = work_requests_in(tenant, region).list_work_request_logs(wr_id).data
    line = next(e.message for e in reversed(logs) if "bytes sent" in e.message)
    return int(line.split(" bytes sent")[0].rsplit(" ", 1)[-1])


def _wait_wr(
    tenant: Tenant, region: Region, wr_id: str, timeout: float = 120
) -> oci.work_requests.models.WorkRequest:
    client = work_requests_in(tenant, region)
    resp = oci.wait_until(
        client,
        client.get_work_request(wr_id),
        evaluate_response=lambda r: r.data.time_finished is not None,
        max_wait_seconds=timeout,
        max_interval_seconds=1,
    )
    return resp.data


def _restore_hash(region: Region, client: oci.core.BlockstorageClient, tenant: Tenant, backup_id: str) -> str:
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    restored = wait_hydrated(client, client.create_boot_volume(details).data.id)
    return region.volume_sha256(restored.id, GIB)


def test_pairing_lists_peers_both_ways(paired: tuple[Region, Region, Tenant]) -> None:
    alpha, beta, _ = paired
    assert alpha.peers() == ["beta-1"]
    assert beta.peers() == ["alpha-1"]


def test_identity_is_global(paired: tuple[Region, Region, Tenant]) -> None:
    alpha, beta, before = paired
    # a tenancy made before pairing signs requests to the other region with the same key
    assert client_in(before, beta).list_boot_volume_backups(compartment_id=before.tenancy_id).data == []
    # one made after pairing, in the other region, reaches the first by the identity sync job
    after = beta.new_tenant("after")
    deadline = time.monotonic() + 30
    while True:
        try:
            client_in(after, alpha).list_boot_volume_backups(compartment_id=after.tenancy_id)
            break
        except oci.exceptions.ServiceError as exc:
            assert exc.status == 401 and time.monotonic() < deadline, exc
            time.sleep(0.5)
    # a compartment made after pairing too
    comp = beta.cli("compartment", "create", "--parent", after.tenancy_id, "--name", "c1").stdout.split()[-1]
    deadline = time.monotonic() + 30
    while True:
        try:
            client_in(after, alpha).list_boot_volume_backups(compartment_id=comp)
            break
        except oci.exceptions.ServiceError as exc:
            assert exc.status == 404 and time.monotonic() < deadline, exc
            time.sleep(0.5)


def test_copy_full_then_incremental_sends_only_what_is_missing(
    paired: tuple[Region, Region, Tenant], tmp_path: Path
) -> None:
    alpha, beta, tenant = paired
    src, dst = client_in(tenant, alpha), client_in(tenant, beta)
    image = tmp_path / "disk.img"
    make_image(image, 24 * MIB, seed=11)
    volume_id = alpha.import_volume(tenant, image, "copied")
    full = _backup(src, volume_id, "FULL")
    source = src.get_boot_volume_backup(full).data

    resp = src.copy_boot_volume_backup(
        full, CopyBootVolumeBackupDetails(destination_region="beta-1", display_name="full-copy")
    )
    copy = resp.data
    wr_id = resp.headers["opc-work-request-id"]
    assert resp.headers["etag"]
    assert copy.id.split(".")[3] == "beta-1" and copy.id != full
    assert copy.lifecycle_state == "CREATING" and copy.time_created is None
    assert copy.source_boot_volume_backup_id == full
    assert copy.display_name == "full-copy"
    for field in ("type", "size_in_gbs", "compartment_id", "boot_volume_id", "freeform_tags", "defined_tags"):
        assert getattr(copy, field) == getattr(source, field), field

    done = wait_state(dst, "get_boot_volume_backup", copy.id, "AVAILABLE").data
    assert done.time_created is not None
    raw = raw_request(
        Tenant(tenant.name, tenant.tenancy_id, tenant.config_path, beta.endpoint),
        "GET",
        f"/bootVolumeBackups/{copy.id}",
    )
    assert raw.json()["backupProgress"] == 100
    # the same work request, read in both regions
    for region in (alpha, beta):
        wr = _wait_wr(tenant, region, wr_id)
        assert wr.status == "SUCCEEDED" and wr.percent_complete == 100.0, region.name
        assert wr.operation_type == "CopyBootVolumeBackup"
        assert [(r.entity_type, r.action_type, r.identifier) for r in wr.resources] == [
            ("bootVolumeBackup", "CREATED", copy.id)
        ]
        assert wr.time_accepted and wr.time_started and wr.time_finished
    full_sent = _sent(tenant, alpha, wr_id)
    assert full_sent > 4 * MIB  # the random parts of the image do not compress

    # the copy restores, in the destination, to the source's bytes
    assert _restore_hash(beta, dst, tenant, copy.id) == sha256_file(image, GIB)

    # an incremental after 1 MiB of changes sends about that, not the volume
    change = bytes(range(256)) * 4096
    alpha.write_volume(volume_id, [(3 * MIB, change)])
    incr = _backup(src, volume_id, "INCREMENTAL")
    resp = src.copy_boot_volume_backup(incr, CopyBootVolumeBackupDetails(destination_region="beta-1"))
    wait_state(dst, "get_boot_volume_backup", resp.data.id, "AVAILABLE")
    assert _wait_wr(tenant, alpha, resp.headers["opc-work-request-id"]).status == "SUCCEEDED"
    incr_sent = _sent(tenant, alpha, resp.headers["opc-work-request-id"])
    assert 0 < incr_sent < full_sent / 4, (incr_sent, full_sent)
    expected = tmp_path / "expected.img"
    data = bytearray(image.read_bytes())
    data[3 * MIB : 3 * MIB + len(change)] = change
    expected.write_bytes(data)
    assert _restore_hash(beta, dst, tenant, resp.data.id) == sha256_file(expected, GIB)

    # copying the same backup again sends nothing but the comparison
    again = src.copy_boot_volume_backup(full, CopyBootVolumeBackupDetails(destination_region="beta-1"))
    wait_state(dst, "get_boot_volume_backup", again.data.id, "AVAILABLE")
    assert _wait_wr(tenant, alpha, again.headers["opc-work-request-id"]).status == "SUCCEEDED"
    assert _sent(tenant, alpha, again.headers["opc-work-request-id"]) == 0
