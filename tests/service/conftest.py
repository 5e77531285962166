"""The in-process tier: the service layer and the ASGI app in the test's own process, on SQLite
and a local store in a temporary directory, with jobs run inline by a real Worker (claim, lease,
execute, finish) instead of a worker thread. Volumes are real qcow2 files (a job that reads one
starts its own qemu-storage-daemon), so what these tests exercise is the code users run, minus
the network and the process boundaries that tests/e2e covers."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bootvault.config import Settings
from bootvault.domain import ocid
from bootvault.domain.models import BootVolume, VolumeState
from bootvault.service import identity
from bootvault.service.context import Caller, Context
from bootvault.service.identity import generate_api_key
from bootvault.store import volumes
from bootvault.worker.main import Worker

AD = "bootvault:AD-1"
MIB = 1 << 20


@dataclass
class House:
    ctx: Context
    caller: Caller
    tenancy: identity.NewTenancy

    def run_jobs(self, limit: int = 50) -> int:
        """Run every runnable job inline, as a worker would; returns how many ran."""
        worker, ran = Worker(self.ctx, name="inline"), 0
        while ran < limit and worker.run_once():
            ran += 1
        return ran

    def volume(self, size: int = 8 * MIB, name: str = "disk") -> str:
        """An AVAILABLE boot volume of the caller's tenancy: an empty qcow2 in the pool and its row."""
        volume_id = ocid.mint("bootvolume", self.ctx.settings.region)
        self.ctx.pool.volume(AD, volume_id).create_empty(size)
        record = BootVolume(
            id=volume_id,
            tenancy_id=self.caller.tenancy_id,
            compartment_id=self.caller.tenancy_id,
            availability_domain=AD,
            display_name=name,
            lifecycle_state=VolumeState.AVAILABLE,
            size_in_gbs=1,
            time_created=datetime.now(UTC),
            etag="new",
        )
        with self.ctx.db.write() as conn:
            volumes.insert_volume(conn, record)
        return volume_id


@pytest.fixture
def house(tmp_path: Path) -> Iterator[House]:
    ctx = Context.open(Settings(data_dir=tmp_path / "data", run_dir=tmp_path / "run"))
    tenancy = identity.create_tenancy(ctx, "inline", generate_api_key())
    try:
        yield House(ctx, Caller(tenancy.tenancy_id, tenancy.user_id), tenancy)
    finally:
        for vol in (tmp_path / "data" / "volumes").rglob("*.qcow2"):
            ctx.pool.volume(AD, vol.stem).runtime.stop()
        ctx.close()
