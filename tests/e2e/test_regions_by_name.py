"""Two regions named to the clients the way a user names OCI regions (docs/regions.md, docs/tls.md):
no endpoint anywhere, only `~/.oci/regions-config.json` with both regions, names that resolve to
each deployment (an /etc/hosts line, here in a namespace of the client's own) and both demo CAs.
The unmodified oci CLI copies a backup to the other region and waits in that region, as it does
against OCI; the SDK's work-request waiter polls the source region, which serves the same work
request."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci.core.models import CreateBootVolumeBackupDetails

from tests.e2e.test_tls import REALM_DOMAIN, _loopback_443, client_env, oci_cli, run
from tests.helpers import MIB, Tenant, make_image, wait_state
from tests.names import resolving
from tests.regions import Region, client_in, pair

pytestmark = pytest.mark.slow(2.5)

SDK_COPY = """
import json, sys, oci
config = oci.config.from_file(sys.argv[1])
client = oci.core.BlockstorageClient(config)  # the region of the config file: no endpoint
composite = oci.core.BlockstorageClientCompositeOperations(client)
done = composite.copy_boot_volume_backup_and_wait_for_work_request(
    sys.argv[2], oci.core.models.CopyBootVolumeBackupDetails(destination_region=sys.argv[3]),
    waiter_kwargs={"max_wait_seconds": 180, "max_interval_seconds": 1},
)
print(json.dumps({"url": done.request.url, "status": done.data.status,
                  "resources": [r.identifier for r in done.data.resources]}))
"""


def _definition(region: str, key: str) -> dict[str, str]:
    return {
        "realmKey": "bootvault",
        "realmDomainComponent": REALM_DOMAIN,
        "regionKey": key,
        "regionIdentifier": region,
    }


@pytest.fixture(scope="module")
def named(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Region, Region, Tenant, dict[str, str]]]:
    regions = []
    for name in ("alpha-1", "beta-1"):
        region = Region(tmp_path_factory.mktemp(name), name, host=_loopback_443(), port=443, tls_demo=True)
        region.start()
        regions.append(region)
    alpha, beta = regions
    try:
        tenant = alpha.new_tenant("named")
        pair(alpha, beta)
        home = alpha.root / "home"
        (home / ".oci").mkdir(parents=True)
        definitions = [_definition("alpha-1", "BVA"), _definition("beta-1", "BVB")]
        (home / ".oci" / "regions-config.json").write_text(json.dumps(definitions))
        bundle = alpha.root / "both-cas.pem"
        bundle.write_bytes(alpha.ca_bundle.read_bytes() + beta.ca_bundle.read_bytes())
        env = client_env(REQUESTS_CA_BUNDLE=str(bundle), HOME=str(home))
        yield alpha, beta, tenant, env
    finally:
        for region in regions:
            region.stop()


def _backup(alpha: Region, tenant: Tenant, tmp_path: Path, seed: int) -> str:
    image = tmp_path / "named.img"
    make_image(image, 3 * MIB, seed=seed)
    volume_id = alpha.import_volume(tenant, image, "named")
    src = client_in(tenant, alpha)
    src.base_client.session.verify = str(alpha.ca_bundle)
    made = src.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id))
    return str(wait_state(src, "get_boot_volume_backup", made.data.id, "AVAILABLE").data.id)


def _names(alpha: Region, beta: Region) -> dict[str, str]:
    return {f"iaas.alpha-1.{REALM_DOMAIN}": alpha.host, f"iaas.beta-1.{REALM_DOMAIN}": beta.host}


def test_oci_cli_copies_and_waits_in_the_destination_by_region_names(
    named: tuple[Region, Region, Tenant, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta, tenant, env = named
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])
    backup_id = _backup(alpha, tenant, tmp_path, seed=41)
    args = ("bv", "boot-volume-backup", "copy", "--boot-volume-backup-id", backup_id)
    args += ("--destination-region", "beta-1", "--wait-for-state", "AVAILABLE")
    args += ("--max-wait-seconds", "180", "--wait-interval-seconds", "1")
    with resolving(_names(alpha, beta), tmp_path) as wrap:
        proc = run(wrap(oci_cli(tenant, *args)), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    copy = json.loads(proc.stdout)["data"]
    assert copy["lifecycle-state"] == "AVAILABLE" and ".beta-1." in copy["id"]
    assert copy["source-boot-volume-backup-id"] == backup_id
    dst = client_in(tenant, beta)
    dst.base_client.session.verify = env["REQUESTS_CA_BUNDLE"]
    assert dst.get_boot_volume_backup(copy["id"]).data.lifecycle_state == "AVAILABLE"


def test_sdk_waits_on_the_copys_work_request_by_region_name(
    named: tuple[Region, Region, Tenant, dict[str, str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    alpha, beta, tenant, env = named
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", env["REQUESTS_CA_BUNDLE"])
    backup_id = _backup(alpha, tenant, tmp_path, seed=42)
    cmd = [sys.executable, "-c", SDK_COPY, str(tenant.config_path), backup_id, "beta-1"]
    with resolving(_names(alpha, beta), tmp_path) as wrap:
        proc = run(wrap(cmd), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["url"].startswith(f"https://iaas.alpha-1.{REALM_DOMAIN}/20160918/workRequests/")
    assert out["status"] == "SUCCEEDED"
    (copy_id,) = [r for r in out["resources"] if ".beta-1." in r]  # the new backup, in beta-1
    dst = client_in(tenant, beta)
    dst.base_client.session.verify = env["REQUESTS_CA_BUNDLE"]
    assert dst.get_boot_volume_backup(copy_id).data.source_boot_volume_backup_id == backup_id
