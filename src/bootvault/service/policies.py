"""Volume backup policies and their assignments to boot volumes (user-defined policies are rows;
Oracle's gold, silver and bronze are constants every tenancy sees)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection

from bootvault.domain import ocid
from bootvault.domain.errors import Conflict, EtagMismatch, InvalidArgument, NotFound
from bootvault.domain.lifecycle import VOLUME_GONE
from bootvault.domain.models import BootVolume
from bootvault.domain.policies import (
    ORACLE_POLICIES,
    PolicyAssignment,
    Schedule,
    VolumeBackupPolicy,
    check_schedules,
)
from bootvault.domain.scheduling import first_due
from bootvault.domain.validation import check_display_name, check_if_match, check_tags, tag_update
from bootvault.service import pagetokens
from bootvault.service.context import Caller, Context
from bootvault.service.identity import require_compartment
from bootvault.service.retry import idempotent_create
from bootvault.store import policies as repo
from bootvault.store import volumes
from bootvault.store.common import new_etag, now

MAX_PAGE = 1000
_ORACLE_LISTED = sorted(ORACLE_POLICIES.values(), key=lambda p: (p.time_created, p.id))


@dataclass
class CreatePolicy:
    compartment_id: str
    display_name: str | None = None
    schedules: list[Schedule] | None = None
    freeform_tags: dict[str, Any] | None = None
    defined_tags: dict[str, Any] | None = None
    destination_region: str | None = None  # copy each scheduled backup there (service/copy.py)


@dataclass
class UpdatePolicy:
    display_name: str | None = None
    schedules: list[Schedule] | None = None
    freeform_tags: dict[str, Any] | None = None
    defined_tags: dict[str, Any] | None = None
    destination_region: str | None = None  # None: unchanged; "none": no copies any more


def _check_region(ctx: Context, region: str | None) -> None:
    """A policy's destinationRegion must be a paired region (or "none" on update)."""
    from bootvault.service.regions import peer  # regions -> identity -> ...: imported late

    if region is None or region == "none" or region == ctx.settings.region or peer(ctx, region):
        return
    raise InvalidArgument(f"destinationRegion {region!r} is not a region paired with {ctx.settings.region}.")


def visible_policy(
    conn: Connection, caller: Caller, policy_id: str, *, share: bool = False
) -> VolumeBackupPolicy | None:
    """An Oracle-defined policy, or one of the caller's tenancy; None for anything else."""
    if policy_id in ORACLE_POLICIES:
        return ORACLE_POLICIES[policy_id]
    policy = repo.get_policy(conn, policy_id, share=share)
    return policy if policy is not None and policy.tenancy_id == caller.tenancy_id else None


def _own_policy(conn: Connection, caller: Caller, policy_id: str, verb: str) -> VolumeBackupPolicy:
    if policy_id in ORACLE_POLICIES:
        raise InvalidArgument(
            f"policyId {policy_id} is the Oracle-defined policy "
            f"{ORACLE_POLICIES[policy_id].display_name!r}, which cannot be {verb}; create a "
            "user-defined policy with the same schedules instead."
        )
    policy = repo.get_policy(conn, policy_id, lock=True)
    if policy is None or policy.tenancy_id != caller.tenancy_id:
        raise NotFound()
    return policy


def create_policy(
    ctx: Context, caller: Caller, req: CreatePolicy, retry_token: str | None
) -> VolumeBackupPolicy:
    check_display_name(req.display_name)
    tags = check_tags(req.freeform_tags, req.defined_tags)
    schedules = req.schedules or []
    check_schedules(schedules, ctx.settings.min_retention_seconds)
    _check_region(ctx, req.destination_region)

    def create(conn: Connection) -> str:
        require_compartment(conn, caller, req.compartment_id, in_body=True)
        policy_id = ocid.mint("volumebackuppolicy", ctx.settings.region)
        repo.insert_policy(
            conn,
            VolumeBackupPolicy(
                id=policy_id,
                display_name=req.display_name or f"volumebackuppolicy{now():%Y%m%d%H%M%S}",
                schedules=schedules,
                time_created=now(),
                etag=new_etag(),
                tenancy_id=caller.tenancy_id,
                compartment_id=req.compartment_id,
                tags=tags,
                destination_region=None if req.destination_region == "none" else req.destination_region,
            ),
        )
        return policy_id

    return idempotent_create(
        ctx, caller, retry_token, "CreateVolumeBackupPolicy", asdict(req), create, repo.get_policy
    )


def get_policy(ctx: Context, caller: Caller, policy_id: str) -> VolumeBackupPolicy:
    with ctx.db.read() as conn:
        policy = visible_policy(conn, caller, policy_id)
    if policy is None:
        raise NotFound()
    return policy


def list_policies(
    ctx: Context, caller: Caller, compartment_id: str | None, limit: int, page: str | None
) -> tuple[list[VolumeBackupPolicy], str | None]:
    """Without a compartment: Oracle's policies (OCI's rule); with one: that compartment's own."""
    op = "ListVolumeBackupPolicies"
    query, after = pagetokens.resume(
        ctx.page_tokens, op, caller.tenancy_id, page, {"compartmentId": compartment_id}
    )
    limit = min(limit, MAX_PAGE)
    if not query["compartmentId"]:
        rest = [p for p in _ORACLE_LISTED if after is None or (p.time_created, p.id) > after]
        items, last = rest[:limit], None
        if len(rest) > limit:
            last = (items[-1].time_created, items[-1].id)
    else:
        with ctx.db.read() as conn:
            require_compartment(conn, caller, query["compartmentId"], in_body=False)
            items, last = repo.list_policies(conn, caller.tenancy_id, query["compartmentId"], limit, after)
    token = None if last is None else ctx.page_tokens.seal(op, caller.tenancy_id, query, last)
    return items, token


