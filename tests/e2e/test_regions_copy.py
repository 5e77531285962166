"""Cross-region copy between two regions on one machine (each its own data dir, port and SQLite
database), driven by the oci SDK and the bootvault CLI: pairing, global identity, copies of FULL
and INCREMENTAL backups sending only what the destination lacks, restores compared by hash, work
requests read from both regions, and the bad requests."""

from __future__ import annotations

import json
import signal
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

from tests.helpers import (
    BIN,
    MIB,
    Tenant,
    make_image,
    raw_request,
    sha256_file,
    sleep_until,
    wait_hydrated,
    wait_state,
)
from tests.regions import SCHEDULER_TICK, Region, client_in, pair, run_oci_cli, work_requests_in

pytestmark = pytest.mark.slow(4.5)

AD = "bootvault:AD-1"
GIB = 1 << 30
COPY_BPS = 4 * MIB  # alpha's cap on what a copy sends per second (so a copy is seen in progress)


@pytest.fixture(scope="module")
def regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Region, Region]]:
    alpha = Region(tmp_path_factory.mktemp("alpha"), "alpha-1")
    alpha.env["BOOTVAULT_COPY_MAX_BPS"] = str(COPY_BPS)
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


@pytest.fixture(scope="module")
def source_backup(
    paired: tuple[Region, Region, Tenant], tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, str, Path]:
    """(volume, FULL backup, image) in alpha, for the tests below."""
    alpha, _, tenant = paired
    image = tmp_path_factory.mktemp("src") / "small.img"
    make_image(image, 4 * MIB, seed=5)
    volume_id = alpha.import_volume(tenant, image, "small")
    return volume_id, _backup(client_in(tenant, alpha), volume_id, "FULL"), image


def _raw_copy(tenant: Tenant, backup_id: str, body: dict, **headers: str):  # type: ignore[no-untyped-def]
    return raw_request(
        tenant, "POST", f"/bootVolumeBackups/{backup_id}/actions/copy", json.dumps(body).encode(), headers
    )


def test_bad_copies_are_refused_naming_the_field(
    paired: tuple[Region, Region, Tenant], source_backup: tuple[str, str, Path]
) -> None:
    alpha, beta, tenant = paired
    volume_id, backup_id, _ = source_backup
    src = client_in(tenant, alpha)

    def refused(resp, status: int, code: str, words: str) -> None:  # type: ignore[no-untyped-def]
        assert (resp.status_code, resp.json()["code"]) == (status, code), resp.text
        assert words in resp.json()["message"], resp.text

    refused(
        _raw_copy(tenant, backup_id, {"destinationRegion": "nowhere-1"}),
        400,
        "InvalidParameter",
        "destinationRegion",
    )
    refused(_raw_copy(tenant, backup_id, {}), 400, "InvalidParameter", "destinationRegion")
    refused(
        _raw_copy(tenant, backup_id, {"destinationRegion": "beta-1", "size": 1}),
        400,
        "InvalidParameter",
        "size",
    )
    refused(
        _raw_copy(
            tenant, backup_id, {"destinationRegion": "beta-1", "kmsKeyId": "ocid1.key.oc1.beta-1.aaaanokey"}
        ),
        400,
        "RelatedResourceNotAuthorizedOrNotFound",
        "kmsKeyId",
    )
    missing = "ocid1.bootvolumebackup.oc1.alpha-1.aaaaaaaadoesnotexist"
    refused(_raw_copy(tenant, missing, {"destinationRegion": "beta-1"}), 404, "NotAuthorizedOrNotFound", "")
    # a backup still being made: 409 IncorrectState (clears by itself); a deleted one: 409 Conflict
    creating = src.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id)).data.id
    refused(_raw_copy(tenant, creating, {"destinationRegion": "beta-1"}), 409, "IncorrectState", "AVAILABLE")
    wait_state(src, "get_boot_volume_backup", creating, "AVAILABLE")
    src.delete_boot_volume_backup(creating)
    wait_state(src, "get_boot_volume_backup", creating, "TERMINATED")
    refused(_raw_copy(tenant, creating, {"destinationRegion": "beta-1"}), 409, "Conflict", "AVAILABLE")
    # another tenancy's key cannot copy it (404, as if it did not exist)
    other = alpha.new_tenant("other")
    refused(_raw_copy(other, backup_id, {"destinationRegion": "beta-1"}), 404, "NotAuthorizedOrNotFound", "")
    # nothing was created in the destination by any of these
    assert (
        client_in(tenant, beta)
        .list_boot_volume_backups(compartment_id=tenant.tenancy_id, source_boot_volume_backup_id=creating)
        .data
        == []
    )


