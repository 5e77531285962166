"""Boot volumes through the oci SDK: clone, list, grow, move, delete."""

from __future__ import annotations

import os
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    BootVolumeSourceFromBootVolumeDetails,
    ChangeBootVolumeCompartmentDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    UpdateBootVolumeDetails,
)

from tests.helpers import (
    MIB,
    Deployment,
    Tenant,
    make_image,
    raw_request,
    sha256_file,
    wait_hydrated,
    wait_state,
)

AD = "bootvault:AD-1"
GIB = 1 << 30


@pytest.fixture(scope="module")
def source(
    deployment: Deployment, tenant: Tenant, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    image = tmp_path_factory.mktemp("vol") / "src.img"
    make_image(image, 5 * MIB, seed=8)
    return deployment.import_volume(tenant, image, "clone-source"), image


def _clone(client: oci.core.BlockstorageClient, tenant: Tenant, source_id: str, **kw):  # type: ignore[no-untyped-def]
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        source_details=BootVolumeSourceFromBootVolumeDetails(id=source_id),
        **kw,
    )
    return client.create_boot_volume(details)


def test_clone_follows_source_ad_and_copies_bytes(
    deployment: Deployment, tenant: Tenant, source: tuple[str, Path]
) -> None:
    client = tenant.client()
    created = _clone(client, tenant, source[0], display_name="clone", size_in_gbs=2)
    assert created.data.lifecycle_state == "PROVISIONING" and created.data.availability_domain == AD
    clone = wait_state(client, "get_boot_volume", created.data.id, "AVAILABLE").data
    assert clone.size_in_gbs == 2 and clone.size_in_mbs == 2048 and clone.is_hydrated
    assert clone.source_details.type == "bootVolume" and clone.source_details.id == source[0]
    assert deployment.volume_size(clone.id) == 2 * GIB
    with deployment.exported(clone.id) as path:
        assert os.path.getsize(path) == 2 * GIB
        assert sha256_file(path, 2 * GIB) == sha256_file(source[1], 2 * GIB)


def test_list_update_grow_move_delete(
    deployment: Deployment, tenant: Tenant, source: tuple[str, Path]
) -> None:
    client = tenant.client()
    vol = wait_state(client, "get_boot_volume", _clone(client, tenant, source[0]).data.id, "AVAILABLE")
    listed = oci.pagination.list_call_get_all_results(
        client.list_boot_volumes, compartment_id=tenant.tenancy_id, limit=1
    ).data
    assert vol.data.id in {v.id for v in listed} and source[0] in {v.id for v in listed}
    grown = client.update_boot_volume(
        vol.data.id,
        UpdateBootVolumeDetails(size_in_gbs=3, display_name="bigger"),
        if_match=vol.headers["etag"],
    )
    assert grown.data.size_in_gbs == 3 and grown.data.display_name == "bigger"
    assert grown.data.lifecycle_state in ("PROVISIONING", "AVAILABLE")  # a RESIZE job grows it, as OCI
    done = wait_state(client, "get_boot_volume", vol.data.id, "AVAILABLE").data
    assert done.size_in_gbs == 3 and done.display_name == "bigger"
    assert deployment.volume_size(vol.data.id) == 3 * GIB
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.update_boot_volume(vol.data.id, UpdateBootVolumeDetails(size_in_gbs=1))
    assert (err.value.status, err.value.code) == (
        400,
        "InvalidParameter",
    ) and "sizeInGBs" in err.value.message
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.update_boot_volume(
            vol.data.id, UpdateBootVolumeDetails(display_name="x"), if_match=vol.headers["etag"]
        )
    assert (err.value.status, err.value.code) == (412, "NoEtagMatch")
    comp = deployment.cli(
        "compartment", "create", "--parent", tenant.tenancy_id, "--name", "vols"
    ).stdout.strip()
    client.change_boot_volume_compartment(
        vol.data.id, ChangeBootVolumeCompartmentDetails(compartment_id=comp)
    )
    assert [v.id for v in client.list_boot_volumes(compartment_id=comp).data] == [vol.data.id]
    client.delete_boot_volume(vol.data.id)
    gone = wait_state(client, "get_boot_volume", vol.data.id, "TERMINATED").data
    assert gone.lifecycle_state == "TERMINATED"
    assert not deployment.volume_path(vol.data.id).exists()


def test_volume_errors(tenant: Tenant, source: tuple[str, Path]) -> None:
    client = tenant.client()
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_boot_volume("ocid1.bootvolume.oc1.local-1.nothere")
    assert (err.value.status, err.value.code) == (404, "NotAuthorizedOrNotFound")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        _clone(client, tenant, source[0], availability_domain="bootvault:AD-9")
    assert (err.value.status, err.value.code) == (
        400,
        "InvalidParameter",
    ) and "availabilityDomain" in err.value.message
    body = (
        b'{"compartmentId": "%s", "sourceDetails": {"type": "bootVolumeReplica", "id": "x"}}'
        % tenant.tenancy_id.encode()
    )
    resp = raw_request(tenant, "POST", "/bootVolumes", body)
    assert resp.status_code == 400 and resp.json()["code"] == "InvalidParameter"
    assert "sourceDetails" in resp.json()["message"]
    resp = raw_request(tenant, "POST", "/bootVolumes", b'{"compartmentId": "x"}')
    assert (resp.status_code, resp.json()["code"]) == (
        400,
        "InvalidParameter",
    ) and "sourceDetails" in resp.json()["message"]


def test_backups_are_regional_and_restore_into_another_ad(tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "two-ads")
    dep.env["BOOTVAULT_AVAILABILITY_DOMAINS"] = '["bootvault:AD-1", "bootvault:AD-2"]'
    dep.env["BOOTVAULT_VOLUME_POOLS"] = f'{{"bootvault:AD-2": "{tmp_path / "pool-ad2"}"}}'
    dep.start()
    try:
        tenant = dep.new_tenant("regional")
        client = tenant.client()
        image = tmp_path / "ad1.img"
        make_image(image, 3 * MIB, seed=21)
        volume_id = dep.import_volume(tenant, image, "in-ad1")
        created = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id))
        backup = wait_state(client, "get_boot_volume_backup", created.data.id, "AVAILABLE").data
        details = CreateBootVolumeDetails(
            compartment_id=tenant.tenancy_id,
            availability_domain="bootvault:AD-2",
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
        )
        restored = wait_state(
            client, "get_boot_volume", client.create_boot_volume(details).data.id, "AVAILABLE"
        )
        wait_hydrated(client, restored.data.id)
        assert restored.data.availability_domain == "bootvault:AD-2"
        path = dep.volume_path(restored.data.id)
        assert path.parent == tmp_path / "pool-ad2" and path.is_file()
        assert dep.volume_sha256(restored.data.id, GIB) == sha256_file(image, GIB)
    finally:
        dep.stop()
