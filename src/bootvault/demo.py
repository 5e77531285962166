"""`make run`'s first-start setup: a demo tenancy, its OCI config and a small volume to back up."""

from __future__ import annotations

import json
import os
import random
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path

from bootvault.config import Settings
from bootvault.ociconfig import write_oci_config
from bootvault.service import console_users, identity, volume_admin
from bootvault.service.context import Context
from bootvault.service.identity import generate_api_key

MIB = 1 << 20


@dataclass
class DemoInfo:
    tenancy_id: str
    oci_config: str
    volume_id: str
    console_user: str = ""
    console_password: str = ""  # demo only: kept in demo.json (0600) so `make run` can print it


def _demo_image(path: Path) -> None:
    """A 1 GiB sparse disk: a text region, a random region and holes, so backups show real work."""
    rng = random.Random(7)
    with open(path, "wb") as fh:
        fh.truncate(1 << 30)
        text = (
            b"".join(
                p.read_bytes() for p in sorted(Path("/usr/share/common-licenses").glob("*")) if p.is_file()
            )[: 8 * MIB]
            or b"bootvault demo\n" * 1024
        )
        for off in (0, 256 * MIB):
            fh.seek(off)
            fh.write((text * (8 * MIB // len(text) + 1))[: 8 * MIB])
        fh.seek(512 * MIB)
        fh.write(rng.randbytes(8 * MIB))


def _ensure_console_user(ctx: Context, info: DemoInfo, marker: Path) -> DemoInfo:
    """The demo's console sign-in (added to data dirs made before the console existed)."""
    if info.console_user:
        return info
    info.console_user, info.console_password = "demo", secrets.token_urlsafe(12)
    console_users.create_user(ctx, info.tenancy_id, info.console_user, info.console_password)
    _write_private(marker, json.dumps(asdict(info), indent=2))
    return info


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, 0o600)


def ensure_demo(ctx: Context) -> DemoInfo:
    marker = ctx.settings.data_dir / "demo.json"
    if marker.exists():
        return _ensure_console_user(ctx, DemoInfo(**json.loads(marker.read_text())), marker)
    new = identity.create_tenancy(ctx, "demo", generate_api_key())
    config = ctx.settings.data_dir / "oci" / "config"
    write_oci_config(config, new, ctx.settings.region)
    image = ctx.settings.data_dir / "demo-disk.img"
    _demo_image(image)
    vol = volume_admin.import_volume(ctx, new.tenancy_id, image, display_name="demo-boot-volume")
    os.unlink(image)
    info = DemoInfo(new.tenancy_id, str(config), vol.id)
    _write_private(marker, json.dumps(asdict(info), indent=2))
    return _ensure_console_user(ctx, info, marker)


def _tls_lines(s: Settings, info: DemoInfo, ca: str) -> str:
    """How to reach the HTTPS demo: the CA bundle, and the region-only route when on port 443."""
    from bootvault.tls import endpoint_host, region_metadata

    lines = f"""
HTTPS: clients trust {ca}. A REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in your environment overrides
--cert-bundle: then `export REQUESTS_CA_BUNDLE={ca}` instead (the SDK reads it too).
Clients that take no endpoint build https://{endpoint_host(s)} from the region:
"""
    if s.port == 443 and s.host not in ("", "0.0.0.0", "::"):
        lines += f"""
  echo '{s.host} {endpoint_host(s)}  # bootvault' >> /etc/hosts      # once, as root
  export OCI_REGION_METADATA='{json.dumps(region_metadata(s), separators=(",", ":"))}'
  export REQUESTS_CA_BUNDLE={ca}
  oci bv boot-volume-backup list --config-file {info.oci_config} --compartment-id {info.tenancy_id}
"""
    else:
        lines += "serve on port 443 for that, see docs/tls.md.\n"
    return lines


def print_demo(ctx: Context, info: DemoInfo, ca_bundle: Path | None = None) -> None:
    """The commands to try. ca_bundle: what clients trust when serving HTTPS (the demo CA)."""
    s = ctx.settings
    scheme = "https" if s.tls_cert else "http"
    base = f"{scheme}://{s.host}:{s.port}"
    ca = str(ca_bundle or "<your CA bundle>")
    common = f"--endpoint {base} --config-file {info.oci_config}"
    if s.tls_cert:
        common += f" \\\n      --cert-bundle {ca}"
    ad = s.availability_domains[0]
    print(
        f"""
bootvault is serving the OCI Core Services API on {base} (data in {s.data_dir})
Operator console: {base}/console/  (sign in as {info.console_user!r}, password {info.console_password!r})
Demo tenancy {info.tenancy_id}, demo boot volume {info.volume_id}. Try, in another terminal:

  export OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING=True
  oci bv boot-volume-backup create {common} --boot-volume-id {info.volume_id} \\
      --display-name first --type FULL --wait-for-state AVAILABLE
  oci bv boot-volume-backup list {common} --compartment-id {info.tenancy_id}
  oci bv boot-volume create {common} --compartment-id {info.tenancy_id} \\
      --availability-domain {ad} --boot-volume-backup-id <backup OCID> --wait-for-state AVAILABLE
  oci bv boot-volume-backup delete {common} --boot-volume-backup-id <backup OCID> --force

(`make run` installs the oci CLI into .venv: use .venv/bin/oci.)
{_tls_lines(s, info, ca) if s.tls_cert else ""}""",
        flush=True,
    )
