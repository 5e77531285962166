"""Boot volume use cases: restore, clone, read, update, delete, and the admin import/export."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from sqlalchemy import Connection

from bootvault.domain import ocid
from bootvault.domain.errors import (
    Conflict,
    EtagMismatch,
    IncorrectState,
    InvalidArgument,
    NotFound,
    RelatedNotFound,
)
from bootvault.domain.lifecycle import VOLUME_FILLING, VOLUME_GONE
from bootvault.domain.models import (
    GIB,
    BackupState,
    BootVolume,
    JobKind,
    VolumeSource,
    VolumeState,
)
from bootvault.domain.validation import check_display_name, check_if_match, check_tags, tag_update
from bootvault.service import pagetokens, policies, quotas
from bootvault.service.context import Caller, Context
from bootvault.service.identity import require_compartment, require_kms_key
from bootvault.service.retry import idempotent_create
from bootvault.store import backups, jobs, workrequests
from bootvault.store import policies as policy_repo
from bootvault.store import volumes as repo
from bootvault.store.common import new_etag, now

MIN_GBS, MAX_GBS = 1, 32768
MAX_PAGE = 1000


@dataclass
class CreateVolume:
    compartment_id: str
    source_type: VolumeSource
    source_id: str
    availability_domain: str | None = None
    display_name: str | None = None
    size_in_gbs: int | None = None
    kms_key_id: str | None = None
    vpus_per_gb: int | None = None
    freeform_tags: dict[str, Any] | None = None
    defined_tags: dict[str, Any] | None = None
    backup_policy_id: str | None = None
    xrc_kms_key_id: str | None = None  # a key of the policy's destination region (checked there)


@dataclass
class UpdateVolume:
    display_name: str | None = None
    size_in_gbs: int | None = None
    vpus_per_gb: int | None = None
    freeform_tags: dict[str, Any] | None = None
    defined_tags: dict[str, Any] | None = None


def size_gbs_for(nbytes: int) -> int:
    return max(1, -(-nbytes // GIB))


def check_size(size: int | None, field: str = "sizeInGBs") -> None:
    if size is not None and not MIN_GBS <= size <= MAX_GBS:
        raise InvalidArgument(f"{field} must be between {MIN_GBS} and {MAX_GBS}.")


def owned_volume(conn: Connection, caller: Caller, volume_id: str, *, lock: bool = False) -> BootVolume:
    vol = repo.get_volume(conn, volume_id, lock=lock)
    if vol is None or vol.tenancy_id != caller.tenancy_id:
        raise NotFound()
    return vol


def check_availability_domain(ctx: Context, ad: str) -> None:
    if ad not in ctx.settings.availability_domains:
        known = ", ".join(ctx.settings.availability_domains)
        raise InvalidArgument(f"availabilityDomain {ad!r} is not one of this region's: {known}.")


def _source_size(conn: Connection, caller: Caller, req: CreateVolume) -> tuple[int, str | None, str | None]:
    """(size in GB, availability domain, kms key) of the restore or clone source."""
    if req.source_type == VolumeSource.BACKUP:
        src = backups.get_backup(conn, req.source_id)
        if src is None or src.tenancy_id != caller.tenancy_id:
            raise RelatedNotFound(f"sourceDetails.id {req.source_id} not found or not authorized.")
        if src.lifecycle_state != BackupState.AVAILABLE:
            raise IncorrectState(f"Boot volume backup {src.id} is {src.lifecycle_state}, not AVAILABLE.")
        return src.size_in_gbs or 1, None, src.kms_key_id
    vol = repo.get_volume(conn, req.source_id)
    if vol is None or vol.tenancy_id != caller.tenancy_id:
        raise RelatedNotFound(f"sourceDetails.id {req.source_id} not found or not authorized.")
    if vol.lifecycle_state != VolumeState.AVAILABLE:
        raise IncorrectState(f"Boot volume {vol.id} is {vol.lifecycle_state}, not AVAILABLE.")
    return vol.size_in_gbs, vol.availability_domain, vol.kms_key_id


def create_volume(ctx: Context, caller: Caller, req: CreateVolume, retry_token: str | None) -> BootVolume:
    check_display_name(req.display_name)
    check_size(req.size_in_gbs)
    tags = check_tags(req.freeform_tags, req.defined_tags)

    def create(conn: Connection) -> str:
        require_compartment(conn, caller, req.compartment_id, in_body=True)
        require_kms_key(conn, caller, req.kms_key_id)
        src_size, src_ad, src_key = _source_size(conn, caller, req)
        ad = req.availability_domain or src_ad
        if src_ad is not None and ad != src_ad:
            raise InvalidArgument(f"availabilityDomain: a clone must be in its source's ({src_ad}).")
        if ad is None:
            raise InvalidArgument("availabilityDomain is required when restoring from a backup.")
        check_availability_domain(ctx, ad)
        if req.size_in_gbs is not None and req.size_in_gbs < src_size:
            raise InvalidArgument(f"sizeInGBs must be at least the source's size ({src_size} GB).")
        quotas.check_volumes(ctx, conn, caller.tenancy_id, new=1, added_gbs=req.size_in_gbs or src_size)
        vol = BootVolume(
            id=ocid.mint("bootvolume", ctx.settings.region),
            tenancy_id=caller.tenancy_id,
            compartment_id=req.compartment_id,
            availability_domain=ad,
            display_name=req.display_name or f"bootvolume{now():%Y%m%d%H%M%S}",
            lifecycle_state=VolumeState.RESTORING
            if req.source_type == VolumeSource.BACKUP
            else VolumeState.PROVISIONING,
            size_in_gbs=req.size_in_gbs or src_size,
            time_created=now(),
            etag=new_etag(),
            tags=tags,
            source_type=req.source_type,
            source_id=req.source_id,
            kms_key_id=req.kms_key_id or src_key,
            vpus_per_gb=req.vpus_per_gb or 10,
            is_hydrated=False,
            xrc_kms_key_id=req.xrc_kms_key_id,
        )
        repo.insert_volume(conn, vol)
        if req.backup_policy_id is not None:  # the volume and its assignment appear together
            policy = policies.visible_policy(conn, caller, req.backup_policy_id, share=True)
            if policy is None:
                raise RelatedNotFound(f"backupPolicyId {req.backup_policy_id} not found or not authorized.")
            policies.assign(ctx, conn, vol, policy, req.xrc_kms_key_id)
        kind = JobKind.RESTORE if req.source_type == VolumeSource.BACKUP else JobKind.CLONE
        jobs.enqueue(conn, kind, caller.tenancy_id, vol.id, lane=vol.id, ad=ad)
        workrequests.open_for_job(
            conn, ctx.settings.region, caller.tenancy_id, vol.compartment_id,
            "CreateBootVolume", "bootVolume", vol.id, "CREATED",
        )  # fmt: skip
        return vol.id

    return idempotent_create(
        ctx, caller, retry_token, "CreateBootVolume", asdict(req), create, repo.get_volume
    )


def get_volume(ctx: Context, caller: Caller, volume_id: str) -> BootVolume:
    with ctx.db.read_one() as conn:
        return owned_volume(conn, caller, volume_id)


def list_volumes(
    ctx: Context,
    caller: Caller,
    compartment_id: str | None,
    availability_domain: str | None,
    limit: int,
    page: str | None,
) -> tuple[list[BootVolume], str | None]:
    op, asked = (
        "ListBootVolumes",
        {"compartmentId": compartment_id, "availabilityDomain": availability_domain},
    )
    query, after = pagetokens.resume(ctx.page_tokens, op, caller.tenancy_id, page, asked)
    with ctx.db.read() as conn:
        if query["compartmentId"]:
            require_compartment(conn, caller, query["compartmentId"], in_body=False)
        items, last = repo.list_volumes(
            conn,
            caller.tenancy_id,
            compartment_id=query["compartmentId"],
            availability_domain=query["availabilityDomain"],
            limit=min(limit, MAX_PAGE),
            after=after,
        )
    token = None if last is None else ctx.page_tokens.seal(op, caller.tenancy_id, query, last)
    return items, token


def _cas(
    conn: Connection, vol: BootVolume, values: dict[str, Any], if_match: str | None, event: str | None = None
) -> BootVolume:
    """Apply `values` (and the state change of `event`, if any) by compare-and-set on the etag."""
    check_if_match(vol.etag, if_match)
    if event is not None:
        repo.move_volume(conn, vol.id, event, values, expected_etag=vol.etag)
    elif values and repo.update_volume(conn, vol.id, values, expected_etag=vol.etag) is None:
        raise EtagMismatch(EtagMismatch.CHANGED)
    updated = repo.get_volume(conn, vol.id)
    assert updated is not None
    return updated


def update_volume(
    ctx: Context, caller: Caller, volume_id: str, req: UpdateVolume, if_match: str | None
) -> BootVolume:
    check_display_name(req.display_name)
    check_size(req.size_in_gbs)
    with ctx.db.write() as conn:
        vol = owned_volume(conn, caller, volume_id, lock=True)
        if vol.lifecycle_state in VOLUME_GONE:
            raise Conflict(f"Boot volume {volume_id} is {vol.lifecycle_state}.")
        values: dict[str, Any] = {}
        if req.display_name is not None:
            values["display_name"] = req.display_name
        if req.vpus_per_gb is not None:
            values["vpus_per_gb"] = req.vpus_per_gb
        values.update(tag_update(req.freeform_tags, req.defined_tags, vol.tags))
        if req.size_in_gbs is not None and req.size_in_gbs != vol.size_in_gbs:
            _check_resize(vol, req.size_in_gbs)
            quotas.check_volumes(
                ctx, conn, caller.tenancy_id, new=0, added_gbs=req.size_in_gbs - vol.size_in_gbs
            )
            values["size_in_gbs"] = req.size_in_gbs
        grows = "size_in_gbs" in values  # as OCI: a grow provisions
        updated = _cas(conn, vol, values, if_match, "resized" if grows else None)
        if "size_in_gbs" in values:  # the pool's host grows the file, in the volume's lane
            jobs.enqueue(
                conn, JobKind.RESIZE, caller.tenancy_id, vol.id, lane=vol.id, ad=vol.availability_domain
            )
        return updated


def _check_resize(vol: BootVolume, size: int) -> None:
    if size < vol.size_in_gbs:
        raise InvalidArgument(f"sizeInGBs can only grow: the volume has {vol.size_in_gbs} GB.")
    if vol.lifecycle_state != VolumeState.AVAILABLE:
        raise IncorrectState(f"Boot volume {vol.id} is {vol.lifecycle_state}; resize it when AVAILABLE.")
    if vol.attachment_uri is not None:
        raise IncorrectState(
            f"Boot volume {vol.id} is attached (served at {vol.attachment_uri}); a served disk cannot "
            "grow under the machine: detach it, resize it, and attach it again."
        )


def delete_volume(ctx: Context, caller: Caller, volume_id: str, if_match: str | None) -> None:
    with ctx.db.write() as conn:
        vol = owned_volume(conn, caller, volume_id, lock=True)
        check_if_match(vol.etag, if_match)
        if vol.lifecycle_state in VOLUME_GONE:
            return
        if vol.lifecycle_state in VOLUME_FILLING:
            raise IncorrectState(f"Boot volume {volume_id} is {vol.lifecycle_state}; delete it later.")
        if vol.attachment_uri is not None:
            raise IncorrectState(
                f"Boot volume {volume_id} is attached (served at {vol.attachment_uri}); detach it first."
            )
        if backups.count_in_progress(conn, volume_id):
            raise IncorrectState(f"Boot volume {volume_id} has a backup in progress; delete it later.")
        if repo.count_restoring_from(conn, volume_id):
            raise IncorrectState(f"Boot volume {volume_id} is being cloned; delete it later.")
        _cas(conn, vol, {}, if_match, "deleted")
        policy_repo.delete_assignment_of_asset(conn, volume_id)  # a deleted volume has no policy
        jobs.enqueue(
            conn,
            JobKind.DELETE_VOLUME,
            caller.tenancy_id,
            volume_id,
            lane=volume_id,
            ad=vol.availability_domain,
        )
        workrequests.open_for_job(
            conn, ctx.settings.region, caller.tenancy_id, vol.compartment_id,
            "DeleteBootVolume", "bootVolume", volume_id, "DELETED",
        )  # fmt: skip


def change_compartment(
    ctx: Context, caller: Caller, volume_id: str, compartment_id: str, if_match: str | None
) -> None:
    with ctx.db.write() as conn:
        vol = owned_volume(conn, caller, volume_id, lock=True)
        require_compartment(conn, caller, compartment_id, in_body=True)
        if vol.lifecycle_state in VOLUME_GONE:
            raise Conflict(f"Boot volume {volume_id} is {vol.lifecycle_state}.")
        _cas(conn, vol, {"compartment_id": compartment_id}, if_match)
