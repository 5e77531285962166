"""HTTPS: `serve --tls-cert/--tls-key` and `serve --tls-demo` driven by the real oci SDK and CLI, and
the recipe of docs/tls.md for clients that take no endpoint: the unmodified SDK and CLI reach
bootvault with only a region, defined by OCI_REGION_METADATA (or ~/.oci/regions-config.json),
a name that resolves to the server and the CA bundle.

The SDK and CLI take their CA bundle from REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE before anything
set on a session (the CLI's --cert-bundle included), so every client here runs with an
environment that says exactly what it trusts.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import oci
import pytest
import trustme

from tests.dbs import services_required
from tests.helpers import BIN, MIB, Deployment, Tenant, make_image, wait_state
from tests.names import resolving

REGION = "local-1"  # Settings.region's default: what `tenancy create` writes into the OCI config
REALM_DOMAIN = "bootvault.test"  # Settings.realm_domain's default: the demo certificate names it
ENDPOINT_HOST = f"iaas.{REGION}.{REALM_DOMAIN}"
REGION_METADATA = {
    "realmKey": "bootvault",
    "realmDomainComponent": REALM_DOMAIN,
    "regionKey": "BVL",
    "regionIdentifier": REGION,
}
CA_ENV = (
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "OCI_CLI_CERT_BUNDLE",
    "OCI_REGION_METADATA",
    "OCI_DEFAULT_REALM",
)


def client_env(**extra: str) -> dict[str, str]:
    """The environment of a client subprocess: no inherited CA bundle or region definition."""
    env = {k: v for k, v in os.environ.items() if k not in CA_ENV}
    env.update(OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING="True", SUPPRESS_LABEL_WARNING="True", **extra)
    return env


def run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def oci_cli(tenant: Tenant, *args: str, endpoint: str | None = None) -> list[str]:
    cmd = [str(BIN / "oci"), "--max-retries", "0", *args, "--config-file", str(tenant.config_path)]
    return cmd + (["--endpoint", endpoint] if endpoint else [])


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """trust(bundle): in-process SDK clients trust only `bundle` (None: the system's CAs)."""

    def set_bundle(bundle: Path | None) -> None:
        for k in CA_ENV:
            monkeypatch.delenv(k, raising=False)
        if bundle is not None:
            monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))

    return set_bundle


@pytest.fixture(scope="module")
def operator_ca() -> trustme.CA:
    return trustme.CA(organization_name="bootvault tests")


@pytest.fixture(scope="module")
def https(tmp_path_factory: pytest.TempPathFactory, operator_ca: trustme.CA) -> Iterator[Deployment]:
    """A server on `serve --tls-cert/--tls-key` with a certificate of an operator's own CA."""
    root = tmp_path_factory.mktemp("https")
    leaf = operator_ca.issue_cert("127.0.0.1", "localhost")
    cert, key = root / "server.pem", root / "server.key"
    cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    leaf.private_key_pem.write_to_path(str(key))
    operator_ca.cert_pem.write_to_path(str(root / "ca.pem"))
    dep = Deployment(root, tls=(cert, key))
    dep.start()
    yield dep
    dep.stop()


@pytest.fixture(scope="module")
def https_tenant(https: Deployment) -> Tenant:
    return https.new_tenant("tls")


@pytest.fixture(scope="module")
def https_volume(https: Deployment, https_tenant: Tenant, tmp_path_factory: pytest.TempPathFactory) -> str:
    image = tmp_path_factory.mktemp("tls-img") / "disk.img"
    make_image(image, 4 * MIB, seed=5)
    return https.import_volume(https_tenant, image, "tls-vol")


def test_sdk_over_https(https: Deployment, https_tenant: Tenant, https_volume: str, trust) -> None:  # type: ignore[no-untyped-def]
    assert https_tenant.endpoint.startswith("https://127.0.0.1:")
    trust(https.root / "ca.pem")
    client = https_tenant.client()
    backup = client.create_boot_volume_backup(
        oci.core.models.CreateBootVolumeBackupDetails(boot_volume_id=https_volume, display_name="over-tls")
    ).data
    assert (
        wait_state(client, "get_boot_volume_backup", backup.id, "AVAILABLE").data.display_name == "over-tls"
    )
    listed = client.list_boot_volume_backups(compartment_id=https_tenant.tenancy_id).data
    assert backup.id in [b.id for b in listed]


