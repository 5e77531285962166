"""Read models of the operator console that no single API call gives: the dashboard's figures,
the tenancy's compartment tree, and the policy of each volume on a page. Every read is scoped to
the caller's tenancy, and a compartment of another tenancy is "not found", as in the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection

from bootvault.domain.models import BackupState, BootVolume, BootVolumeBackup
from bootvault.domain.policies import ORACLE_POLICIES, PolicyAssignment, VolumeBackupPolicy
from bootvault.service.context import Caller, Context
from bootvault.service.identity import require_compartment
from bootvault.store import overview as repo
from bootvault.store import policies as policy_repo
from bootvault.store.console import compartments_of

LIST_LIMIT = 10


@dataclass(frozen=True)
class CompartmentInfo:
    id: str
    parent_id: str | None
    name: str
    time_created: datetime
    depth: int


@dataclass(frozen=True)
class NextRun:
    volume_id: str
    volume_name: str
    policy: VolumeBackupPolicy | None
    due: datetime | None


@dataclass
class Dashboard:
    states: dict[str, int]
    logical_bytes: int
    stored_bytes: int
    running: list[BootVolumeBackup]
    failed: list[BootVolumeBackup]
    failed_volumes: list[BootVolume]
    busy_volumes: list[BootVolume]
    next_runs: list[NextRun]
    # (day, live backups up to that day, bytes they hold): running totals, oldest first
    series: list[tuple[str, int, int]] = field(default_factory=list)

    @property
    def factor(self) -> float | None:
        """Logical size protected per byte stored: deduplication and compression together."""
        return self.logical_bytes / self.stored_bytes if self.stored_bytes else None


def compartments(ctx: Context, caller: Caller) -> list[CompartmentInfo]:
    """The tenancy's compartments, each after its parent (depth for indenting)."""
    with ctx.db.read() as conn:
        rows = compartments_of(conn, caller.tenancy_id)
    children: dict[str | None, list[tuple[str, str | None, str, datetime]]] = {}
    for row in rows:
        children.setdefault(row[1], []).append(row)
    out: list[CompartmentInfo] = []

    def walk(parent: str | None, depth: int) -> None:
        for cid, pid, name, created in children.get(parent, []):
            out.append(CompartmentInfo(cid, pid, name, created, depth))
            walk(cid, depth + 1)

    walk(None, 0)
    return out


def _policies_by_id(conn: Connection, ids: set[str]) -> dict[str, VolumeBackupPolicy]:
    found = {i: ORACLE_POLICIES[i] for i in ids if i in ORACLE_POLICIES}
    rest = ids - found.keys()
    if rest:
        found.update(policy_repo.get_policies(conn, rest))
    return found


def dashboard(ctx: Context, caller: Caller, compartment_id: str) -> Dashboard:
    t = caller.tenancy_id
    with ctx.db.read() as conn:
        require_compartment(conn, caller, compartment_id, in_body=False)
        totals = repo.state_totals(conn, t, compartment_id)
        _, logical, stored = totals.get(BackupState.AVAILABLE.value, (0, 0, 0))
        runs = repo.next_runs(conn, t, compartment_id, LIST_LIMIT)
        policies = _policies_by_id(conn, {x.policy_id for x, _ in runs})
        board = Dashboard(
            states={state: n for state, (n, _, _) in totals.items()},
            logical_bytes=logical,
            stored_bytes=stored,
            running=repo.running_backups(conn, t, compartment_id, LIST_LIMIT),
            failed=repo.backups_in_states(conn, t, compartment_id, [BackupState.FAULTY], LIST_LIMIT),
            failed_volumes=repo.faulty_volumes(conn, t, compartment_id),
            busy_volumes=repo.busy_volumes(conn, t, compartment_id),
            next_runs=[
                NextRun(x.asset_id, name, policies.get(x.policy_id), x.next_run_at) for x, name in runs
            ],
        )
        count = total = 0
        for day, n, added in repo.daily_series(conn, t, compartment_id):
            count, total = count + n, total + added
            board.series.append((day, count, total))
    return board


def volume_policies(
    ctx: Context, caller: Caller, volumes: list[BootVolume]
) -> dict[str, tuple[PolicyAssignment, VolumeBackupPolicy | None]]:
    """The assignment and policy of each of these (the caller's) volumes that has one."""
    ids = [v.id for v in volumes if v.tenancy_id == caller.tenancy_id]
    with ctx.db.read() as conn:
        found = repo.assignments_of(conn, ids)
        policies = _policies_by_id(conn, {x.policy_id for x in found.values()})
    return {vid: (x, policies.get(x.policy_id)) for vid, x in found.items()}


def policy_volumes(ctx: Context, caller: Caller, policy_id: str) -> list[tuple[str, str]]:
    """(volume id, name) of the caller's volumes assigned this policy (the caller can see it)."""
    with ctx.db.read() as conn:
        return repo.assignments_of_policy(conn, caller.tenancy_id, policy_id)
