"""The `oci` CLI's backup policy commands against a live bootvault: `oci bv volume-backup-policy`
create, list (Oracle's), update, delete (409 while assigned) and `volume-backup-policy-assignment`
create, get-volume-backup-policy-asset-assignment, delete. The retention options of
`boot-volume-backup create/update` are used in tests/e2e/test_policy_schedule.py."""

from __future__ import annotations

import json

import pytest

from tests.e2e.test_oci_cli import oci_json, run_oci
from tests.helpers import MIB, Deployment, Tenant, make_image


@pytest.fixture(scope="module")
def volume_id(deployment: Deployment, tenant: Tenant, tmp_path_factory: pytest.TempPathFactory) -> str:
    image = tmp_path_factory.mktemp("cli-policies") / "disk.img"
    make_image(image, 2 * MIB, seed=22)
    return deployment.import_volume(tenant, image, "cli-policy-volume")


def test_cli_policy_and_assignment_commands(deployment: Deployment, tenant: Tenant, volume_id: str) -> None:
    schedules = json.dumps([{"backupType": "FULL", "period": "ONE_WEEK", "retentionSeconds": 604800}])
    created = oci_json(
        deployment,
        tenant,
        "bv",
        "volume-backup-policy",
        "create",
        "--compartment-id",
        tenant.tenancy_id,
        "--display-name",
        "from-cli",
        "--schedules",
        schedules,
    )["data"]
    assert created["schedules"][0]["period"] == "ONE_WEEK"
    oracle = oci_json(deployment, tenant, "bv", "volume-backup-policy", "list", "--all")["data"]
    assert {p["display-name"] for p in oracle} == {"gold", "silver", "bronze"}
    renamed = oci_json(
        deployment,
        tenant,
        "bv",
        "volume-backup-policy",
        "update",
        "--policy-id",
        created["id"],
        "--display-name",
        "cli2",
        "--force",
    )["data"]
    assert renamed["display-name"] == "cli2"
    assigned = oci_json(
        deployment,
        tenant,
        "bv",
        "volume-backup-policy-assignment",
        "create",
        "--asset-id",
        volume_id,
        "--policy-id",
        created["id"],
    )["data"]
    found = oci_json(
        deployment,
        tenant,
        "bv",
        "volume-backup-policy-assignment",
        "get-volume-backup-policy-asset-assignment",
        "--asset-id",
        volume_id,
    )["data"]
    assert [a["id"] for a in found] == [assigned["id"]]
    denied = run_oci(
        deployment, tenant, "bv", "volume-backup-policy", "delete", "--policy-id", created["id"], "--force"
    )
    assert denied.returncode != 0 and "409" in denied.stderr + denied.stdout
    for args in (
        ("volume-backup-policy-assignment", "delete", "--policy-assignment-id", assigned["id"], "--force"),
        ("volume-backup-policy", "delete", "--policy-id", created["id"], "--force"),
    ):
        proc = run_oci(deployment, tenant, "bv", *args)
        assert proc.returncode == 0, proc.stderr
