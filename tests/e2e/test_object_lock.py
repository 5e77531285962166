"""S3 Object Lock on SeaweedFS (`weed mini` 4.48 supports it: buckets created with Object Lock are
versioned, PutObjectRetention in COMPLIANCE mode refuses a shorter date, and deleting a retained
version is AccessDenied). The store gives retention dates that only grow, and its deletes remove
every version (so space is really freed) except one still retained, which refuses.

The end-to-end test runs a deployment on such a bucket: a locked backup's manifest and packs get
the lock's end as their retention date, nobody can delete them before it, and once the lock has
ended the backup is deleted and GC frees its packs, every version of them."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from oci.core.models import CreateBootVolumeBackupDetails, RetentionDuration

from bootvault.blobstore import PermanentStoreError
from bootvault.blobstore.s3 import S3BlobStore
from tests.helpers import MIB, Deployment, make_image, wait_state
from tests.s3server import S3Server

pytestmark = pytest.mark.slow(3)


def _lock_bucket(s3: S3Server) -> str:
    name = f"lock-{os.urandom(6).hex()}"
    s3.client().create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def _store(s3: S3Server, bucket: str, prefix: str = "") -> S3BlobStore:
    return S3BlobStore(
        bucket, prefix, endpoint=s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key
    )


def _versions(s3: S3Server, bucket: str, prefix: str) -> list[str]:
    listed = s3.client().list_object_versions(Bucket=bucket, Prefix=prefix)
    return [v["Key"] for v in [*listed.get("Versions", ()), *listed.get("DeleteMarkers", ())]]


def test_retention_only_grows_and_deletes_respect_it(s3_server: S3Server) -> None:
    bucket = _lock_bucket(s3_server)
    store = _store(s3_server, bucket, "p")
    assert store.object_lock() and not _store(s3_server, s3_server.bucket).object_lock()
    assert not _store(s3_server, s3_server.bucket).retain_until("x", datetime.now(UTC))
    store.put("kept", b"data")
    until = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    assert store.retain_until("kept", until)
    assert store.retain_until("kept", until - timedelta(seconds=2))  # never shortened
    got = s3_server.client().get_object_retention(Bucket=bucket, Key="p/kept")["Retention"]
    assert got["Mode"] == "COMPLIANCE" and got["RetainUntilDate"] == until
    with pytest.raises(PermanentStoreError):
        store.delete("kept")
    assert store.get("kept") == b"data"
    store.put("free", b"x")
    store.put("free", b"y")  # two versions
    store.delete("free")
    assert _versions(s3_server, bucket, "p/free") == []  # all gone, not hidden behind a marker
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1)
    store.delete("kept")
    assert not store.exists("kept") and _versions(s3_server, bucket, "p/kept") == []


def test_locked_backup_objects_are_retained_until_the_lock_ends(s3_server: S3Server, tmp_path: Path) -> None:
    day = 15
    bucket = _lock_bucket(s3_server)
    dep = Deployment(tmp_path / "dep")
    dep.env.update(
        BOOTVAULT_STORE_URL=f"s3://{bucket}/bv?endpoint={s3_server.endpoint}",
        AWS_ACCESS_KEY_ID=s3_server.access_key,
        AWS_SECRET_ACCESS_KEY=s3_server.secret_key,
        BOOTVAULT_MASTER_KEY=base64.b64encode(os.urandom(32)).decode(),
        BOOTVAULT_RETENTION_DAY_SECONDS=str(day),
        BOOTVAULT_GC_GRACE_SECONDS="0",
    )
    dep.start()
    try:
        tenant = dep.new_tenant("olock")
        image = tmp_path / "disk.img"
        make_image(image, 2 * MIB, seed=31)
        volume_id = dep.import_volume(tenant, image, "olock")
        client = tenant.client()
        details = CreateBootVolumeBackupDetails(
            boot_volume_id=volume_id,
            type="FULL",
            is_retention_lock_enabled=True,
            retention_period=RetentionDuration(retention_time_unit="DAYS", retention_time_amount=1),
        )
        backup = client.create_boot_volume_backup(details).data
        until = wait_state(
            client, "get_boot_volume_backup", backup.id, "AVAILABLE"
        ).data.time_retention_expires_at
        s3 = s3_server.client()
        manifest = f"bv/manifests/{backup.id}"
        deadline = time.monotonic() + 30
        retained = None
        while retained is None and time.monotonic() < deadline:  # the RETAIN job runs after the backup
            try:
                retained = s3.get_object_retention(Bucket=bucket, Key=manifest)["Retention"]
            except s3.exceptions.ClientError:
                time.sleep(0.5)
        assert retained is not None, _retain_jobs(dep)
        assert retained["Mode"] == "COMPLIANCE"
        assert abs((retained["RetainUntilDate"] - until).total_seconds()) < 1
        packs = [k for k in _versions(s3_server, bucket, "bv/packs/")]
        assert packs and all(
            s3.get_object_retention(Bucket=bucket, Key=k)["Retention"]["Mode"] == "COMPLIANCE" for k in packs
        )
        version = s3.list_object_versions(Bucket=bucket, Prefix=manifest)["Versions"][0]["VersionId"]
        with pytest.raises(Exception, match="AccessDenied"):  # not even with the store's own keys
            s3.delete_object(Bucket=bucket, Key=manifest, VersionId=version)
        time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1)
        client.delete_boot_volume_backup(backup.id)
        wait_state(client, "get_boot_volume_backup", backup.id, "TERMINATED")
        assert _versions(s3_server, bucket, manifest) == []
        reports = [json.loads(dep.cli("gc").stdout.strip().splitlines()[-1]) for _ in range(2)]
        assert reports[1]["deleted_packs"] >= 1
        assert _versions(s3_server, bucket, "bv/packs/") == []  # really freed, every version
    finally:
        dep.stop()


def _retain_jobs(dep: Deployment) -> list[tuple[str, str | None]]:
    """The RETAIN jobs' states and errors, to say why an object has no retention."""
    with closing(sqlite3.connect(dep.data_dir / "bootvault.db")) as db:
        return db.execute("SELECT state, last_error FROM jobs WHERE kind = 'RETAIN'").fetchall()