def test_untrusted_or_plain_clients_get_nothing(https: Deployment, https_tenant: Tenant, trust) -> None:  # type: ignore[no-untyped-def]
    trust(None)  # the system's CAs only: the operator's CA is not among them
    client = https_tenant.client(retry_strategy=oci.retry.NoneRetryStrategy())
    with pytest.raises(oci.exceptions.RequestException, match="CERTIFICATE_VERIFY_FAILED"):
        client.list_boot_volume_backups(compartment_id=https_tenant.tenancy_id)
    # Plain HTTP on the HTTPS port is not answered.
    conn = http.client.HTTPConnection("127.0.0.1", https.port, timeout=10)
    with pytest.raises((ConnectionError, http.client.HTTPException)):
        conn.request("GET", "/20160918/bootVolumeBackups")
        conn.getresponse()
    conn.close()


def test_oci_cli_over_https(https: Deployment, https_tenant: Tenant) -> None:
    ca = str(https.root / "ca.pem")
    args = ("bv", "boot-volume-backup", "list", "--compartment-id", https_tenant.tenancy_id, "--all")
    for how, env, extra in (
        ("--cert-bundle", client_env(), ["--cert-bundle", ca]),
        ("OCI_CLI_CERT_BUNDLE", client_env(OCI_CLI_CERT_BUNDLE=ca), []),
        ("REQUESTS_CA_BUNDLE", client_env(REQUESTS_CA_BUNDLE=ca), []),
    ):
        proc = run(oci_cli(https_tenant, *args, *extra, endpoint=https.endpoint), env)
        assert proc.returncode == 0, f"{how}: {proc.stdout}\n{proc.stderr}"
        assert "over-tls" in [b["display-name"] for b in json.loads(proc.stdout)["data"]], how


def test_serve_refuses_unusable_certificates(tmp_path: Path, operator_ca: trustme.CA) -> None:
    dep = Deployment(tmp_path)
    cert, key, other_key = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "k2.pem"
    operator_ca.issue_cert("localhost").cert_chain_pems[0].write_to_path(str(cert))
    operator_ca.issue_cert("localhost").private_key_pem.write_to_path(str(other_key))
    for args, needle in (
        (["--tls-cert", str(cert)], "--tls-cert and --tls-key go together"),
        (["--tls-cert", str(cert), "--tls-key", str(key)], "no such file"),
        (["--tls-cert", str(cert), "--tls-key", str(other_key)], "not a usable certificate and key"),
        (["--tls-demo", "--tls-cert", str(cert), "--tls-key", str(other_key)], "leave out --tls-cert"),
    ):
        proc = dep.cli("serve", "--port", str(dep.port), *args, check=False)
        assert proc.returncode != 0, args
        assert needle in " ".join(proc.stderr.split()), (args, proc.stderr)  # rich wraps lines
        assert "Traceback" not in proc.stderr


def test_tls_demo_serves_https_and_prints_the_commands(tmp_path: Path) -> None:
    """`make run TLS=1`: the demo CA is made on first start, kept across restarts, and the printed
    oci command works as printed."""
    dep = Deployment(tmp_path, tls_demo=True)
    dep.cli("migrate")
    log = tmp_path / "demo.out"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(BIN / "bootvault"), "serve", "--port", str(dep.port), "--demo", "--tls-demo"],
            env=dep.env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    dep.proc = proc
    try:
        text = wait_for_line(log, "docs/tls.md", proc)  # the last line the demo prints
        tls_dir = dep.data_dir / "tls"
        assert sorted(p.name for p in tls_dir.iterdir()) == ["ca.key", "ca.pem", "server.key", "server.pem"]
        assert all((p.stat().st_mode & 0o777) == 0o600 for p in tls_dir.iterdir())
        assert f"on https://127.0.0.1:{dep.port}" in text
        assert f"--cert-bundle {dep.ca_bundle}" in text
        # The printed list command, run as printed (joined at its line continuations).
        commands = text.replace("\\\n", " ").splitlines()
        listing = next(c for c in commands if "boot-volume-backup list" in c).split()
        assert listing[0] == "oci"
        env = client_env()
        result = run([str(BIN / "oci"), "--max-retries", "0", *listing[1:]], env)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        dep.stop()
    before = {p.name: p.read_bytes() for p in (dep.data_dir / "tls").iterdir()}
    dep.start()  # --tls-demo again: the files are used as they are
    dep.stop()
    assert {p.name: p.read_bytes() for p in (dep.data_dir / "tls").iterdir()} == before


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = path.read_text(errors="replace")
        if needle in text:
            return text
        if proc.poll() is not None:
            raise AssertionError(f"serve exited:\n{text[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"no {needle!r} within {timeout} s:\n{path.read_text()[-3000:]}")


# --- Clients that take no endpoint: only a region -------------------------------------------------

ENDPOINT_OF = """
import sys, oci
print(oci.core.BlockstorageClient(oci.config.from_file(sys.argv[1])).base_client.get_endpoint())
"""

SDK_CLIENT = """
import json, sys, oci
config = oci.config.from_file(sys.argv[1])
assert config["region"] == sys.argv[3] and "endpoint" not in config
client = oci.core.BlockstorageClient(config)  # no service_endpoint: built from the region
made = client.create_boot_volume_backup(
    oci.core.models.CreateBootVolumeBackupDetails(boot_volume_id=sys.argv[2], display_name="by-region")
)
done = oci.wait_until(client, client.get_boot_volume_backup(made.data.id), "lifecycle_state", "AVAILABLE",
                      max_wait_seconds=120, max_interval_seconds=1)
listed = client.list_boot_volume_backups(compartment_id=config["tenancy"])
print(json.dumps({"url": listed.request.url, "created": made.data.id, "state": done.data.lifecycle_state,
                  "listed": [b.id for b in listed.data]}))
"""


def _loopback_443() -> str:
    """A loopback address of its own (127.0.0.0/8 all reaches this host) where port 443 is free."""
    rng = random.Random()
    for _ in range(20):
        ip = f"127.{rng.randrange(1, 255)}.{rng.randrange(0, 255)}.{rng.randrange(2, 255)}"
        with socket.socket() as s:
            try:
                s.bind((ip, 443))
            except PermissionError as exc:
                msg = f"cannot bind port 443 ({exc}): the region route needs root or CAP_NET_BIND_SERVICE"
                if services_required():
                    pytest.fail(msg)
                pytest.skip(msg)
            except OSError:
                continue
            return ip
    pytest.fail("no free loopback address for port 443")


@pytest.fixture(scope="module")
def regional(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Tenant, str]]:
    """bootvault on <loopback address>:443 with the demo CA, which certifies iaas.local-1.bootvault.test."""
    root = tmp_path_factory.mktemp("regional")
    dep = Deployment(root, host=_loopback_443(), port=443, tls_demo=True)
    dep.start()
    tenant = dep.new_tenant("regional")
    image = root / "disk.img"
    make_image(image, 2 * MIB, seed=9)
    volume = dep.import_volume(tenant, image, "regional-vol")
    yield dep, tenant, volume
    dep.stop()


