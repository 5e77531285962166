"""The unmodified oci SDK against a live server: the whole boot volume backup lifecycle."""

from __future__ import annotations

import json
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    ChangeBootVolumeBackupCompartmentDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    UpdateBootVolumeBackupDetails,
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


@pytest.fixture(scope="module")
def volume(
    deployment: Deployment, tenant: Tenant, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    image = tmp_path_factory.mktemp("img") / "disk.img"
    make_image(image, 6 * MIB, seed=3)
    return deployment.import_volume(tenant, image, "sdk-volume"), image


def _create(client: oci.core.BlockstorageClient, volume_id: str, name: str, **kw):  # type: ignore[no-untyped-def]
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, display_name=name, **kw)
    return client.create_boot_volume_backup(details, retry_strategy=oci.retry.DEFAULT_RETRY_STRATEGY)


def test_create_wait_get(tenant: Tenant, volume: tuple[str, Path]) -> None:
    client = tenant.client()
    created = _create(client, volume[0], "sdk-full", type="FULL", freeform_tags={"team": "ops"})
    assert created.status == 200
    assert created.headers["etag"]
    assert created.data.lifecycle_state == "REQUEST_RECEIVED"
    assert created.data.compartment_id == tenant.tenancy_id
    assert created.data.source_type == "MANUAL"
    done = wait_state(client, "get_boot_volume_backup", created.data.id, "AVAILABLE").data
    assert done.type == "FULL"
    assert done.freeform_tags == {"team": "ops"}
    assert done.size_in_gbs == 1
    assert done.expiration_time is None
    assert done.time_request_received <= done.time_created
    unique = int(done.system_tags["bootvault"]["uniqueSizeBytes"])
    assert 0 < unique < 6 * MIB  # holes cost nothing, text compresses
    assert done.unique_size_in_gbs == 1
    raw = raw_request(tenant, "GET", f"/bootVolumeBackups/{done.id}")
    assert raw.json()["backupProgress"] == 100 and "percentComplete" not in raw.json()
    assert raw.headers["etag"] == client.get_boot_volume_backup(done.id).headers["etag"]


def test_default_type_is_incremental_and_name_defaulted(tenant: Tenant, volume: tuple[str, Path]) -> None:
    client = tenant.client()
    created = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume[0]))
    assert created.data.type == "INCREMENTAL"
    assert created.data.display_name == created.data.id.rsplit(".", 1)[-1]  # OCI's default name
    wait_state(client, "get_boot_volume_backup", created.data.id, "AVAILABLE")


def test_list_filters_sort_and_pages(tenant: Tenant, volume: tuple[str, Path]) -> None:
    client = tenant.client()
    ids = []
    for name in ("list-b", "list-a", "list-c"):
        ids.append(_create(client, volume[0], name).data.id)
    for ident in ids:
        wait_state(client, "get_boot_volume_backup", ident, "AVAILABLE")
    by_name = client.list_boot_volume_backups(tenant.tenancy_id, display_name="list-a").data
    assert [b.id for b in by_name] == [ids[1]]
    everything = oci.pagination.list_call_get_all_results(
        client.list_boot_volume_backups, tenant.tenancy_id, boot_volume_id=volume[0], limit=1
    ).data
    assert set(ids) <= {b.id for b in everything}
    assert len({b.id for b in everything}) == len(everything)
    # Without sortBy/sortOrder: oldest first, by when each backup was requested.
    oldest_first = [b.time_request_received for b in everything]
    assert oldest_first == sorted(oldest_first)
    by_time = oci.pagination.list_call_get_all_results(
        client.list_boot_volume_backups, tenant.tenancy_id, boot_volume_id=volume[0], sort_by="TIMECREATED"
    ).data
    assert [b.id for b in by_time] == [b.id for b in reversed(everything)]  # TIMECREATED alone: newest first
    names = [
        b.display_name
        for b in client.list_boot_volume_backups(
            tenant.tenancy_id, sort_by="DISPLAYNAME", boot_volume_id=volume[0]
        ).data
    ]
    assert names == sorted(names)
    page = client.list_boot_volume_backups(tenant.tenancy_id, boot_volume_id=volume[0], limit=1)
    assert len(page.data) == 1 and page.next_page
    last = client.list_boot_volume_backups(tenant.tenancy_id, display_name="list-c", limit=5)
    assert len(last.data) == 1 and last.next_page is None
    raw = raw_request(
        tenant, "GET", f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}&lifecycleState=available"
    )
    assert (
        raw.status_code == 200 and raw.json() and all(b["lifecycleState"] == "AVAILABLE" for b in raw.json())
    )


