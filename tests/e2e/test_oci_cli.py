"""The real `oci` CLI (3.95.1) against a live bootvault: create, get, list, restore, delete.

CLI calls take 1-2 s each, so the module shares two backups (made by the CLI in a fixture) and
keeps the number of invocations low (14 in all).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import BIN, MIB, Deployment, Tenant, make_image, sha256_file, wait_hydrated, wait_state

AD = "bootvault:AD-1"
IMAGE_SIZE = 4 * MIB + 12345  # not block aligned: the tail of the last block must read as zeros
MISSING_BACKUP = "ocid1.bootvolumebackup.oc1.local-1.aaaaaaaadoesnotexist"
CLI_ENV = {
    **os.environ,
    "OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING": "True",
    "SUPPRESS_LABEL_WARNING": "True",
}


def run_oci(
    deployment: Deployment, tenant: Tenant, *args: str, endpoint: bool = True
) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN / "oci"), *args, "--config-file", str(tenant.config_path)]
    if endpoint:
        cmd += ["--endpoint", deployment.endpoint]
    return subprocess.run(cmd, env=CLI_ENV, capture_output=True, text=True, timeout=300, check=False)


def oci_json(deployment: Deployment, tenant: Tenant, *args: str, endpoint: bool = True) -> dict[str, Any]:
    proc = run_oci(deployment, tenant, *args, endpoint=endpoint)
    assert proc.returncode == 0, f"oci {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    out = json.loads(proc.stdout)
    assert isinstance(out, dict)
    return out


@functools.lru_cache(maxsize=4)
def padded_sha256(path: Path, total: int) -> str:
    """sha256 of the file's bytes followed by zeros up to `total` bytes, streamed."""
    h = hashlib.sha256()
    done = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(MIB):
            h.update(chunk)
            done += len(chunk)
    zeros = bytes(MIB)
    while done < total:
        n = min(MIB, total - done)
        h.update(zeros[:n])
        done += n
    return h.hexdigest()


def assert_restored_bit_exact(
    deployment: Deployment, tenant: Tenant, volume_id: str, image: Path, size_bytes: int
) -> None:
    wait_hydrated(tenant.client(), volume_id)  # a restore is AVAILABLE at once, whole once hydrated
    assert deployment.volume_size(volume_id) == size_bytes
    with deployment.exported(volume_id) as path:
        assert path.stat().st_size == size_bytes
        assert sha256_file(path, length=IMAGE_SIZE) == sha256_file(image)
        assert sha256_file(path, length=size_bytes) == padded_sha256(image, size_bytes)


class State:
    """Volumes restored along the way (checked again after the delete)."""

    restored: list[str] = []


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli-img") / "disk.img"
    make_image(path, IMAGE_SIZE, seed=11)
    assert path.stat().st_size == IMAGE_SIZE
    return path


@pytest.fixture(scope="module")
def volume(deployment: Deployment, tenant: Tenant, image: Path) -> str:
    return deployment.import_volume(tenant, image, "cli-vol")


@pytest.fixture(scope="module")
def created(deployment: Deployment, tenant: Tenant, volume: str) -> dict[str, dict[str, Any]]:
    """Two backups of `volume` made by `oci bv boot-volume-backup create --wait-for-state`: name -> output."""
    outputs = {}
    for name, kind in (("cli1", "FULL"), ("cli2", "INCREMENTAL")):
        outputs[name] = oci_json(
            deployment,
            tenant,
            "bv",
            "boot-volume-backup",
            "create",
            "--boot-volume-id",
            volume,
            "--display-name",
            name,
            "--type",
            kind,
            "--wait-for-state",
            "AVAILABLE",
            "--wait-interval-seconds",
            "1",
            "--max-wait-seconds",
            "120",
        )
    return outputs


