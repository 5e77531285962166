"""Terraform with Oracle's OCI provider against `serve --tls-demo`, running docs/terraform.md's
example exactly as the page gives it: apply, plan with no changes, an in-place tag update, destroy.

Opt-in: the provider is not installable here (no registry) and takes 25 minutes of both cores to
build, so the run needs BOOTVAULT_TERRAFORM_PROVIDER_DIR, a directory holding a built
`terraform-provider-oci` (docs/terraform.md says how). Without it only the page's HCL is checked
with `terraform fmt` (when Terraform is installed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import MIB, Deployment, make_image
from tests.nbdwriter import stop_daemons

DOC = Path(__file__).resolve().parents[2] / "docs" / "terraform.md"
TERRAFORM = shutil.which("terraform") or "/usr/local/bin/terraform"
PROVIDER_DIR = os.environ.get("BOOTVAULT_TERRAFORM_PROVIDER_DIR")


def doc_block(name: str) -> str:
    """The fenced block that follows `<!-- file: NAME` in docs/terraform.md."""
    found = re.search(rf"<!-- file: {re.escape(name)}[^\n]*-->\n```hcl\n(.*?)```", DOC.read_text(), re.S)
    assert found, f"docs/terraform.md has no block for {name}"
    return found.group(1)


def test_the_documented_hcl_is_well_formed(tmp_path: Path) -> None:
    if not Path(TERRAFORM).exists():
        pytest.skip("terraform is not installed")
    (tmp_path / "main.tf").write_text(doc_block("main.tf"))
    done = subprocess.run(
        [TERRAFORM, "fmt", "-check", "-diff", "main.tf"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert '"oracle/oci" = "DIR"' in doc_block("terraformrc")


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str], Deployment]]:
    if not PROVIDER_DIR or not (Path(PROVIDER_DIR) / "terraform-provider-oci").is_file():
        pytest.skip(
            "set BOOTVAULT_TERRAFORM_PROVIDER_DIR to a directory holding a built terraform-provider-oci"
        )
    dep = Deployment(tmp_path / "dep", tls_demo=True)
    dep.start()
    try:
        tenant = dep.new_tenant("terraform")
        make_image(tmp_path / "disk.img", 8 * MIB, seed=61)
        volume = dep.import_volume(tenant, tmp_path / "disk.img", "boot")
        work = tmp_path / "tf"
        work.mkdir()
        (work / "main.tf").write_text(doc_block("main.tf"))
        rc = tmp_path / "terraformrc"
        rc.write_text(doc_block("terraformrc").replace("DIR", str(Path(PROVIDER_DIR).resolve())))
        cfg = tenant.config
        env = {
            **os.environ,
            "TF_CLI_CONFIG_FILE": str(rc),
            "TF_IN_AUTOMATION": "1",
            "CHECKPOINT_DISABLE": "1",
            "CLIENT_HOST_OVERRIDES": f"oci_core.BlockstorageClient={dep.endpoint}",
            "custom_cert_location": str(dep.ca_bundle),
            "TF_VAR_tenancy_ocid": cfg["tenancy"],
            "TF_VAR_user_ocid": cfg["user"],
            "TF_VAR_fingerprint": cfg["fingerprint"],
            "TF_VAR_private_key_path": cfg["key_file"],
            "TF_VAR_region": cfg["region"],
            "TF_VAR_boot_volume_id": volume,
        }
        yield work, env, dep
    finally:
        dep.stop()
        stop_daemons(dep.run_dir)


def _tf(work: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [TERRAFORM, *args, "-input=false", "-no-color"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def _state(work: Path, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    shown = subprocess.run(
        [TERRAFORM, "show", "-json"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    resources = json.loads(shown.stdout).get("values", {}).get("root_module", {}).get("resources", [])
    return {r["address"]: r["values"] for r in resources}


def _non_string_tags(values: dict[str, Any]) -> list[str]:
    """Tag map entries of a state object that are not strings (the provider keeps each tag map
    flat, `namespace.key` for defined and system tags)."""
    return [
        f"{field}.{key}"
        for field in ("freeform_tags", "defined_tags", "system_tags")
        for key, value in (values.get(field) or {}).items()
        if not isinstance(value, str)
    ]


def test_apply_plan_update_destroy(workspace: tuple[Path, dict[str, str], Deployment]) -> None:
    work, env, _ = workspace
    applied = _tf(work, env, "apply", "-auto-approve")
    assert applied.returncode == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    assert "[ERROR]" not in applied.stderr, applied.stderr[-3000:]
    state = _state(work, env)
    restored = state["oci_core_boot_volume.restored"]
    assert restored["state"] == "AVAILABLE"
    for address, values in state.items():
        assert _non_string_tags(values) == [], address
    backups = state["data.oci_core_boot_volume_backups.of_boot"]["boot_volume_backups"]
    assert state["oci_core_boot_volume_backup.full"]["id"] in [b["id"] for b in backups]

    planned = _tf(work, env, "plan", "-detailed-exitcode")
    assert planned.returncode == 0, planned.stdout[-3000:] + planned.stderr[-3000:]

    updated = _tf(work, env, "apply", "-auto-approve", "-var", "team=platform")
    assert updated.returncode == 0, updated.stdout[-3000:] + updated.stderr[-3000:]
    assert "0 added, 3 changed, 0 destroyed" in updated.stdout, updated.stdout[-2000:]
    state = _state(work, env)
    assert state["oci_core_boot_volume_backup.full"]["freeform_tags"] == {"team": "platform"}

    destroyed = _tf(work, env, "destroy", "-auto-approve", "-var", "team=platform")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-3000:]
    assert "Destroy complete! Resources: 4 destroyed." in destroyed.stdout, destroyed.stdout[-2000:]
