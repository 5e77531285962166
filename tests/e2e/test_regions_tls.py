"""Pairing and copying over HTTPS: two regions on `serve --tls-demo` (each its own demo CA). The
invite carries the inviting region's CA, the join verifies it, region calls go over HTTPS; the oci
SDK and CLI copy with both CAs trusted. Plain HTTP is refused for an endpoint off loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest
from oci.core.models import CopyBootVolumeBackupDetails, CreateBootVolumeBackupDetails

from tests.helpers import BIN, MIB, Tenant, make_image, wait_state
from tests.regions import Region, pair, run_oci_cli


@pytest.fixture(scope="module")
def tls_regions(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Region, Region, Tenant, Path]]:
    alpha = Region(tmp_path_factory.mktemp("talpha"), "alpha-1", tls_demo=True)
    beta = Region(tmp_path_factory.mktemp("tbeta"), "beta-1", tls_demo=True)
    alpha.start()
    beta.start()
    try:
        tenant = alpha.new_tenant("tls")
        pair(alpha, beta)  # https endpoints: the token carries alpha's CA
        bundle = alpha.root / "both-cas.pem"
        bundle.write_bytes(alpha.ca_bundle.read_bytes() + beta.ca_bundle.read_bytes())
        yield alpha, beta, tenant, bundle
    finally:
        alpha.stop()
        beta.stop()


def _client(tenant: Tenant, region: Region, bundle: Path) -> oci.core.BlockstorageClient:
    client = oci.core.BlockstorageClient(tenant.config, service_endpoint=region.endpoint)
    client.base_client.session.verify = str(bundle)
    return client


def test_pair_and_copy_over_https(
    tls_regions: tuple[Region, Region, Tenant, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta, tenant, bundle = tls_regions
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))  # requests lets this win over session.verify
    assert alpha.endpoint.startswith("https://") and beta.peers() == ["alpha-1"]
    assert alpha.cli("region", "list").stdout.split() == ["beta-1", beta.endpoint]
    src, dst = _client(tenant, alpha, bundle), _client(tenant, beta, bundle)
    image = tmp_path / "tls.img"
    make_image(image, 3 * MIB, seed=8)
    volume_id = alpha.import_volume(tenant, image, "tls")
    made = src.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id))
    backup_id = wait_state(src, "get_boot_volume_backup", made.data.id, "AVAILABLE").data.id
    copy = src.copy_boot_volume_backup(
        backup_id, CopyBootVolumeBackupDetails(destination_region="beta-1")
    ).data
    assert (
        wait_state(dst, "get_boot_volume_backup", copy.id, "AVAILABLE").data.source_boot_volume_backup_id
        == backup_id
    )
    # the oci CLI, trusting both CAs
    cmd = [
        str(BIN / "oci"), "bv", "boot-volume-backup", "copy", "--boot-volume-backup-id", backup_id,
        "--destination-region", "beta-1", "--wait-for-state", "AVAILABLE", "--max-wait-seconds", "120",
        "--wait-interval-seconds", "1", "--config-file", str(tenant.config_path),
        "--endpoint", alpha.endpoint, "--cert-bundle", str(bundle),
    ]  # fmt: skip
    proc = run_oci_cli(cmd)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["data"]["lifecycle-state"] == "AVAILABLE"


def test_plain_http_is_for_loopback_only_and_a_token_is_used_once(
    tls_regions: tuple[Region, Region, Tenant, Path],
) -> None:
    alpha, beta, _, _ = tls_regions
    refused = alpha.cli("region", "invite", "--endpoint", "http://10.1.2.3:8420", check=False)
    assert refused.returncode != 0 and "plain HTTP is for loopback only" in refused.stderr
    token = alpha.cli("region", "invite", "--endpoint", alpha.endpoint).stdout.strip().splitlines()[-1]
    beta.cli("region", "join", "--endpoint", beta.endpoint, token)  # joining again re-pairs
    again = beta.cli("region", "join", "--endpoint", beta.endpoint, token, check=False)
    assert again.returncode != 0 and "refused to pair" in again.stderr
    assert alpha.peers() == ["beta-1"] and beta.peers() == ["alpha-1"]
    bad = beta.cli("region", "join", "--endpoint", beta.endpoint, "not-a-token", check=False)
    assert bad.returncode != 0 and "not a bootvault region invite" in bad.stderr
