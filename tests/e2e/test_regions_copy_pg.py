"""Cross-region copy on PostgreSQL + SeaweedFS S3: two regions on one machine, each with its own
PostgreSQL schema (its own database as far as it can tell), its own bucket, master key, data dir
and port. FULL and INCREMENTAL copies by the SDK and by the oci CLI, restores compared by hash,
the work request read in both regions, and only what is missing sent."""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from oci.core.models import CopyBootVolumeBackupDetails

from tests.dbs import pg_schema_url
from tests.e2e.test_regions_copy import _backup, _restore_hash, _sent, _wait_wr
from tests.helpers import BIN, MIB, Tenant, make_image, sha256_file, wait_state
from tests.regions import Region, client_in, pair, run_oci_cli, work_requests_in

GIB = 1 << 30


@pytest.fixture(scope="module")
def pg_regions(
    tmp_path_factory: pytest.TempPathFactory, s3_server
) -> Iterator[tuple[Region, Region, Tenant]]:  # type: ignore[no-untyped-def]
    with ExitStack() as stack:
        made = []
        for name in ("alpha-1", "beta-1"):
            region = Region(tmp_path_factory.mktemp(f"pg-{name}"), name)
            region.env.update(
                BOOTVAULT_DATABASE_URL=stack.enter_context(pg_schema_url()),
                BOOTVAULT_STORE_URL=f"s3://{s3_server.make_bucket()}/{name}?endpoint={s3_server.endpoint}",
                AWS_ACCESS_KEY_ID=s3_server.access_key,
                AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
                BOOTVAULT_MASTER_KEY=base64.b64encode(os.urandom(32)).decode(),
            )
            region.start()
            stack.callback(region.stop)
            made.append(region)
        alpha, beta = made
        tenant = alpha.new_tenant("pg")
        pair(alpha, beta)
        yield alpha, beta, tenant


def test_copy_full_and_incremental_on_postgresql_and_s3(
    pg_regions: tuple[Region, Region, Tenant], tmp_path: Path
) -> None:
    alpha, beta, tenant = pg_regions
    src, dst = client_in(tenant, alpha), client_in(tenant, beta)
    image = tmp_path / "pg.img"
    make_image(image, 16 * MIB, seed=17)
    volume_id = alpha.import_volume(tenant, image, "pg")
    full = _backup(src, volume_id, "FULL")
    resp = src.copy_boot_volume_backup(full, CopyBootVolumeBackupDetails(destination_region="beta-1"))
    wait_state(dst, "get_boot_volume_backup", resp.data.id, "AVAILABLE")
    wr_id = resp.headers["opc-work-request-id"]
    for region in (alpha, beta):
        assert _wait_wr(tenant, region, wr_id).status == "SUCCEEDED"
    full_sent = _sent(tenant, alpha, wr_id)
    assert _restore_hash(beta, dst, tenant, resp.data.id) == sha256_file(image, GIB)

    change = os.urandom(MIB)
    alpha.write_volume(volume_id, [(5 * MIB, change)])
    incr = _backup(src, volume_id, "INCREMENTAL")
    # by the oci CLI this time, waiting for the copy (polled through the source's endpoint)
    cmd = [
        str(BIN / "oci"), "bv", "boot-volume-backup", "copy", "--boot-volume-backup-id", incr,
        "--destination-region", "beta-1", "--wait-for-state", "AVAILABLE", "--max-wait-seconds", "180",
        "--wait-interval-seconds", "1", "--config-file", str(tenant.config_path),
        "--endpoint", alpha.endpoint,
    ]  # fmt: skip
    proc = run_oci_cli(cmd)
    assert proc.returncode == 0, proc.stderr
    copy = json.loads(proc.stdout)["data"]
    assert copy["lifecycle-state"] == "AVAILABLE" and copy["source-boot-volume-backup-id"] == incr
    listed = dst.list_boot_volume_backups(
        compartment_id=tenant.tenancy_id, source_boot_volume_backup_id=incr
    ).data
    assert [b.id for b in listed] == [copy["id"]]
    wrs = work_requests_in(tenant, alpha).list_work_requests(tenant.tenancy_id, resource_id=copy["id"]).data
    incr_wr = wrs[0].id
    assert 0 < _sent(tenant, alpha, incr_wr) < full_sent / 4
    expected = tmp_path / "expected.img"
    data = bytearray(image.read_bytes())
    data[5 * MIB : 6 * MIB] = change
    expected.write_bytes(data)
    assert _restore_hash(beta, dst, tenant, copy["id"]) == sha256_file(expected, GIB)
