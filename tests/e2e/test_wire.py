"""Wire exactness: what the server sends, field for field, as real OCI sends it (recorded traffic in
../shared/reference/oci-wire-recorded.md). Raw signed HTTP where the SDK would hide a difference."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

import oci
import pytest
from oci.core.models import CreateBootVolumeBackupDetails

from tests.helpers import MIB, Deployment, Tenant, make_image, raw_request, wait_state

OCID_PATHS = [
    ("GET", "/bootVolumeBackups/{}"),
    ("PUT", "/bootVolumeBackups/{}"),
    ("DELETE", "/bootVolumeBackups/{}"),
    ("POST", "/bootVolumeBackups/{}/actions/changeCompartment"),
    ("GET", "/bootVolumes/{}"),
    ("PUT", "/bootVolumes/{}"),
    ("DELETE", "/bootVolumes/{}"),
    ("POST", "/bootVolumes/{}/actions/changeCompartment"),
    ("GET", "/volumeBackupPolicies/{}"),
    ("PUT", "/volumeBackupPolicies/{}"),
    ("DELETE", "/volumeBackupPolicies/{}"),
    ("GET", "/volumeBackupPolicyAssignments/{}"),
    ("DELETE", "/volumeBackupPolicyAssignments/{}"),
]
KINDS = {
    "/bootVolumeBackups/": "bootvolumebackup",
    "/bootVolumes/": "bootvolume",
    "/volumeBackupPolicies/": "volumebackuppolicy",
    "/volumeBackupPolicyAssignments/": "volumebackuppolicyassignment",
}


@pytest.fixture(scope="module")
def volume_id(deployment: Deployment, tenant: Tenant, tmp_path_factory: pytest.TempPathFactory) -> str:
    image = tmp_path_factory.mktemp("wire") / "disk.img"
    make_image(image, 4 * MIB, seed=9)
    return deployment.import_volume(tenant, image, "wire-volume")


def _backup(tenant: Tenant, volume_id: str, name: str) -> str:
    body = json.dumps({"bootVolumeId": volume_id, "displayName": name, "type": "FULL"}).encode()
    resp = raw_request(tenant, "POST", "/bootVolumeBackups", body)
    assert resp.status_code == 200, resp.text
    return resp.json()["id"]


def _model_fields(name: str) -> list[str]:
    return list(getattr(oci.core.models, name)().attribute_map.values())


def test_every_field_present_with_nulls(tenant: Tenant, volume_id: str) -> None:
    body = json.dumps({"bootVolumeId": volume_id, "type": "FULL"}).encode()
    created = raw_request(tenant, "POST", "/bootVolumeBackups", body).json()
    assert list(created)[: len(_model_fields("BootVolumeBackup"))] == _model_fields("BootVolumeBackup")
    assert created["timeCreated"] is None  # no image yet
    assert created["expirationTime"] is None and created["kmsKeyId"] is None
    assert created["sourceBootVolumeBackupId"] is None and created["volumeGroupBackupId"] is None
    assert created["uniqueSizeInGBs"] == 0 and created["backupProgress"] == 0
    assert created["freeformTags"] == {} and created["definedTags"] == {}
    assert created["displayName"] == created["id"].rsplit(".", 1)[-1]  # OCI's default name
    volume = raw_request(tenant, "GET", f"/bootVolumes/{volume_id}").json()
    assert list(volume) == _model_fields("BootVolume")
    assert volume["volumeGroupId"] is None and volume["clusterPlacementGroupId"] is None
    listed = raw_request(tenant, "GET", f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}").json()
    assert all(set(_model_fields("BootVolumeBackup")) <= set(item) for item in listed)


def test_time_created_is_the_image_instant(tenant: Tenant, volume_id: str) -> None:
    client = tenant.client()
    backup_id = _backup(tenant, volume_id, "instant")
    done = wait_state(client, "get_boot_volume_backup", backup_id, "AVAILABLE").data
    assert done.time_created is not None and done.time_request_received <= done.time_created
    asked = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")  # the wire's form
    raw = raw_request(tenant, "GET", f"/bootVolumeBackups/{backup_id}").json()
    assert raw["backupProgress"] == 100 and "percentComplete" not in raw
    assert raw["timeCreated"] < asked  # taken before we asked, not made up at each answer
    assert (
        raw_request(tenant, "GET", f"/bootVolumeBackups/{backup_id}").json()["timeCreated"]
        == raw["timeCreated"]
    )


def _pages(tenant: Tenant, first_query: str) -> list[str]:
    """Follow opc-next-page sending `page` (and the compartment) alone, as the recorded CLI did."""
    seen: list[str] = []
    resp = raw_request(tenant, "GET", f"/bootVolumeBackups?{first_query}")
    while True:
        assert resp.status_code == 200, resp.text
        seen += [item["id"] for item in resp.json()]
        token = resp.headers.get("opc-next-page")
        if not token:
            return seen
        resp = raw_request(tenant, "GET", f"/bootVolumeBackups?limit=2&page={quote(token)}")


@pytest.mark.parametrize("order", ["ASC", "DESC"])
def test_page_alone_keeps_the_query(tenant: Tenant, volume_id: str, order: str) -> None:
    for n in range(5):
        _backup(tenant, volume_id, f"page-{order}-{n}")
    compartment = tenant.tenancy_id
    everything = _pages(
        tenant, f"compartmentId={compartment}&sortBy=TIMECREATED&sortOrder={order}&limit=1000"
    )
    adding = threading.Event()

    def add_more() -> None:  # items keep arriving while the client pages
        for n in range(4):
            _backup(tenant, volume_id, f"late-{order}-{n}")
        adding.set()

    writer = threading.Thread(target=add_more)
    writer.start()
    paged = _pages(tenant, f"compartmentId={compartment}&sortBy=TIMECREATED&sortOrder={order}&limit=2")
    writer.join()
    assert len(paged) == len(set(paged)), "an item came twice"
    assert set(everything) <= set(paged), "an item present from the start was skipped"
    assert (
        paged[: len(everything)] == everything if order == "ASC" else paged[-len(everything) :] == everything
    )


def test_default_order_is_ascending_time_created(tenant: Tenant, volume_id: str) -> None:
    items = raw_request(tenant, "GET", f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}").json()
    received = [item["timeRequestReceived"] for item in items]
    assert received == sorted(received)


def test_forged_and_cross_query_tokens(tenant: Tenant, volume_id: str) -> None:
    for n in range(3):
        _backup(tenant, volume_id, f"token-{n}")
    base = f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}&limit=1"
    token = raw_request(tenant, "GET", base + "&sortOrder=ASC").headers["opc-next-page"]
    assert raw_request(tenant, "GET", f"{base}&sortOrder=ASC&page={quote(token)}").status_code == 200
    cross = raw_request(tenant, "GET", f"{base}&sortOrder=DESC&page={quote(token)}")
    assert (cross.status_code, cross.json()["code"]) == (400, "InvalidParameter")
    other = raw_request(tenant, "GET", f"/bootVolumes?compartmentId={tenant.tenancy_id}&page={quote(token)}")
    assert (other.status_code, other.json()["code"]) == (400, "InvalidParameter")
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    for forged in (flipped, "eyJ2IjoxfQ", "not a token", "x" * 300, '["2026-01-01", "ocid1"]'):
        resp = raw_request(tenant, "GET", f"{base}&page={quote(forged)}")
        assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter"), forged


def test_token_of_another_tenancy_is_refused(deployment: Deployment, tenant: Tenant, volume_id: str) -> None:
    _backup(tenant, volume_id, "mine-1")
    _backup(tenant, volume_id, "mine-2")
    token = raw_request(
        tenant, "GET", f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}&limit=1"
    ).headers["opc-next-page"]
    other = deployment.new_tenant("wire-other")
    resp = raw_request(
        other, "GET", f"/bootVolumeBackups?compartmentId={other.tenancy_id}&page={quote(token)}"
    )
    assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter")


@pytest.mark.parametrize(("method", "path"), OCID_PATHS)
@pytest.mark.parametrize("bad", ["not-an-ocid", "ocid1.instance.oc1.local-1.aaaaaaaaxyz", "ocid1.bootvolume"])
def test_malformed_path_ids_are_400(tenant: Tenant, method: str, path: str, bad: str) -> None:
    expected_kind = next(kind for prefix, kind in KINDS.items() if path.startswith(prefix))
    if bad.startswith(f"ocid1.{expected_kind}."):
        return
    body = b'{"compartmentId": "%s"}' % tenant.tenancy_id.encode() if method in ("PUT", "POST") else None
    resp = raw_request(tenant, method, path.format(bad), body)
    assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter"), resp.text
    assert "invalid or incorrectly formatted" in resp.json()["message"]


def test_status_codes_and_headers(deployment: Deployment, tenant: Tenant, tmp_path: Path) -> None:
    image = tmp_path / "doomed.img"
    make_image(image, 2 * MIB, seed=4)
    doomed = deployment.import_volume(tenant, image, "doomed")
    got = raw_request(tenant, "GET", f"/bootVolumes/{doomed}")
    deleted = raw_request(tenant, "DELETE", f"/bootVolumes/{doomed}")
    assert deleted.status_code == 202 and deleted.content == b""
    backup_id = _backup(tenant, deployment.import_volume(tenant, image, "kept"), "to-delete")
    wait_state(tenant.client(), "get_boot_volume_backup", backup_id, "AVAILABLE")
    gone = raw_request(tenant, "DELETE", f"/bootVolumeBackups/{backup_id}")
    assert gone.status_code == 204
    missing = raw_request(tenant, "GET", "/bootVolumes/ocid1.bootvolume.oc1.local-1.aaaaaaaanothere")
    for resp, status in ((got, 200), (deleted, 202), (gone, 204), (missing, 404)):
        assert resp.status_code == status
        assert resp.headers["content-type"].startswith("application/json")
        assert resp.headers["x-content-type-options"] == "nosniff"
        assert resp.headers["opc-request-id"].count("/") == 2
    echoed = raw_request(tenant, "GET", f"/bootVolumes/{doomed}", headers={"opc-request-id": "CLIENT42"})
    assert echoed.headers["opc-request-id"].startswith("CLIENT42/")


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/bootVolumeBackups", {"someFutureField": 1}, "someFutureField"),
        (
            "/bootVolumes",
            {"clusterPlacementGroupId": "ocid1.clusterplacementgroup.oc1..aaaa"},
            "clusterPlacementGroupId",
        ),
        ("/bootVolumes", {"isAutoTuneEnabled": True}, "isAutoTuneEnabled"),
        (
            "/bootVolumes",
            {"bootVolumeReplicas": [{"availabilityDomain": "bootvault:AD-1"}]},
            "bootVolumeReplicas",
        ),
    ],
)
def test_unimplemented_fields_are_refused_by_name(
    tenant: Tenant, volume_id: str, path: str, body: dict[str, object], field: str
) -> None:
    if path == "/bootVolumeBackups":
        full = {"bootVolumeId": volume_id, **body}
    else:
        full = {
            "compartmentId": tenant.tenancy_id,
            "sourceDetails": {"type": "bootVolume", "id": volume_id},
            **body,
        }
    before = len(raw_request(tenant, "GET", f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}").json())
    resp = raw_request(tenant, "POST", path, json.dumps(full).encode())
    assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter"), resp.text
    assert field in resp.json()["message"]
    after = len(raw_request(tenant, "GET", f"/bootVolumeBackups?compartmentId={tenant.tenancy_id}").json())
    assert after == before  # nothing was created


def test_harmless_values_of_unimplemented_fields_pass(tenant: Tenant, volume_id: str) -> None:
    body = {"bootVolumeId": volume_id, "isRetentionLockEnabled": False, "retentionPeriod": None}
    assert raw_request(tenant, "POST", "/bootVolumeBackups", json.dumps(body).encode()).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/bootVolumeBackups", {}, "bootVolumeId"),
        ("/bootVolumeBackups", {"bootVolumeId": 7}, "bootVolumeId"),
        ("/bootVolumeBackups", {"bootVolumeId": "x", "type": "DIFFERENTIAL"}, "type"),
        ("/bootVolumes", {"sourceDetails": {"type": "bootVolume", "id": "x"}}, "compartmentId"),
        ("/bootVolumes", {"compartmentId": "x", "sourceDetails": {"type": "bootVolume"}}, "sourceDetails.id"),
    ],
)
def test_missing_or_invalid_fields_are_invalid_parameter(
    tenant: Tenant, path: str, body: dict[str, object], field: str
) -> None:
    resp = raw_request(tenant, "POST", path, json.dumps(body).encode())
    assert (resp.status_code, resp.json()["code"]) == (400, "InvalidParameter"), resp.text
    assert field in resp.json()["message"]


def test_sdk_reads_the_new_shapes(tenant: Tenant, volume_id: str) -> None:
    client = tenant.client()
    created = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id)).data
    assert created.time_created is None
    pages = oci.pagination.list_call_get_all_results(
        client.list_boot_volume_backups, compartment_id=tenant.tenancy_id, limit=1
    ).data
    assert created.id in [p.id for p in pages]