def test_update_with_if_match(tenant: Tenant, volume: tuple[str, Path]) -> None:
    client = tenant.client()
    backup = wait_state(
        client, "get_boot_volume_backup", _create(client, volume[0], "upd").data.id, "AVAILABLE"
    )
    etag = backup.headers["etag"]
    updated = client.update_boot_volume_backup(
        backup.data.id,
        UpdateBootVolumeBackupDetails(display_name="renamed", freeform_tags={"a": "b"}),
        if_match=etag,
    )
    assert updated.data.display_name == "renamed" and updated.data.freeform_tags == {"a": "b"}
    assert updated.headers["etag"] != etag
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.update_boot_volume_backup(
            backup.data.id, UpdateBootVolumeBackupDetails(display_name="x"), if_match=etag
        )
    assert (err.value.status, err.value.code) == (412, "NoEtagMatch")
    assert client.get_boot_volume_backup(backup.data.id).data.display_name == "renamed"


def test_change_compartment(deployment: Deployment, tenant: Tenant, volume: tuple[str, Path]) -> None:
    client = tenant.client()
    comp = deployment.cli(
        "compartment", "create", "--parent", tenant.tenancy_id, "--name", "moved"
    ).stdout.strip()
    backup = wait_state(
        client, "get_boot_volume_backup", _create(client, volume[0], "mv").data.id, "AVAILABLE"
    )
    client.change_boot_volume_backup_compartment(
        backup.data.id, ChangeBootVolumeBackupCompartmentDetails(compartment_id=comp)
    )
    assert client.get_boot_volume_backup(backup.data.id).data.compartment_id == comp
    assert [b.id for b in client.list_boot_volume_backups(comp).data] == [backup.data.id]
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.change_boot_volume_backup_compartment(
            backup.data.id,
            ChangeBootVolumeBackupCompartmentDetails(compartment_id="ocid1.compartment.oc1..nope"),
        )
    assert (err.value.status, err.value.code) == (400, "RelatedResourceNotAuthorizedOrNotFound")


def test_restore_and_delete(deployment: Deployment, tenant: Tenant, volume: tuple[str, Path]) -> None:
    client = tenant.client()
    volume_id, image = volume
    backup = wait_state(
        client, "get_boot_volume_backup", _create(client, volume_id, "rs").data.id, "AVAILABLE"
    )
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        display_name="restored",
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup.data.id),
    )
    created = client.create_boot_volume(details, retry_strategy=oci.retry.DEFAULT_RETRY_STRATEGY)
    assert created.data.lifecycle_state == "RESTORING" and created.data.is_hydrated is False
    available = wait_state(client, "get_boot_volume", created.data.id, "AVAILABLE").data
    assert available.size_in_gbs == 1
    restored = wait_hydrated(client, created.data.id)  # instant restore: the data follows
    assert restored.is_hydrated and restored.size_in_gbs == 1
    assert restored.source_details.id == backup.data.id
    assert deployment.volume_sha256(restored.id, 1 << 30) == sha256_file(image, 1 << 30)
    client.delete_boot_volume_backup(backup.data.id, if_match=backup.headers["etag"])
    gone = wait_state(client, "get_boot_volume_backup", backup.data.id, "TERMINATED").data
    assert gone.lifecycle_state == "TERMINATED"


def _error(call, *args, **kw) -> oci.exceptions.ServiceError:  # type: ignore[no-untyped-def]
    with pytest.raises(oci.exceptions.ServiceError) as err:
        call(*args, **kw)
    return err.value