def test_retry_token_same_copy_and_same_region_copy(
    paired: tuple[Region, Region, Tenant], source_backup: tuple[str, str, Path]
) -> None:
    alpha, beta, tenant = paired
    _, backup_id, image = source_backup
    src = client_in(tenant, alpha)
    details = CopyBootVolumeBackupDetails(destination_region="beta-1", display_name="once")
    first = src.copy_boot_volume_backup(backup_id, details, opc_retry_token="copy-token-1")
    second = src.copy_boot_volume_backup(backup_id, details, opc_retry_token="copy-token-1")
    assert first.data.id == second.data.id
    assert first.headers["opc-work-request-id"] == second.headers["opc-work-request-id"]
    with pytest.raises(oci.exceptions.ServiceError) as err:
        src.copy_boot_volume_backup(
            backup_id,
            CopyBootVolumeBackupDetails(destination_region="beta-1", display_name="other"),
            opc_retry_token="copy-token-1",
        )
    assert err.value.status == 409
    wait_state(client_in(tenant, beta), "get_boot_volume_backup", first.data.id, "AVAILABLE")
    # a copy to the region itself is accepted, as recorded from OCI, and restores
    same = src.copy_boot_volume_backup(backup_id, CopyBootVolumeBackupDetails(destination_region="alpha-1"))
    assert same.data.id.split(".")[3] == "alpha-1" and same.data.source_boot_volume_backup_id == backup_id
    wait_state(src, "get_boot_volume_backup", same.data.id, "AVAILABLE")
    assert _wait_wr(tenant, alpha, same.headers["opc-work-request-id"]).status == "SUCCEEDED"
    assert _restore_hash(alpha, src, tenant, same.data.id) == sha256_file(image, GIB)


def test_sdk_composite_waiters(
    paired: tuple[Region, Region, Tenant], source_backup: tuple[str, str, Path]
) -> None:
    """Both composite waiters poll the source region: it answers for the copy (its GET of a
    copy it made into a peer is the peer's answer) and holds the work request."""
    alpha, beta, tenant = paired
    _, backup_id, _ = source_backup
    composite = oci.core.BlockstorageClientCompositeOperations(client_in(tenant, alpha))
    details = CopyBootVolumeBackupDetails(destination_region="beta-1")
    by_state = composite.copy_boot_volume_backup_and_wait_for_state(
        backup_id,
        details,
        wait_for_states=["AVAILABLE"],
        waiter_kwargs={"max_wait_seconds": 120, "max_interval_seconds": 1},
    )
    assert by_state.data.lifecycle_state == "AVAILABLE" and by_state.data.id.split(".")[3] == "beta-1"
    by_wr = composite.copy_boot_volume_backup_and_wait_for_work_request(
        backup_id,
        details,
        work_request_states=["SUCCEEDED"],
        waiter_kwargs={"max_wait_seconds": 120, "max_interval_seconds": 1},
    )
    assert by_wr.data.status == "SUCCEEDED"
    copy_id = by_wr.data.resources[0].identifier
    assert client_in(tenant, beta).get_boot_volume_backup(copy_id).data.lifecycle_state == "AVAILABLE"
    # the list of work requests, by compartment and by resource, in both regions
    for region in (alpha, beta):
        wrs = work_requests_in(tenant, region).list_work_requests(tenant.tenancy_id, resource_id=copy_id).data
        assert [w.id for w in wrs] == [by_wr.data.id], region.name
        assert work_requests_in(tenant, region).list_work_request_errors(by_wr.data.id).data == []


