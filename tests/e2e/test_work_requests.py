"""Work requests of the calls whose work a job does (CreateBootVolumeBackup, CreateBootVolume,
DeleteBootVolume), read with the SDK's WorkRequestClient; and its errors for bad ids."""

from __future__ import annotations

from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.helpers import MIB, Deployment, Tenant, make_image, wait_hydrated, wait_state

AD = "bootvault:AD-1"


def _only_work_request(
    tenant: Tenant, resource_id: str, operation: str
) -> oci.work_requests.models.WorkRequest:
    client = oci.work_requests.WorkRequestClient(tenant.config, service_endpoint=tenant.endpoint)
    listed = [w for w in client.list_work_requests(tenant.tenancy_id, resource_id=resource_id).data
              if w.operation_type == operation]  # fmt: skip
    assert len(listed) == 1, listed
    done = oci.wait_until(
        client,
        client.get_work_request(listed[0].id),
        evaluate_response=lambda r: r.data.time_finished is not None,
        max_wait_seconds=120,
        max_interval_seconds=1,
    ).data
    assert done.status == "SUCCEEDED" and done.percent_complete == 100.0
    assert done.time_accepted <= done.time_started <= done.time_finished
    assert client.list_work_request_errors(done.id).data == []
    assert client.list_work_request_logs(done.id).data  # at least the line saying it ended
    return done


def test_backup_restore_and_delete_have_work_requests(
    deployment: Deployment, tenant: Tenant, tmp_path: Path
) -> None:
    image = tmp_path / "wr.img"
    make_image(image, 2 * MIB, seed=4)
    volume_id = deployment.import_volume(tenant, image, "wr")
    client = tenant.client()
    backup = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id)).data
    wr = _only_work_request(tenant, backup.id, "CreateBootVolumeBackup")
    assert [(r.entity_type, r.action_type, r.identifier) for r in wr.resources] == [
        ("bootVolumeBackup", "CREATED", backup.id)
    ]
    wait_state(client, "get_boot_volume_backup", backup.id, "AVAILABLE")
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
    )
    restored = client.create_boot_volume(details).data
    wr = _only_work_request(tenant, restored.id, "CreateBootVolume")
    assert wr.resources[0].action_type == "CREATED" and wr.resources[0].entity_type == "bootVolume"
    wait_hydrated(client, restored.id)
    client.delete_boot_volume(restored.id)
    wr = _only_work_request(tenant, restored.id, "DeleteBootVolume")
    assert wr.resources[0].action_type == "DELETED"


def test_work_request_errors(tenant: Tenant) -> None:
    client = oci.work_requests.WorkRequestClient(tenant.config, service_endpoint=tenant.endpoint)
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_work_request("ocid1.coreservicesworkrequest.oc1.local-1.aaaaaaaadoesnotexist")
    assert (err.value.status, err.value.code) == (404, "NotAuthorizedOrNotFound")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_work_request("not-an-ocid")
    assert (err.value.status, err.value.code) == (400, "InvalidParameter")
    assert "workRequestId" in err.value.message
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.list_work_requests("ocid1.compartment.oc1..aaaaaaaadoesnotexist")
    assert (err.value.status, err.value.code) == (404, "NotAuthorizedOrNotFound")
