"""Two regions for the fault tests of cross-region copies (tests/e2e/test_regions_faults.py and
test_regions_link.py): alpha copies to beta through a LinkProxy that a test can cut, at a capped
rate so that a copy is seen in progress, with a short patience (alpha) and stall limit (beta).

The patience and the stall limit are short so the suite need not wait minutes (the link was cut
for 60 s against a patience of 75 s and a stall limit of 90 s until the suite had to be quicker);
what the tests rely on is their order: a restart, or a cut plus one retry interval, is shorter
than both; a cut longer than PATIENCE fails the copy."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
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
RETRY_CAP = 10  # seconds: the source's longest wait between retries (service/copy.py, _patient)
PATIENCE = 40  # seconds the source keeps retrying a silent destination before the copy fails
STALL = 45  # seconds the destination waits for a silent source before it ends the copy itself

World = tuple[Region, Region, LinkProxy, Tenant, str, Path]


@contextmanager
def copy_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """(alpha, beta, link, tenant, id of an AVAILABLE FULL backup in alpha, its image)."""
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


def wait_percent(tenant: Tenant, region: Region, wr_id: str, at_least: float) -> None:
    wrs, deadline = work_requests_in(tenant, region), time.monotonic() + 60
    while wrs.get_work_request(wr_id).data.percent_complete < at_least:
        assert time.monotonic() < deadline
        time.sleep(0.2)


def restores_to(beta: Region, tenant: Tenant, copy_id: str, image: Path) -> None:
    client = client_in(tenant, beta)
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=copy_id),
    )
    restored = wait_hydrated(client, client.create_boot_volume(details).data.id)
    assert beta.volume_sha256(restored.id, GIB) == sha256_file(image, GIB)


def copy_in_a_fresh_scope(
    tenant: Tenant, alpha: Region, beta: Region, backup_id: str
) -> tuple[str, str, str]:
    """A copy under a new customer key in beta (a scope that holds none of its blocks yet), once
    30 % of it has arrived: (copy id, work request id, key)."""
    key = beta.cli("key", "create", "--compartment", tenant.tenancy_id).stdout.split()[-1]
    resp = client_in(tenant, alpha).copy_boot_volume_backup(
        backup_id, CopyBootVolumeBackupDetails(destination_region="beta-1", kms_key_id=key)
    )
    assert resp.data.kms_key_id == key
    copy_id, wr_id = resp.data.id, resp.headers["opc-work-request-id"]
    wait_percent(tenant, alpha, wr_id, 30)
    return copy_id, wr_id, key