def test_oci_cli_copy_waits_for_the_copy(
    paired: tuple[Region, Region, Tenant], source_backup: tuple[str, str, Path]
) -> None:
    alpha, _, tenant = paired
    _, backup_id, _ = source_backup
    cmd = [
        str(BIN / "oci"), "bv", "boot-volume-backup", "copy", "--boot-volume-backup-id", backup_id,
        "--destination-region", "beta-1", "--display-name", "by-cli", "--wait-for-state", "AVAILABLE",
        "--max-wait-seconds", "120", "--wait-interval-seconds", "1",
        "--config-file", str(tenant.config_path), "--endpoint", alpha.endpoint,
    ]  # fmt: skip
    proc = run_oci_cli(cmd)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)["data"]
    assert data["lifecycle-state"] == "AVAILABLE" and data["display-name"] == "by-cli"
    assert data["source-boot-volume-backup-id"] == backup_id and data["id"].split(".")[3] == "beta-1"


def test_source_being_copied_cannot_be_deleted_and_a_down_destination_answers_at_once(
    paired: tuple[Region, Region, Tenant], source_backup: tuple[str, str, Path]
) -> None:
    alpha, beta, tenant = paired
    _, backup_id, _ = source_backup
    src = client_in(tenant, alpha)
    # alpha sends at most COPY_BPS: the copy of this backup lasts over a second
    resp = src.copy_boot_volume_backup(backup_id, CopyBootVolumeBackupDetails(destination_region="beta-1"))
    with pytest.raises(oci.exceptions.ServiceError) as err:
        src.delete_boot_volume_backup(backup_id)
    assert (err.value.status, err.value.code) == (409, "Conflict") and "copied" in err.value.message
    wait_state(client_in(tenant, beta), "get_boot_volume_backup", resp.data.id, "AVAILABLE")
    assert src.get_boot_volume_backup(backup_id).data.lifecycle_state == "AVAILABLE"

    assert beta.proc is not None
    beta.proc.send_signal(signal.SIGSTOP)  # the destination hangs
    try:
        started = time.monotonic()
        refused = _raw_copy(tenant, backup_id, {"destinationRegion": "beta-1"})
        assert time.monotonic() - started < 20
    finally:
        beta.proc.send_signal(signal.SIGCONT)
    assert (refused.status_code, refused.json()["code"]) == (409, "Conflict"), refused.text
    assert "beta-1" in refused.json()["message"] and "unreachable" in refused.json()["message"]


def test_policy_destination_region_copies_each_scheduled_backup_which_expires_there_too(
    paired: tuple[Region, Region, Tenant], tmp_path: Path
) -> None:
    from datetime import UTC, datetime, timedelta

    from oci.core.models import (
        CreateVolumeBackupPolicyAssignmentDetails,
        CreateVolumeBackupPolicyDetails,
        VolumeBackupSchedule,
    )

    alpha, beta, tenant = paired
    src, dst = client_in(tenant, alpha), client_in(tenant, beta)
    image = tmp_path / "policy.img"
    make_image(image, 2 * MIB, seed=9)
    volume_id = alpha.import_volume(tenant, image, "by-policy")
    # the copies are encrypted under a key of beta (xrcKmsKeyId), named on the assignment
    beta_key = beta.cli("key", "create", "--compartment", tenant.tenancy_id).stdout.split()[-1]
    due = (datetime.now(UTC) + timedelta(seconds=8)).replace(microsecond=0)
    retention = 45
    schedule = VolumeBackupSchedule(
        backup_type="FULL",
        period="ONE_HOUR",
        offset_type="NUMERIC_SECONDS",
        offset_seconds=due.minute * 60 + due.second,
        retention_seconds=retention,
    )
    policy = src.create_volume_backup_policy(
        CreateVolumeBackupPolicyDetails(
            compartment_id=tenant.tenancy_id, destination_region="beta-1", schedules=[schedule]
        )
    ).data
    assert policy.destination_region == "beta-1"
    assignment = src.create_volume_backup_policy_assignment(
        CreateVolumeBackupPolicyAssignmentDetails(
            asset_id=volume_id, policy_id=policy.id, xrc_kms_key_id=beta_key
        )
    ).data
    assert assignment.asset_id == volume_id and assignment.xrc_kms_key_id == beta_key

    def copies() -> list:  # type: ignore[type-arg]
        listed = src.list_boot_volume_backups(compartment_id=tenant.tenancy_id, boot_volume_id=volume_id).data
        scheduled = [b for b in listed if b.source_type == "SCHEDULED"]
        if not scheduled:
            return []
        return dst.list_boot_volume_backups(
            compartment_id=tenant.tenancy_id, source_boot_volume_backup_id=scheduled[0].id
        ).data

    deadline = time.monotonic() + 90
    while not copies() and time.monotonic() < deadline:
        time.sleep(0.5)
    found = copies()
    copied_at = time.monotonic()
    assert len(found) == 1, found
    copy = wait_state(dst, "get_boot_volume_backup", found[0].id, "AVAILABLE").data
    assert copy.expiration_time is not None and copy.time_created is not None
    assert copy.kms_key_id == beta_key
    assert abs((copy.expiration_time - copy.time_created).total_seconds() - retention) < 2
    assert _restore_hash(beta, dst, tenant, copy.id) == sha256_file(image, GIB)
    # one copy per scheduled backup (three scheduler ticks after it was made, most of them spent
    # restoring it), and it expires with the schedule's retention in beta too
    sleep_until(copied_at + 3 * SCHEDULER_TICK)
    assert len(copies()) == 1
    gone = wait_state(dst, "get_boot_volume_backup", copy.id, "TERMINATED", timeout=retention + 60).data
    assert gone.lifecycle_state == "TERMINATED"
    src.delete_volume_backup_policy_assignment(assignment.id)