def test_sdk_errors(tenant: Tenant, volume: tuple[str, Path]) -> None:
    client = tenant.client()
    e = _error(client.get_boot_volume_backup, "ocid1.bootvolumebackup.oc1.local-1.missing")
    assert (e.status, e.code) == (404, "NotAuthorizedOrNotFound")
    e = _error(
        client.create_boot_volume_backup,
        CreateBootVolumeBackupDetails(boot_volume_id="ocid1.bootvolume.oc1..x"),
    )
    assert (e.status, e.code) == (400, "RelatedResourceNotAuthorizedOrNotFound")
    e = _error(
        client.create_boot_volume_backup,
        CreateBootVolumeBackupDetails(boot_volume_id=volume[0], display_name="n" * 256),
    )
    assert (e.status, e.code) == (400, "InvalidParameter") and "displayName" in e.message
    e = _error(client.list_boot_volume_backups, "ocid1.compartment.oc1..unknown")
    assert (e.status, e.code) == (404, "NotAuthorizedOrNotFound")
    e = _error(
        client.create_boot_volume_backup,
        CreateBootVolumeBackupDetails(boot_volume_id=volume[0], freeform_tags={"k": "v" * 300}),
    )
    assert (e.status, e.code) == (400, "InvalidParameter") and "freeformTags" in e.message


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        (b"{not json", 400, "CannotParseRequest", "JSON"),
        (b"[]", 400, "CannotParseRequest", "object"),
        (b"{}", 400, "InvalidParameter", "bootVolumeId"),
        (json.dumps({"bootVolumeId": "x", "type": "DAILY"}).encode(), 400, "InvalidParameter", "type"),
        (json.dumps({"bootVolumeId": 5}).encode(), 400, "InvalidParameter", "bootVolumeId"),
        (
            json.dumps({"bootVolumeId": "x", "definedTags": {"ns": "flat"}}).encode(),
            400,
            "InvalidParameter",
            "ns",
        ),
    ],
)
def test_bad_bodies(tenant: Tenant, body: bytes, status: int, code: str, needle: str) -> None:
    resp = raw_request(tenant, "POST", "/bootVolumeBackups", body)
    assert resp.status_code == status
    assert resp.json()["code"] == code and needle in resp.json()["message"]
    assert resp.headers["opc-request-id"]


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("sortBy=SIZE", "sortBy"),
        ("sortOrder=UP", "sortOrder"),
        ("lifecycleState=GONE", "lifecycleState"),
    ],
)
def test_bad_list_queries(tenant: Tenant, query: str, needle: str) -> None:
    resp = raw_request(tenant, "GET", f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}&{query}")
    assert resp.status_code == 400
    assert resp.json()["code"] == "InvalidParameter" and needle in resp.json()["message"]


def test_missing_compartment_and_unknown_route(tenant: Tenant) -> None:
    resp = raw_request(tenant, "GET", "/bootVolumeBackups")
    assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter")
    assert "compartmentId" in resp.json()["message"]
    resp = raw_request(tenant, "GET", "/volumesThatDoNotExist")
    assert (resp.status_code, resp.json()["code"]) == (404, "NotFound")


def test_customer_key_backup_restores(
    deployment: Deployment, tenant: Tenant, volume: tuple[str, Path]
) -> None:
    client = tenant.client()
    key_id = (
        deployment.cli("key", "create", "--compartment", tenant.tenancy_id).stdout.strip().splitlines()[-1]
    )
    created = _create(client, volume[0], "kms", type="FULL", kms_key_id=key_id)
    done = wait_state(client, "get_boot_volume_backup", created.data.id, "AVAILABLE").data
    assert done.kms_key_id == key_id
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=done.id),
    )
    restored = wait_hydrated(client, client.create_boot_volume(details).data.id)
    assert restored.kms_key_id == key_id
    assert deployment.volume_sha256(restored.id, 1 << 30) == sha256_file(volume[1], 1 << 30)
    other = deployment.new_tenant("keyless")
    e = _error(
        other.client().create_boot_volume_backup,
        CreateBootVolumeBackupDetails(boot_volume_id=volume[0], kms_key_id=key_id),
    )
    assert (e.status, e.code) == (400, "RelatedResourceNotAuthorizedOrNotFound")
