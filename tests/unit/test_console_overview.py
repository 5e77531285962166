"""The console's dashboard read model (service/overview.py) on SQLite and PostgreSQL: counts by
state, space and factor from AVAILABLE backups only, running totals by day, running and failed
backups, hydrating volumes, next scheduled backups; another tenancy's rows never count, and its
compartment is not found."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootvault.config import Settings
from bootvault.domain import ocid
from bootvault.domain.errors import NotFound
from bootvault.domain.models import (
    GIB,
    BackupState,
    BackupType,
    BootVolume,
    BootVolumeBackup,
    SourceType,
    VolumeState,
)
from bootvault.domain.policies import ORACLE_POLICIES
from bootvault.service import identity, overview, policies
from bootvault.service.context import Caller, Context
from bootvault.service.identity import generate_api_key
from bootvault.store import backups, volumes
from tests.dbs import database_url

DAY1 = datetime(2026, 3, 1, 10, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Context]:
    with database_url(request.param, tmp_path) as url:
        c = Context.open(Settings(data_dir=tmp_path, database_url=url))
        yield c
        c.close()


def _volume(tenancy: str, **kw: object) -> BootVolume:
    values: dict = {
        "id": ocid.mint("bootvolume", "local-1"),
        "tenancy_id": tenancy,
        "compartment_id": tenancy,
        "availability_domain": "bootvault:AD-1",
        "display_name": "vol",
        "lifecycle_state": VolumeState.AVAILABLE,
        "size_in_gbs": 10,
        "time_created": DAY1,
        "etag": "e",
        **kw,
    }
    return BootVolume(**values)


def _backup(vol: BootVolume, state: BackupState, at: datetime, stored: int, **kw: object) -> BootVolumeBackup:
    return BootVolumeBackup(
        id=ocid.mint("bootvolumebackup", "local-1"),
        tenancy_id=vol.tenancy_id,
        compartment_id=vol.compartment_id,
        boot_volume_id=vol.id,
        display_name=f"b-{state}",
        lifecycle_state=state,
        type=BackupType.FULL,
        source_type=SourceType.MANUAL,
        time_request_received=at,
        time_created=at,
        etag="e",
        logical_size_bytes=10 * GIB,
        unique_size_bytes=stored,
        **kw,  # type: ignore[arg-type]
    )


def test_dashboard_figures(ctx: Context) -> None:
    mine = identity.create_tenancy(ctx, "mine", generate_api_key()).tenancy_id
    theirs = identity.create_tenancy(ctx, "theirs", generate_api_key()).tenancy_id
    caller = Caller(mine, "user")
    vol = _volume(mine, display_name="web")
    hydrating = _volume(mine, display_name="restored", is_hydrated=False, hydration_percent=30)
    other = _volume(theirs)
    day2 = DAY1 + timedelta(days=1)
    rows = [
        _backup(vol, BackupState.AVAILABLE, DAY1, GIB),
        _backup(vol, BackupState.AVAILABLE, DAY1 + timedelta(hours=1), 2 * GIB),
        _backup(vol, BackupState.AVAILABLE, day2, 2 * GIB),
        _backup(vol, BackupState.CREATING, day2, 0, percent_complete=40),
        _backup(vol, BackupState.FAULTY, day2, 0, lifecycle_details="The object store did not answer."),
        _backup(vol, BackupState.TERMINATED, DAY1, 5 * GIB),
        _backup(other, BackupState.AVAILABLE, DAY1, 7 * GIB),
    ]
    with ctx.db.write() as conn:
        for v in (vol, hydrating, other):
            volumes.insert_volume(conn, v)
            if v.hydration_percent is not None:
                volumes.update_volume(conn, v.id, {"hydration_percent": 30})
        backups.insert_backups(conn, rows)
    gold = next(p for p in ORACLE_POLICIES.values() if p.display_name == "gold")
    policies.create_assignment(ctx, caller, vol.id, gold.id)

    board = overview.dashboard(ctx, caller, mine)
    assert board.states == {"AVAILABLE": 3, "CREATING": 1, "FAULTY": 1, "TERMINATED": 1}
    assert (board.logical_bytes, board.stored_bytes) == (30 * GIB, 5 * GIB)
    assert board.factor == 6.0
    assert board.series == [("2026-03-01", 2, 3 * GIB), ("2026-03-02", 3, 5 * GIB)]
    assert [b.percent_complete for b in board.running] == [40]
    assert [b.lifecycle_details for b in board.failed] == ["The object store did not answer."]
    assert [v.display_name for v in board.busy_volumes] == ["restored"]
    assert board.busy_volumes[0].hydration_percent == 30
    assert [(r.volume_name, r.policy.display_name if r.policy else None) for r in board.next_runs] == [
        ("web", "gold")
    ]
    assert board.next_runs[0].due is not None
    with pytest.raises(NotFound):
        overview.dashboard(ctx, caller, theirs)
    assert [c.id for c in overview.compartments(ctx, caller)] == [mine]
    assigned = overview.volume_policies(ctx, caller, [vol, hydrating, other])
    assert list(assigned) == [vol.id] and assigned[vol.id][1] == gold
    assert overview.policy_volumes(ctx, caller, gold.id) == [(vol.id, "web")]


def test_compartment_tree_is_in_parent_order(ctx: Context) -> None:
    root = identity.create_tenancy(ctx, "acme", generate_api_key()).tenancy_id
    prod = identity.create_compartment(ctx, root, "prod")
    identity.create_compartment(ctx, prod, "db")
    identity.create_compartment(ctx, root, "dev")
    tree = [(c.name, c.depth) for c in overview.compartments(ctx, Caller(root, "u"))]
    assert tree == [("acme", 0), ("dev", 1), ("prod", 1), ("db", 2)]