def test_create_boot_volume_takes_xrc_kms_key_id_for_its_policy_copies(
    paired: tuple[Region, Region, Tenant], source_backup: tuple[str, str, Path]
) -> None:
    """The volume's xrcKmsKeyId goes to its policy's copies; beta does not know this key, so the
    copy of the scheduled backup fails once, with the reason on its work request in alpha."""
    from datetime import UTC, datetime, timedelta

    from oci.core.models import (
        BootVolumeSourceFromBootVolumeDetails,
        CreateVolumeBackupPolicyDetails,
        VolumeBackupSchedule,
    )

    alpha, _, tenant = paired
    volume_id, _, _ = source_backup
    src = client_in(tenant, alpha)
    due = (datetime.now(UTC) + timedelta(seconds=10)).replace(microsecond=0)
    schedule = VolumeBackupSchedule(
        backup_type="INCREMENTAL",
        period="ONE_HOUR",
        offset_type="NUMERIC_SECONDS",
        offset_seconds=due.minute * 60 + due.second,
        retention_seconds=600,
    )
    policy = src.create_volume_backup_policy(
        CreateVolumeBackupPolicyDetails(
            compartment_id=tenant.tenancy_id, destination_region="beta-1", schedules=[schedule]
        )
    ).data
    key = "ocid1.key.oc1.beta-1.aaaaaaaaexamplekey"  # a key of the destination: checked there, at copy
    clone = src.create_boot_volume(
        CreateBootVolumeDetails(
            compartment_id=tenant.tenancy_id,
            source_details=BootVolumeSourceFromBootVolumeDetails(id=volume_id),
            backup_policy_id=policy.id,
            xrc_kms_key_id=key,
        )
    ).data
    found = src.get_volume_backup_policy_asset_assignment(clone.id).data
    assert [(a.policy_id, a.xrc_kms_key_id) for a in found] == [(policy.id, key)]
    wait_state(src, "get_boot_volume", clone.id, "AVAILABLE")
    wrs = work_requests_in(tenant, alpha)
    deadline = time.monotonic() + 90
    while True:
        scheduled = src.list_boot_volume_backups(
            compartment_id=tenant.tenancy_id, boot_volume_id=clone.id
        ).data
        failed = [
            w
            for b in scheduled
            for w in wrs.list_work_requests(tenant.tenancy_id, resource_id=b.id).data
            if w.operation_type == "CopyBootVolumeBackup"
        ]
        if failed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    refused_at = time.monotonic()
    assert len(failed) == 1 and failed[0].status == "FAILED", failed
    errors = wrs.list_work_request_errors(failed[0].id).data
    assert "kmsKeyId" in errors[0].message, errors
    sleep_until(refused_at + 3 * SCHEDULER_TICK)  # refused once, not again at every tick
    again = [
        w for w in wrs.list_work_requests(tenant.tenancy_id, resource_id=scheduled[0].id).data
        if w.operation_type == "CopyBootVolumeBackup"
    ]  # fmt: skip
    assert len(again) == 1