def update_policy(
    ctx: Context, caller: Caller, policy_id: str, req: UpdatePolicy, if_match: str | None
) -> VolumeBackupPolicy:
    check_display_name(req.display_name)
    if req.schedules is not None:
        check_schedules(req.schedules, ctx.settings.min_retention_seconds)
    _check_region(ctx, req.destination_region)
    with ctx.db.write() as conn:
        policy = _own_policy(conn, caller, policy_id, "modified")
        check_if_match(policy.etag, if_match)
        values: dict[str, Any] = {}
        if req.display_name is not None:
            values["display_name"] = req.display_name
        if req.schedules is not None:
            values["schedules"] = req.schedules
        if req.destination_region is not None:
            values["destination_region"] = (
                None if req.destination_region == "none" else req.destination_region
            )
        values.update(tag_update(req.freeform_tags, req.defined_tags, policy.tags))
        if not values:
            return policy
        if repo.update_policy(conn, policy_id, values, expected_etag=policy.etag) is None:
            raise EtagMismatch(EtagMismatch.CHANGED)
        if req.schedules is not None:  # assignments follow the new schedules from now on
            ts = now()
            repo.reschedule_policy(
                conn, policy_id, first_due(req.schedules, ts, ctx.settings.region_zone), ts
            )
        updated = repo.get_policy(conn, policy_id)
    assert updated is not None
    return updated


def delete_policy(ctx: Context, caller: Caller, policy_id: str, if_match: str | None) -> None:
    with ctx.db.write() as conn:
        policy = _own_policy(conn, caller, policy_id, "deleted")
        check_if_match(policy.etag, if_match)
        assigned = repo.count_assignments(conn, policy_id)
        if assigned:
            raise Conflict(
                f"Volume backup policy {policy_id} is assigned to {assigned} volume"
                f"{'s' if assigned != 1 else ''}; delete those assignments first."
            )
        repo.delete_policy(conn, policy_id)


def assign(
    ctx: Context,
    conn: Connection,
    volume: BootVolume,
    policy: VolumeBackupPolicy,
    xrc_kms_key_id: str | None = None,
) -> PolicyAssignment:
    """Give the volume this policy, replacing any it had (OCI: "silently unassigned"). The first
    due time is the first one after now: assigning never makes a backup at once."""
    ts = now()
    repo.delete_assignment_of_asset(conn, volume.id)
    assignment = PolicyAssignment(
        id=ocid.mint("volumebackuppolicyassignment", ctx.settings.region),
        tenancy_id=volume.tenancy_id,
        asset_id=volume.id,
        policy_id=policy.id,
        time_created=ts,
        etag=new_etag(),
        next_run_at=first_due(policy.schedules, ts, ctx.settings.region_zone),
        xrc_kms_key_id=xrc_kms_key_id,  # a key of the destination region: it checks it at each copy
    )
    repo.insert_assignment(conn, assignment)
    return assignment


def create_assignment(
    ctx: Context, caller: Caller, asset_id: str, policy_id: str, xrc_kms_key_id: str | None = None
) -> PolicyAssignment:
    """Ids the caller cannot see answer 404 (NotAuthorizedOrNotFound), the asset's first."""
    with ctx.db.write() as conn:
        volume = volumes.get_volume(conn, asset_id, lock=True)
        if volume is None or volume.tenancy_id != caller.tenancy_id:
            raise NotFound(f"assetId {asset_id}: authorization failed or the boot volume was not found.")
        if volume.lifecycle_state in VOLUME_GONE:
            raise Conflict(
                f"Boot volume {asset_id} is {volume.lifecycle_state}; it cannot get a backup policy."
            )
        policy = visible_policy(conn, caller, policy_id, share=True)
        if policy is None:
            raise NotFound(f"policyId {policy_id}: authorization failed or the policy was not found.")
        return assign(ctx, conn, volume, policy, xrc_kms_key_id)


def _own_assignment(conn: Connection, caller: Caller, assignment_id: str) -> PolicyAssignment:
    found = repo.get_assignment(conn, assignment_id)
    if found is None or found.tenancy_id != caller.tenancy_id:
        raise NotFound()
    return found


def get_assignment(ctx: Context, caller: Caller, assignment_id: str) -> PolicyAssignment:
    with ctx.db.read() as conn:
        return _own_assignment(conn, caller, assignment_id)


def delete_assignment(ctx: Context, caller: Caller, assignment_id: str, if_match: str | None) -> None:
    with ctx.db.write() as conn:
        found = _own_assignment(conn, caller, assignment_id)
        check_if_match(found.etag, if_match)
        repo.delete_assignment(conn, assignment_id)


def assignments_of_asset(ctx: Context, caller: Caller, asset_id: str) -> list[PolicyAssignment]:
    """0 or 1 items; an asset the caller cannot see answers 404 like any query id."""
    with ctx.db.read() as conn:
        volume = volumes.get_volume(conn, asset_id)
        if volume is None or volume.tenancy_id != caller.tenancy_id:
            raise NotFound()
        found = repo.assignment_of_asset(conn, asset_id)
    return [found] if found else []
