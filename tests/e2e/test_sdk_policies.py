"""Backup policies and assignments with the real SDK and raw signed requests: Oracle's policies,
CRUD of user-defined ones, assignments (upsert per volume, by asset, backupPolicyId), the field
lists of the wire models, and bad input that answers 400 naming the field and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    CreateVolumeBackupPolicyAssignmentDetails,
    CreateVolumeBackupPolicyDetails,
    RetentionDuration,
    UpdateBootVolumeBackupDetails,
    UpdateVolumeBackupPolicyDetails,
    VolumeBackupSchedule,
)

from tests.helpers import MIB, Deployment, Tenant, make_image, raw_request, wait_state

GOLD = "ocid1.volumebackuppolicy.oc1..aaaaaaaagcremuefit7dpcnjpdrtphjk4bwm3emm55t6cghctt2m6iyyjdva"
EVERY_PERIOD = [
    VolumeBackupSchedule(
        backup_type="INCREMENTAL", period="ONE_HOUR", offset_seconds=900, retention_seconds=86400
    ),
    VolumeBackupSchedule(
        backup_type="FULL",
        period="ONE_DAY",
        offset_type="STRUCTURED",
        hour_of_day=3,
        retention_seconds=7 * 86400,
        time_zone="REGIONAL_DATA_CENTER_TIME",
    ),
    VolumeBackupSchedule(
        backup_type="INCREMENTAL",
        period="ONE_WEEK",
        offset_type="STRUCTURED",
        day_of_week="SATURDAY",
        hour_of_day=4,
        retention_seconds=30 * 86400,
    ),
    VolumeBackupSchedule(
        backup_type="INCREMENTAL",
        period="ONE_MONTH",
        offset_type="NUMERIC_SECONDS",
        offset_seconds=3 * 86400,
        retention_seconds=365 * 86400,
        time_zone="UTC",
    ),
    VolumeBackupSchedule(
        backup_type="FULL",
        period="ONE_YEAR",
        offset_type="STRUCTURED",
        month="MARCH",
        day_of_month=31,
        hour_of_day=5,
        retention_seconds=5 * 365 * 86400,
        retention_period=RetentionDuration(retention_time_unit="YEARS", retention_time_amount=1),
        is_retention_lock_enabled=True,
    ),
]


def _fields(name: str) -> list[str]:
    return list(getattr(oci.core.models, name)().attribute_map.values())


@pytest.fixture(scope="module")
def volume_id(deployment: Deployment, tenant: Tenant, tmp_path_factory: pytest.TempPathFactory) -> str:
    image = tmp_path_factory.mktemp("policies") / "disk.img"
    make_image(image, 2 * MIB, seed=21)
    return deployment.import_volume(tenant, image, "policy-volume")


def _policy(
    client: oci.core.BlockstorageClient, tenant: Tenant, name: str, schedules: list[Any] | None = None
):  # type: ignore[no-untyped-def]
    details = CreateVolumeBackupPolicyDetails(
        compartment_id=tenant.tenancy_id, display_name=name, schedules=schedules or []
    )
    return client.create_volume_backup_policy(details).data


def test_oracle_policies_are_listed_without_a_compartment(tenant: Tenant) -> None:
    client = tenant.client()
    listed = {p.display_name: p for p in client.list_volume_backup_policies().data}
    assert set(listed) == {"gold", "silver", "bronze"}
    gold = listed["gold"]
    assert gold.id == GOLD and gold.compartment_id is None and gold.destination_region is None
    assert [(s.period, s.backup_type) for s in gold.schedules] == [
        ("ONE_DAY", "INCREMENTAL"),
        ("ONE_WEEK", "INCREMENTAL"),
        ("ONE_MONTH", "INCREMENTAL"),
        ("ONE_YEAR", "INCREMENTAL"),
    ]
    assert [s.retention_seconds for s in gold.schedules] == [604800, 2419200, 31536000, 157680000]
    assert gold.schedules[1].day_of_week == "SUNDAY" and gold.schedules[3].month == "JANUARY"
    assert client.get_volume_backup_policy(GOLD).data.display_name == "gold"
    paged = oci.pagination.list_call_get_all_results(client.list_volume_backup_policies, limit=1).data
    assert sorted(p.display_name for p in paged) == ["bronze", "gold", "silver"]
    raw = raw_request(tenant, "GET", "/volumeBackupPolicies").json()
    assert list(raw[0]) == _fields("VolumeBackupPolicy")
    assert list(raw[0]["schedules"][0]) == _fields("VolumeBackupSchedule")
    for method, body in (("PUT", b'{"displayName": "mine"}'), ("DELETE", None)):
        resp = raw_request(tenant, method, f"/volumeBackupPolicies/{GOLD}", body)
        assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter")
        assert "Oracle-defined" in resp.json()["message"]


def test_user_policy_crud_with_every_period(tenant: Tenant) -> None:
    client = tenant.client()
    created = client.create_volume_backup_policy(
        CreateVolumeBackupPolicyDetails(
            compartment_id=tenant.tenancy_id,
            display_name="every-period",
            schedules=EVERY_PERIOD,
            freeform_tags={"team": "ops"},
        ),
        opc_retry_token="policy-every-period",
    )
    policy = created.data
    assert policy.id.startswith("ocid1.volumebackuppolicy.oc1.local-1.")
    assert policy.compartment_id == tenant.tenancy_id and policy.freeform_tags == {"team": "ops"}
    assert [oci.util.to_dict(s) for s in policy.schedules] == [oci.util.to_dict(s) for s in EVERY_PERIOD]
    again = client.create_volume_backup_policy(
        CreateVolumeBackupPolicyDetails(
            compartment_id=tenant.tenancy_id,
            display_name="every-period",
            schedules=EVERY_PERIOD,
            freeform_tags={"team": "ops"},
        ),
        opc_retry_token="policy-every-period",
    )
    assert again.data.id == policy.id  # the retry token made it once
    got = client.get_volume_backup_policy(policy.id)
    assert got.headers["etag"] == created.headers["etag"]
    mine = client.list_volume_backup_policies(compartment_id=tenant.tenancy_id).data
    assert policy.id in [p.id for p in mine] and GOLD not in [p.id for p in mine]
    updated = client.update_volume_backup_policy(
        policy.id,
        UpdateVolumeBackupPolicyDetails(display_name="renamed", schedules=EVERY_PERIOD[:1]),
        if_match=got.headers["etag"],
    ).data
    assert updated.display_name == "renamed" and len(updated.schedules) == 1
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.update_volume_backup_policy(
            policy.id, UpdateVolumeBackupPolicyDetails(display_name="late"), if_match=got.headers["etag"]
        )
    assert err.value.status == 412
    client.delete_volume_backup_policy(policy.id)
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_volume_backup_policy(policy.id)
    assert (err.value.status, err.value.code) == (404, "NotAuthorizedOrNotFound")


def _schedule(**overrides: Any) -> dict[str, Any]:
    return {"backupType": "INCREMENTAL", "period": "ONE_DAY", "retentionSeconds": 86400, **overrides}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"schedules": [_schedule(offsetSeconds=86400)]}, "schedules[0].offsetSeconds"),
        ({"schedules": [_schedule(period="ONE_HOUR", offsetSeconds=-5)]}, "schedules[0].offsetSeconds"),
        ({"schedules": [_schedule(period="TWO_DAYS")]}, "schedules[0].period"),
        ({"schedules": [_schedule(), _schedule(timeZone="Europe/Paris")]}, "schedules[1].timeZone"),
        ({"schedules": [_schedule(backupType="DIFFERENTIAL")]}, "schedules[0].backupType"),
        ({"schedules": [_schedule(retentionSeconds=60)]}, "schedules[0].retentionSeconds"),
        ({"schedules": [_schedule(hourOfDay=24, offsetType="STRUCTURED")]}, "schedules[0].hourOfDay"),
        ({"schedules": [_schedule(dayOfWeek="FUNDAY")]}, "schedules[0].dayOfWeek"),
        ({"schedules": [_schedule(), _schedule()]}, "schedules[1].period"),
        (
            {
                "schedules": [
                    _schedule(retentionPeriod={"retentionTimeUnit": "DAYS", "retentionTimeAmount": 1.5})
                ]
            },
            "schedules[0].retentionPeriod.retentionTimeAmount",
        ),
        (
            {
                "schedules": [
                    _schedule(retentionPeriod={"retentionTimeUnit": "HOURS", "retentionTimeAmount": 1})
                ]
            },
            "schedules[0].retentionPeriod.retentionTimeUnit",
        ),
        ({"schedules": [_schedule(isRetentionLockEnabled=True)]}, "schedules[0].retentionPeriod"),
        ({"destinationRegion": "us-ashburn-1"}, "destinationRegion"),
        ({"schedules": [_schedule(someField=1)]}, "schedules[0].someField"),
    ],
)
def test_bad_policies_are_400_naming_the_field(tenant: Tenant, body: dict[str, Any], field: str) -> None:
    def count() -> int:
        return len(
            raw_request(tenant, "GET", f"/volumeBackupPolicies?compartmentId={tenant.tenancy_id}").json()
        )

    before = count()
    full = {"compartmentId": tenant.tenancy_id, "displayName": "bad", **body}
    resp = raw_request(tenant, "POST", "/volumeBackupPolicies", json.dumps(full).encode())
    assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter"), resp.text
    assert field in resp.json()["message"]
    assert count() == before  # nothing was stored


def test_assignments_replace_per_volume_and_block_policy_deletion(
    deployment: Deployment, tenant: Tenant, volume_id: str
) -> None:
    client = tenant.client()
    policy = _policy(client, tenant, "assignable", EVERY_PERIOD[1:3])
    first = client.create_volume_backup_policy_assignment(
        CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume_id, policy_id=GOLD)
    ).data
    assert (first.asset_id, first.policy_id, first.xrc_kms_key_id) == (volume_id, GOLD, None)
    assert first.id.startswith("ocid1.volumebackuppolicyassignment.")
    second = client.create_volume_backup_policy_assignment(
        CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume_id, policy_id=policy.id)
    ).data
    assert second.id != first.id  # the old one was silently unassigned
    by_asset = client.get_volume_backup_policy_asset_assignment(volume_id).data
    assert [(a.id, a.policy_id) for a in by_asset] == [(second.id, policy.id)]
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_volume_backup_policy_assignment(first.id)
    assert err.value.status == 404
    raw = raw_request(tenant, "GET", f"/volumeBackupPolicyAssignments/{second.id}").json()
    assert list(raw) == _fields("VolumeBackupPolicyAssignment")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.delete_volume_backup_policy(policy.id)
    assert (err.value.status, err.value.code) == (409, "Conflict")
    assert "assigned" in err.value.message
    client.delete_volume_backup_policy_assignment(second.id)
    assert client.get_volume_backup_policy_asset_assignment(volume_id).data == []
    client.delete_volume_backup_policy(policy.id)  # unassigned now
    missing = raw_request(tenant, "GET", "/volumeBackupPolicyAssignments")
    assert (missing.status_code, missing.json()["code"]) == (400, "InvalidParameter")
    assert "assetId" in missing.json()["message"]


def test_other_tenancies_volumes_and_policies_are_not_found(
    deployment: Deployment, tenant: Tenant, volume_id: str
) -> None:
    other = deployment.new_tenant("policy-other")
    theirs = _policy(other.client(), other, "theirs", EVERY_PERIOD[1:2])
    client = tenant.client()
    for details in (
        CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume_id, policy_id=GOLD),
        CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume_id, policy_id=theirs.id),
    ):
        with pytest.raises(oci.exceptions.ServiceError) as err:
            other.client().create_volume_backup_policy_assignment(details)  # not their volume
        assert (err.value.status, err.value.code) == (404, "NotAuthorizedOrNotFound")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.create_volume_backup_policy_assignment(
            CreateVolumeBackupPolicyAssignmentDetails(asset_id=volume_id, policy_id=theirs.id)
        )
    assert (err.value.status, err.value.code) == (404, "NotAuthorizedOrNotFound")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_volume_backup_policy(theirs.id)
    assert err.value.status == 404
    with pytest.raises(oci.exceptions.ServiceError) as err:
        other.client().get_volume_backup_policy_asset_assignment(volume_id)
    assert err.value.status == 404


def test_backup_policy_id_on_create_boot_volume(tenant: Tenant, volume_id: str) -> None:
    client = tenant.client()
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        source_details=BootVolumeSourceFromBootVolumeDetails(id=volume_id),
        backup_policy_id=GOLD,
    )
    clone = client.create_boot_volume(details).data
    (assignment,) = client.get_volume_backup_policy_asset_assignment(clone.id).data
    assert assignment.policy_id == GOLD
    wait_state(client, "get_boot_volume", clone.id, "AVAILABLE")
    client.delete_boot_volume(clone.id)  # a deleted volume loses its assignment
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.get_volume_backup_policy_assignment(assignment.id)
    assert err.value.status == 404
    details.backup_policy_id = "ocid1.volumebackuppolicy.oc1.local-1.aaaaaaaanosuchpolicy"
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.create_boot_volume(details)
    assert (err.value.status, err.value.code) == (400, "RelatedResourceNotAuthorizedOrNotFound")


def test_retention_fields_round_trip_and_bad_ones_are_400(tenant: Tenant, volume_id: str) -> None:
    client = tenant.client()
    made = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(
            boot_volume_id=volume_id,
            retention_period=RetentionDuration(retention_time_unit="DAYS", retention_time_amount=3),
            is_prevent_deletion_enabled=True,
        )
    ).data
    assert made.retention_period.retention_time_amount == 3 and made.is_prevent_deletion_enabled is True
    assert made.is_retention_lock_enabled is None and made.is_indefinite_retention_enabled is None
    assert (made.time_retention_expires_at - made.time_request_received).total_seconds() == pytest.approx(
        3 * 86400, abs=1
    )
    wait_state(client, "get_boot_volume_backup", made.id, "AVAILABLE")
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.delete_boot_volume_backup(made.id)
    assert (err.value.status, err.value.code) == (
        409,
        "Conflict",
    ) and "isPreventDeletionEnabled" in err.value.message
    client.update_boot_volume_backup(
        made.id, UpdateBootVolumeBackupDetails(is_prevent_deletion_enabled=False)
    )
    client.delete_boot_volume_backup(made.id)  # governance: lifted, then deleted
    for body, field in (
        (
            {"retentionPeriod": {"retentionTimeUnit": "DAYS", "retentionTimeAmount": 0.5}},
            "retentionTimeAmount",
        ),
        ({"retentionPeriod": {"retentionTimeUnit": "WEEKS", "retentionTimeAmount": 2}}, "retentionTimeUnit"),
        (
            {"retentionPeriod": {"retentionTimeUnit": "YEARS", "retentionTimeAmount": 101}},
            "retentionTimeAmount",
        ),
        ({"isRetentionLockEnabled": True}, "retentionPeriod"),
        ({"isIndefiniteRetentionEnabled": "yes"}, "isIndefiniteRetentionEnabled"),
    ):
        before = len(client.list_boot_volume_backups(tenant.tenancy_id, boot_volume_id=volume_id).data)
        resp = raw_request(
            tenant, "POST", "/bootVolumeBackups", json.dumps({"bootVolumeId": volume_id, **body}).encode()
        )
        assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter"), resp.text
        assert field in resp.json()["message"]
        assert (
            len(client.list_boot_volume_backups(tenant.tenancy_id, boot_volume_id=volume_id).data) == before
        )