@pytest.fixture(scope="module")
def backups(created: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {name: out["data"]["id"] for name, out in created.items()}


def test_create_backup_and_wait(tenant: Tenant, volume: str, created: dict[str, dict[str, Any]]) -> None:
    for name, kind in (("cli1", "FULL"), ("cli2", "INCREMENTAL")):
        out = created[name]
        data = out["data"]
        assert data["lifecycle-state"] == "AVAILABLE"
        assert data["display-name"] == name
        assert data["type"] == kind
        assert data["boot-volume-id"] == volume
        assert data["compartment-id"] == tenant.tenancy_id
        assert data["source-type"] == "MANUAL"
        assert data["id"].startswith("ocid1.bootvolumebackup.")
        assert data["size-in-gbs"] == 1
        assert out["etag"]
        # The server agrees.
        sdk = tenant.client().get_boot_volume_backup(data["id"]).data
        assert (sdk.lifecycle_state, sdk.display_name) == ("AVAILABLE", name)
    assert created["cli1"]["data"]["id"] != created["cli2"]["data"]["id"]


def test_get_backup(deployment: Deployment, tenant: Tenant, volume: str, backups: dict[str, str]) -> None:
    backup_id = backups["cli1"]
    out = oci_json(
        deployment, tenant, "bv", "boot-volume-backup", "get", "--boot-volume-backup-id", backup_id
    )
    assert out["data"]["id"] == backup_id
    assert out["data"]["display-name"] == "cli1"
    assert out["data"]["lifecycle-state"] == "AVAILABLE"
    assert out["data"]["boot-volume-id"] == volume
    assert out["etag"]
    # Same resource, same etag as the SDK sees.
    assert tenant.client().get_boot_volume_backup(backup_id).headers["etag"] == out["etag"]


def test_list_all_and_paging(
    deployment: Deployment, tenant: Tenant, volume: str, backups: dict[str, str]
) -> None:
    mine = set(backups.values())

    # --all with one result per page: the CLI must follow opc-next-page through every backup.
    everything = oci_json(
        deployment,
        tenant,
        "bv",
        "boot-volume-backup",
        "list",
        "--compartment-id",
        tenant.tenancy_id,
        "--all",
        "--page-size",
        "1",
    )
    assert "opc-next-page" not in everything
    ids = [b["id"] for b in everything["data"]]
    assert len(ids) == len(set(ids))
    assert mine <= set(ids)
    sdk_ids = {b.id for b in tenant.client().list_boot_volume_backups(tenant.tenancy_id).data}
    assert set(ids) == sdk_ids
    assert len(ids) >= 2

    # One page at a time, filtered to this module's volume (other tests share the tenancy).
    common = ("bv", "boot-volume-backup", "list", "--compartment-id", tenant.tenancy_id)
    first = oci_json(deployment, tenant, *common, "--boot-volume-id", volume, "--limit", "1")
    assert len(first["data"]) == 1
    assert first.get("opc-next-page")
    # Without sortBy/sortOrder the order is oldest first (as OCI answers): cli1 comes first.
    assert first["data"][0]["id"] == backups["cli1"]

    second = oci_json(
        deployment,
        tenant,
        *common,
        "--boot-volume-id",
        volume,
        "--limit",
        "1",
        "--page",
        first["opc-next-page"],
    )
    assert [b["id"] for b in second["data"]] == [backups["cli2"]]
    assert "opc-next-page" not in second


def test_restore_with_boot_volume_backup_id(
    deployment: Deployment, tenant: Tenant, image: Path, backups: dict[str, str]
) -> None:
    backup_id = backups["cli1"]
    out = oci_json(
        deployment,
        tenant,
        "bv",
        "boot-volume",
        "create",
        "--compartment-id",
        tenant.tenancy_id,
        "--availability-domain",
        AD,
        "--boot-volume-backup-id",  # CLI 3.95.1 spelling (no --source-boot-volume-backup-id)
        backup_id,
        "--display-name",
        "cli-restored-1",
        "--wait-for-state",
        "AVAILABLE",
        "--wait-interval-seconds",
        "1",
        "--max-wait-seconds",
        "180",
    )
    data = out["data"]
    assert data["lifecycle-state"] == "AVAILABLE"
    assert data["source-details"] == {"type": "bootVolumeBackup", "id": backup_id}
    assert data["availability-domain"] == AD
    assert data["compartment-id"] == tenant.tenancy_id
    assert data["display-name"] == "cli-restored-1"
    assert data["size-in-gbs"] == 1
    assert out["etag"]
    State.restored.append(data["id"])
    assert_restored_bit_exact(deployment, tenant, data["id"], image, data["size-in-gbs"] << 30)


def test_restore_with_source_details_body(
    deployment: Deployment, tenant: Tenant, image: Path, backups: dict[str, str]
) -> None:
    """`oci bv boot-volume create` excludes --source-details, so send that body via raw-request."""
    backup_id = backups["cli2"]
    body = {
        "compartmentId": tenant.tenancy_id,
        "availabilityDomain": AD,
        "displayName": "cli-restored-2",
        "sourceDetails": {"type": "bootVolumeBackup", "id": backup_id},
    }
    created = oci_json(
        deployment,
        tenant,
        "raw-request",
        "--http-method",
        "POST",
        "--target-uri",
        f"{deployment.endpoint}/20160918/bootVolumes",
        "--request-body",
        json.dumps(body),
        endpoint=False,  # raw-request refuses --endpoint
    )
    assert created["status"] == "200 OK", created
    assert created["data"]["sourceDetails"] == {"type": "bootVolumeBackup", "id": backup_id}
    assert created["data"]["lifecycleState"] in ("RESTORING", "PROVISIONING", "AVAILABLE")
    volume_id = created["data"]["id"]

    # `oci bv boot-volume get` has no --wait-for-state: wait with the SDK, then read with the CLI.
    wait_state(tenant.client(), "get_boot_volume", volume_id, "AVAILABLE", timeout=180)
    out = oci_json(deployment, tenant, "bv", "boot-volume", "get", "--boot-volume-id", volume_id)
    data = out["data"]
    assert data["lifecycle-state"] == "AVAILABLE"
    assert data["display-name"] == "cli-restored-2"
    assert data["source-details"] == {"type": "bootVolumeBackup", "id": backup_id}
    State.restored.append(volume_id)
    assert_restored_bit_exact(deployment, tenant, volume_id, image, data["size-in-gbs"] << 30)


def test_delete_backup_and_wait(deployment: Deployment, tenant: Tenant, backups: dict[str, str]) -> None:
    backup_id = backups["cli1"]
    proc = run_oci(
        deployment,
        tenant,
        "bv",
        "boot-volume-backup",
        "delete",
        "--boot-volume-backup-id",
        backup_id,
        "--force",
        "--wait-for-state",
        "TERMINATED",
        "--wait-interval-seconds",
        "1",
        "--max-wait-seconds",
        "120",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    if proc.stdout.strip():  # the CLI prints the final GET when the resource stays visible
        assert json.loads(proc.stdout)["data"]["lifecycle-state"] == "TERMINATED"

    after = oci_json(
        deployment, tenant, "bv", "boot-volume-backup", "get", "--boot-volume-backup-id", backup_id
    )
    assert after["data"]["lifecycle-state"] == "TERMINATED"
    # The other backup and the volumes restored from cli1 are unaffected.
    client = tenant.client()
    assert client.get_boot_volume_backup(backups["cli2"]).data.lifecycle_state == "AVAILABLE"
    for volume_id in State.restored:
        assert client.get_boot_volume(volume_id).data.lifecycle_state == "AVAILABLE"


def test_get_missing_backup_fails(deployment: Deployment, tenant: Tenant) -> None:
    proc = run_oci(
        deployment, tenant, "bv", "boot-volume-backup", "get", "--boot-volume-backup-id", MISSING_BACKUP
    )
    assert proc.returncode != 0
    assert "ServiceError" in proc.stderr
    assert "NotAuthorizedOrNotFound" in proc.stderr
    payload = json.loads(proc.stderr[proc.stderr.index("{") : proc.stderr.rindex("}") + 1])
    assert payload["status"] == 404
    assert payload["code"] == "NotAuthorizedOrNotFound"
    assert payload["opc-request-id"]
