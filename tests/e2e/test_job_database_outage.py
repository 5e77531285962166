"""A job whose PostgreSQL connection is terminated mid-transaction (pg_terminate_backend, as the
chaos soak, bench/chaos.py, does) is left for another attempt, never made FAULTY for it: the
backup still ends AVAILABLE. The test holds the backup's row locked so that the worker's first
update of it waits, terminates exactly that backend, then lets go."""

from __future__ import annotations

import os
import time
from pathlib import Path

from oci.core.models import CreateBootVolumeBackupDetails
from sqlalchemy import create_engine, text

from tests.dbs import pg_schema_url
from tests.e2e.test_worker_lifecycle import WorkerProcess
from tests.helpers import MIB, Deployment


def test_a_backup_outlives_its_terminated_database_connection(tmp_path: Path) -> None:
    with pg_schema_url() as url:
        dep = Deployment(tmp_path, workers=0)
        dep.env["BOOTVAULT_DATABASE_URL"] = url
        dep.start()
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        worker = None
        try:
            tenant = dep.new_tenant("terminated")
            client = tenant.client()
            image = tmp_path / "disk.img"
            image.write_bytes(os.urandom(8 * MIB))
            volume_id = dep.import_volume(tenant, image, "disk")
            details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type="FULL")
            backup_id = client.create_boot_volume_backup(details).data.id
            with engine.connect() as holder, engine.connect() as admin:
                holder.execute(text("BEGIN"))
                holder.execute(
                    text("SELECT 1 FROM boot_volume_backups WHERE id = :id FOR UPDATE"), {"id": backup_id}
                )
                worker = WorkerProcess(dep)
                deadline, victim = time.monotonic() + 60, None
                while victim is None:
                    assert time.monotonic() < deadline, "the worker never waited on the backup's row"
                    victim = admin.execute(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query ILIKE 'UPDATE boot_volume_backups%' AND pid <> pg_backend_pid()"
                        )
                    ).scalar()
                    time.sleep(0.05)
                admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": victim})
                holder.execute(text("ROLLBACK"))
            deadline = time.monotonic() + 120
            while (backup := client.get_boot_volume_backup(backup_id).data).lifecycle_state not in (
                "AVAILABLE",
                "FAULTY",
            ):
                assert time.monotonic() < deadline, f"the backup is still {backup.lifecycle_state}"
                time.sleep(0.3)
            assert backup.lifecycle_state == "AVAILABLE", backup.system_tags
        finally:
            if worker is not None:
                worker.stop()
            engine.dispose()
            dep.stop()
