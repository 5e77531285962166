"""Take the console screenshots of docs/console/ (PNG): a live server with a demo tenancy,
driven by Playwright in Debian's chromium, one full-page shot per page.

    .venv/bin/python docs/console/screenshots.py
"""

from __future__ import annotations

import random
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # the repository root, for tests.helpers

from oci.core.models import (  # noqa: E402
    CreateBootVolumeBackupDetails,
    CreateVolumeBackupPolicyAssignmentDetails,
    UpdateBootVolumeBackupDetails,
)
from playwright.sync_api import sync_playwright  # noqa: E402

from tests.helpers import MIB, Deployment, make_image, wait_state  # noqa: E402

PASSWORD = "screenshots only"


def _backup(client, volume_id: str, name: str, kind: str) -> str:  # type: ignore[no-untyped-def]
    made = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=volume_id, display_name=name, type=kind)
    )
    return wait_state(client, "get_boot_volume_backup", made.data.id, "AVAILABLE").data.id


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bv-shots-") as tmp:
        root = Path(tmp)
        dep = Deployment(root)
        dep.start()
        try:
            tenant = dep.new_tenant("acme")
            client = tenant.client()
            image = root / "disk.img"
            make_image(image, 48 * MIB, seed=5)
            web = dep.import_volume(tenant, image, "web-01 boot")
            make_image(image, 32 * MIB, seed=6)
            db = dep.import_volume(tenant, image, "db-01 boot")
            dep.cli("compartment", "create", "--parent", tenant.tenancy_id, "--name", "production")
            dep.cli("user", "create", "--tenancy", tenant.tenancy_id, "--name", "olivia", input=PASSWORD)
            first = _backup(client, web, "web-01 before upgrade", "FULL")
            _backup(client, web, "web-01 nightly", "INCREMENTAL")
            held = _backup(client, db, "db-01 quarter end", "FULL")
            client.update_boot_volume_backup(
                held,
                UpdateBootVolumeBackupDetails(
                    is_indefinite_retention_enabled=True, freeform_tags={"case": "<script>alert(1)</script>"}
                ),
            )
            oracle = client.list_volume_backup_policies().data
            gold = next(p.id for p in oracle if p.display_name == "gold")
            client.create_volume_backup_policy_assignment(
                CreateVolumeBackupPolicyAssignmentDetails(asset_id=web, policy_id=gold)
            )
            base = f"{dep.endpoint}/console"
            # A big, incompressible volume whose FULL backup is still running for the dashboard.
            rng = random.Random(9)
            with open(image, "wb") as fh:
                for _ in range(384):
                    fh.write(rng.randbytes(MIB))
            big = dep.import_volume(tenant, image, "analytics-01 boot")
            shots = [
                ("compartments", "/compartments"),
                ("volumes", "/volumes"),
                ("volume", f"/volumes/{web}"),
                ("backups", "/backups"),
                ("backup", f"/backups/{first}"),
                ("delete-held-backup", f"/backups/{held}/delete"),
                ("policies", "/policies"),
                ("policy", f"/policies/{gold}"),
            ]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium")
                page = browser.new_page(viewport={"width": 1366, "height": 860})
                page.goto(f"{base}/sign-in")
                page.screenshot(path=str(HERE / "sign-in.png"))
                page.get_by_label("User name").fill("olivia")
                page.get_by_label("Password").fill(PASSWORD)
                page.get_by_role("button", name="Sign in").click()
                page.wait_for_url(f"{base}/")
                running = client.create_boot_volume_backup(
                    CreateBootVolumeBackupDetails(boot_volume_id=big, display_name="analytics-01 full", type="FULL")
                ).data.id
                page.goto(f"{base}/backups/{running}")  # its bar moves by itself (htmx polling)
                bar = page.locator("#backup-progress progress")
                while int(bar.get_attribute("value") or 0) < 20:  # (the CSP forbids wait_for_function's eval)
                    page.wait_for_timeout(200)
                page.goto(base + "/")
                page.wait_for_timeout(300)
                page.screenshot(path=str(HERE / "dashboard.png"), full_page=True)
                for name, path in shots:
                    page.goto(base + path)
                    page.wait_for_timeout(300)  # the chart draws after load
                    page.screenshot(path=str(HERE / f"{name}.png"), full_page=True)
                    print("wrote", HERE / f"{name}.png")
                browser.close()
        finally:
            dep.stop()


if __name__ == "__main__":
    main()
