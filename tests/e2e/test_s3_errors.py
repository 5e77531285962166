"""A broken object store fails the backup with a clear reason; the API stays up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from oci.core.models import CreateBootVolumeBackupDetails

from tests.helpers import MIB, Deployment, wait_state


@pytest.mark.parametrize(
    ("bucket", "secret", "reason"),
    [("no-such-bucket", None, "does not exist"), (None, "wrong-secret", "credentials were rejected")],
)
def test_store_failure_makes_backup_faulty(
    tmp_path: Path,
    s3_server,
    bucket: str | None,
    secret: str | None,
    reason: str,  # type: ignore[no-untyped-def]
) -> None:
    dep = Deployment(tmp_path / "dep")
    store = f"s3://{bucket or s3_server.bucket}/broken?endpoint={s3_server.endpoint}&max_attempts=2"
    dep.env.update(
        BOOTVAULT_STORE_URL=store,
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=secret or s3_server.secret_key,
    )
    dep.start()
    try:
        tenant = dep.new_tenant("s3err")
        image = tmp_path / "disk.img"
        image.write_bytes(os.urandom(2 * MIB))
        volume_id = dep.import_volume(tenant, image)
        client = tenant.client()
        created = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id))
        faulty = wait_state(client, "get_boot_volume_backup", created.data.id, "FAULTY").data
        details = faulty.system_tags["bootvault"]["lifecycleDetails"]
        assert details.startswith("The object store failed: ") and reason in details
        assert client.get_boot_volume(volume_id).data.lifecycle_state == "AVAILABLE"  # the API still serves
    finally:
        dep.stop()