@pytest.mark.parametrize("source", ["OCI_REGION_METADATA", "regions-config.json"])
def test_sdk_with_only_a_region(
    regional: tuple[Deployment, Tenant, str], tmp_path: Path, source: str
) -> None:
    dep, tenant, volume = regional
    env = client_env(REQUESTS_CA_BUNDLE=str(dep.ca_bundle))
    if source == "OCI_REGION_METADATA":
        env["OCI_REGION_METADATA"] = json.dumps(REGION_METADATA)
    else:
        home = tmp_path / "home"
        (home / ".oci").mkdir(parents=True)
        (home / ".oci" / "regions-config.json").write_text(json.dumps([REGION_METADATA]))
        env["HOME"] = str(home)
    # The endpoint the SDK forms for the region, with the definition and without it.
    for with_definition, expected in ((True, ENDPOINT_HOST), (False, f"iaas.{REGION}.oraclecloud.com")):
        proc = run(
            [sys.executable, "-c", ENDPOINT_OF, str(tenant.config_path)],
            env if with_definition else client_env(),
        )
        assert proc.stdout.strip() == f"https://{expected}", proc.stdout + proc.stderr
    with resolving({ENDPOINT_HOST: dep.host}, tmp_path) as wrap:
        cmd = [sys.executable, "-c", SDK_CLIENT, str(tenant.config_path), volume, REGION]
        proc = run(wrap(cmd), env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["url"].startswith(f"https://{ENDPOINT_HOST}/20160918/bootVolumeBackups"), out
    assert out["state"] == "AVAILABLE"
    assert out["created"] in out["listed"]


def test_oci_cli_with_only_a_region(regional: tuple[Deployment, Tenant, str], tmp_path: Path) -> None:
    dep, tenant, volume = regional
    region = {"OCI_REGION_METADATA": json.dumps(REGION_METADATA)}
    args = ("bv", "boot-volume-backup", "list", "--compartment-id", tenant.tenancy_id, "--all")
    with resolving({ENDPOINT_HOST: dep.host}, tmp_path) as wrap:
        for how, env, extra in (
            ("REQUESTS_CA_BUNDLE", client_env(REQUESTS_CA_BUNDLE=str(dep.ca_bundle), **region), []),
            ("--cert-bundle", client_env(**region), ["--cert-bundle", str(dep.ca_bundle)]),
        ):
            proc = run(wrap(oci_cli(tenant, *args, *extra)), env)
            assert proc.returncode == 0, f"{how}: {proc.stdout}\n{proc.stderr}"
            volumes = {b["boot-volume-id"] for b in json.loads(proc.stdout)["data"]}
            assert volumes == {volume}, how
