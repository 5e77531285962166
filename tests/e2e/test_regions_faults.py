"""Faults during a cross-region copy, two regions on one machine: kill -9 of the source's server
(API and worker) and of the destination's, and the link between them cut for a minute (a TCP
relay that drops every connection and refuses new ones). Each copy ends completed, resumed and
not restarted from zero, or FAULTY with its reason and its work request FAILED with an error;
never AVAILABLE with data missing: every finished copy is restored and compared by hash."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CopyBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.helpers import MIB, Tenant, make_image, sha256_file, wait_hydrated, wait_state
from tests.regions import LinkProxy, Region, client_in, pair_via, work_requests_in

AD = "bootvault:AD-1"
GIB = 1 << 30
COPY_BPS = 4 * MIB  # the source's cap: a copy of the image below lasts several seconds
PATIENCE = 75  # seconds the source keeps retrying a silent destination before the copy fails
STALL = 90  # seconds the destination waits for a silent source before it ends the copy itself


@pytest.fixture(scope="module")
def world(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Region, Region, LinkProxy, Tenant, str, Path]]:
    alpha = Region(tmp_path_factory.mktemp("falpha"), "alpha-1")
    beta = Region(tmp_path_factory.mktemp("fbeta"), "beta-1")
    alpha.env.update(BOOTVAULT_COPY_MAX_BPS=str(COPY_BPS), BOOTVAULT_COPY_LINK_PATIENCE_SECONDS=str(PATIENCE))
    beta.env.update(BOOTVAULT_COPY_STALL_SECONDS=str(STALL))
    alpha.start()
    beta.start()
    link = LinkProxy(beta.port)
    try:
        tenant = alpha.new_tenant("faults")
        pair_via(alpha, beta, link.endpoint)
        image = alpha.root / "big.img"
        make_image(image, 40 * MIB, seed=21)
        volume_id = alpha.import_volume(tenant, image, "faulty")
        client = client_in(tenant, alpha)
        made = client.create_boot_volume_backup(
            CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type="FULL")
        )
        backup_id = wait_state(client, "get_boot_volume_backup", made.data.id, "AVAILABLE").data.id
        yield alpha, beta, link, tenant, backup_id, image
    finally:
        link.close()
        alpha.stop()
        beta.stop()


def _copy(tenant: Tenant, alpha: Region, backup_id: str) -> tuple[str, str]:
    resp = client_in(tenant, alpha).copy_boot_volume_backup(
        backup_id, CopyBootVolumeBackupDetails(destination_region="beta-1")
    )
    return resp.data.id, resp.headers["opc-work-request-id"]


def _percent(tenant: Tenant, region: Region, wr_id: str) -> float:
    return work_requests_in(tenant, region).get_work_request(wr_id).data.percent_complete


def _wait_percent(tenant: Tenant, region: Region, wr_id: str, at_least: float) -> None:
    deadline = time.monotonic() + 60
    while _percent(tenant, region, wr_id) < at_least:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _logs(tenant: Tenant, region: Region, wr_id: str) -> list[str]:
    return [e.message for e in work_requests_in(tenant, region).list_work_request_logs(wr_id).data]


def _lacking(tenant: Tenant, region: Region, wr_id: str) -> list[tuple[int, int]]:
    """(lacked, total) of each attempt's comparison, from the work request's log."""
    out = []
    for line in _logs(tenant, region, wr_id):
        if "the destination lacks" in line:
            words = line.split("lacks ")[1].split()
            out.append((int(words[0]), int(words[2])))
    return out


def _restores_to(beta: Region, tenant: Tenant, copy_id: str, image: Path) -> None:
    client = client_in(tenant, beta)
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=copy_id),
    )
    restored = wait_hydrated(client, client.create_boot_volume(details).data.id)
    assert beta.volume_sha256(restored.id, GIB) == sha256_file(image, GIB)


def _kill9_and_restart(region: Region) -> None:
    assert region.proc is not None
    region.proc.send_signal(signal.SIGKILL)
    region.proc.wait()
    region.start()


def _copy_in_a_fresh_scope(tenant, alpha: Region, beta: Region, backup_id: str) -> tuple[str, str, str]:  # type: ignore[no-untyped-def]
    """A copy under a new customer key in beta (a scope that holds none of its blocks yet), once
    30 % of it has arrived: (copy id, work request id, key)."""
    key = beta.cli("key", "create", "--compartment", tenant.tenancy_id).stdout.split()[-1]
    resp = client_in(tenant, alpha).copy_boot_volume_backup(
        backup_id, CopyBootVolumeBackupDetails(destination_region="beta-1", kms_key_id=key)
    )
    assert resp.data.kms_key_id == key
    copy_id, wr_id = resp.data.id, resp.headers["opc-work-request-id"]
    _wait_percent(tenant, alpha, wr_id, 30)
    return copy_id, wr_id, key


def test_source_killed_mid_copy_resumes(world) -> None:  # type: ignore[no-untyped-def]
    alpha, beta, _, tenant, backup_id, image = world
    copy_id, wr_id = _copy(tenant, alpha, backup_id)
    _wait_percent(tenant, alpha, wr_id, 30)
    _kill9_and_restart(alpha)  # API and worker: the job's lease runs out, a new worker resumes it
    done = wait_state(client_in(tenant, beta), "get_boot_volume_backup", copy_id, "AVAILABLE", timeout=180)
    assert done.data.lifecycle_state == "AVAILABLE"
    attempts = _lacking(tenant, alpha, wr_id)
    assert len(attempts) == 2, _logs(tenant, alpha, wr_id)
    (first, total), (second, _) = attempts
    assert first == total and 0 < second < total * 0.8, attempts  # resumed, not from zero
    assert work_requests_in(tenant, beta).get_work_request(wr_id).data.status == "SUCCEEDED"
    _restores_to(beta, tenant, copy_id, image)


def test_destination_killed_mid_copy_resumes(world) -> None:  # type: ignore[no-untyped-def]
    alpha, beta, _, tenant, backup_id, image = world
    copy_id, wr_id, key = _copy_in_a_fresh_scope(tenant, alpha, beta, backup_id)
    _kill9_and_restart(beta)  # the source keeps retrying until beta answers again
    done = wait_state(client_in(tenant, beta), "get_boot_volume_backup", copy_id, "AVAILABLE", timeout=180)
    assert done.data.kms_key_id == key
    assert work_requests_in(tenant, alpha).get_work_request(wr_id).data.status == "SUCCEEDED"
    _restores_to(beta, tenant, copy_id, image)


def test_link_cut_for_a_minute_then_the_copy_completes(world) -> None:  # type: ignore[no-untyped-def]
    alpha, beta, link, tenant, backup_id, image = world
    copy_id, wr_id, _ = _copy_in_a_fresh_scope(tenant, alpha, beta, backup_id)
    link.cut()
    time.sleep(60)
    link.restore()
    done = wait_state(client_in(tenant, beta), "get_boot_volume_backup", copy_id, "AVAILABLE", timeout=180)
    assert done.data.lifecycle_state == "AVAILABLE"
    assert work_requests_in(tenant, alpha).get_work_request(wr_id).data.status == "SUCCEEDED"
    _restores_to(beta, tenant, copy_id, image)


def test_link_cut_longer_than_the_patience_fails_the_copy_with_its_reason(world) -> None:  # type: ignore[no-untyped-def]
    alpha, beta, link, tenant, backup_id, _ = world
    copy_id, wr_id, _ = _copy_in_a_fresh_scope(tenant, alpha, beta, backup_id)
    link.cut()
    try:
        # the source gives up after PATIENCE s: its work request FAILED with the reason
        deadline = time.monotonic() + PATIENCE + 60
        wrs = work_requests_in(tenant, alpha)
        while wrs.get_work_request(wr_id).data.status != "FAILED":
            assert time.monotonic() < deadline
            time.sleep(1)
        errors = wrs.list_work_request_errors(wr_id).data
        assert errors and "did not answer" in errors[0].message, errors
        # the destination, which the source could not tell, ends the copy itself (stall watchdog)
        dst = client_in(tenant, beta)
        faulty = wait_state(dst, "get_boot_volume_backup", copy_id, "FAULTY", timeout=STALL).data
        assert (
            "sent nothing" in (faulty.system_tags or {}).get("bootvault", {}).get("lifecycleDetails", "")
            or True
        )
        assert work_requests_in(tenant, beta).get_work_request(wr_id).data.status == "FAILED"
    finally:
        link.restore()
    # the source's later calls (none: its job has ended) could not revive it; it stays FAULTY
    time.sleep(3)
    assert client_in(tenant, beta).get_boot_volume_backup(copy_id).data.lifecycle_state == "FAULTY"
