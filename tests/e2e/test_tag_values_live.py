"""Every tag value a live server sends is a string (tests/unit/test_tag_values.py renders every
state; this reads what the API really answers): backups AVAILABLE and FAULTY, volumes attached,
hydrating, hydrated and FAULTY, user policies and Oracle's, and assignments, by Get and List,
as raw JSON (the SDK would hide a number behind its models)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    CreateVolumeBackupPolicyAssignmentDetails,
    CreateVolumeBackupPolicyDetails,
    VolumeBackupSchedule,
)

from tests.helpers import MIB, Deployment, Tenant, make_image, raw_request, wait_state
from tests.nbdwriter import stop_daemons
from tests.unit.test_tag_values import non_string_tag_values

AD = "bootvault:AD-1"
TAGS = {"freeform_tags": {"team": "storage"}, "defined_tags": {"Ops": {"CostCenter": "42"}}}


def _get(tenant: Tenant, path: str) -> Any:
    resp = raw_request(tenant, "GET", path)
    assert resp.status_code == 200, (path, resp.text)
    return resp.json()


def _backup(tenant: Tenant, volume_id: str) -> str:
    client = tenant.client()
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type="FULL", **TAGS)
    created = client.create_boot_volume_backup(details).data
    return wait_state(client, "get_boot_volume_backup", created.id, "AVAILABLE").data.id


def _restore(tenant: Tenant, backup_id: str) -> str:
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
        **TAGS,
    )
    return tenant.client().create_boot_volume(details).data.id


def _damage_new_packs(dep: Deployment, before: set[Path]) -> None:
    """Flip bytes in every pack written since `before`: the blocks of one backup only."""
    for pack in (dep.data_dir / "store" / "packs").rglob("*"):
        if pack.is_file() and pack not in before:
            pack.chmod(0o600)
            data = bytearray(pack.read_bytes())
            for off in range(64, len(data), 4096):
                data[off] ^= 0xFF
            pack.write_bytes(bytes(data))


def test_every_tag_value_served_is_a_string(tmp_path: Path) -> None:
    dep = Deployment(tmp_path / "dep")
    dep.env.update({"BOOTVAULT_HYDRATE_SPEED_BPS": str(256 << 10), "BOOTVAULT_HYDRATE_RETRIES": "0"})
    dep.start()
    try:
        tenant = dep.new_tenant("tags")
        client = tenant.client()
        make_image(tmp_path / "a.img", 8 * MIB, seed=81)
        make_image(tmp_path / "b.img", 8 * MIB, seed=82)
        attached = dep.import_volume(tenant, tmp_path / "a.img", "attached")
        dep.attach(attached)
        good = _backup(tenant, attached)
        policy = client.create_volume_backup_policy(
            CreateVolumeBackupPolicyDetails(
                compartment_id=tenant.tenancy_id,
                display_name="tags",
                schedules=[
                    VolumeBackupSchedule(backup_type="FULL", period="ONE_DAY", retention_seconds=86400)
                ],
                **TAGS,
            )
        ).data
        assignment = client.create_volume_backup_policy_assignment(
            CreateVolumeBackupPolicyAssignmentDetails(asset_id=attached, policy_id=policy.id)
        ).data

        seen: list[tuple[str, dict[str, Any]]] = []
        hydrating = _restore(tenant, good)
        deadline = time.monotonic() + 120
        while True:  # every state the restored volume passes through, until it is hydrated
            vol = _get(tenant, f"/bootVolumes/{hydrating}")
            seen.append((f"volume {vol['lifecycleState']} hydrated={vol['isHydrated']}", vol))
            if vol["isHydrated"]:
                break
            assert time.monotonic() < deadline, vol["systemTags"]
            time.sleep(0.2)

        packs = set((dep.data_dir / "store" / "packs").rglob("*"))
        doomed = _backup(tenant, dep.import_volume(tenant, tmp_path / "b.img", "doomed"))
        _damage_new_packs(dep, packs)
        faulty_volume = _restore(tenant, doomed)  # its hydration meets the damage and gives up
        wait_state(client, "get_boot_volume", faulty_volume, "FAULTY")
        assert dep.cli("verify", "--backup", doomed, check=False).returncode == 2  # the backup: FAULTY

        compartment = f"compartmentId={tenant.tenancy_id}"
        for path in (
            f"/bootVolumes?{compartment}",
            f"/bootVolumeBackups?{compartment}",
            f"/volumeBackupPolicies?{compartment}",
            "/volumeBackupPolicies",
            f"/volumeBackupPolicyAssignments?assetId={attached}",
        ):
            seen += [(f"{path}: {item.get('displayName', item['id'])}", item) for item in _get(tenant, path)]
        for path in (
            f"/bootVolumes/{attached}",
            f"/bootVolumes/{faulty_volume}",
            f"/bootVolumeBackups/{good}",
            f"/bootVolumeBackups/{doomed}",
            f"/volumeBackupPolicies/{policy.id}",
            f"/volumeBackupPolicyAssignments/{assignment.id}",
        ):
            seen.append((path, _get(tenant, path)))

        bad = [f"{name}: {non_string_tag_values(item)}" for name, item in seen if non_string_tag_values(item)]
        assert not bad, "\n".join(bad)
        system = {name: item.get("systemTags", {}).get("bootvault", {}) for name, item in seen}
        # the walk met the tags that carry numbers and reasons
        assert any("hydrationProgress" in tags for tags in system.values()), system
        assert system[f"/bootVolumes/{attached}"]["attachment"].startswith("nbd+unix://")
        assert "uniqueSizeBytes" in system[f"/bootVolumeBackups/{good}"]
        assert "lifecycleDetails" in system[f"/bootVolumeBackups/{doomed}"]
        assert "lifecycleDetails" in system[f"/bootVolumes/{faulty_volume}"]
        states = {item.get("lifecycleState") for _, item in seen}
        assert {"AVAILABLE", "FAULTY"} <= states
        assert any(item["freeformTags"] == {"team": "storage"} for _, item in seen)
        dep.detach(attached)
    finally:
        dep.stop()
        stop_daemons(dep.run_dir)
