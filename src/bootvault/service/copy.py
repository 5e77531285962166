"""Cross-region copy, the source's side: CopyBootVolumeBackup and the COPY job that moves the data.

The call (sent to the source region) checks the source backup and the destination region, mints
the new backup's OCID with the destination's region segment, asks the destination to create it
(CREATING; its answer is what the caller gets back), and writes the work request and the COPY
job in one transaction. The job, in the source region:
1. reads every block of the source backup (verified) and names it by transfer id (engine/xrc.py);
2. asks the destination which transfer ids it lacks, and sends only those blocks;
3. commits the manifest in transfer ids; the destination resolves them to its own blocks and
   turns the copy AVAILABLE (or names blocks it lost meanwhile, which are sent again).
A killed worker's job is claimed again after its lease and resumes: blocks the destination
recorded are not sent again. A region that does not answer is retried with backoff for
`copy_link_patience_seconds`, then the copy fails: the work request FAILED with the reason,
the destination's backup FAULTY.

Copies of one boot volume run one at a time from a region (the job's lane is the source volume,
as OCI documents): a second copy is accepted and waits its turn.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from array import array
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial
from typing import Any, TypeVar

from sqlalchemy.exc import IntegrityError

from bootvault.domain import ocid
from bootvault.domain.errors import (
    Conflict,
    IncorrectState,
    InvalidArgument,
    NotFound,
    RetryTokenReused,
)
from bootvault.domain.lifecycle import BACKUP_IN_PROGRESS
from bootvault.domain.models import BackupState, BootVolumeBackup, Job, JobKind, JobState
from bootvault.domain.validation import check_display_name
from bootvault.engine import xrc
from bootvault.engine.manifest import Manifest
from bootvault.engine.repository import Repository
from bootvault.service import copy_dest
from bootvault.service.context import Caller, Context
from bootvault.service.copy_dest import CopyOrder
from bootvault.service.copy_link import Destination, derived_ocid, destination, relay
from bootvault.service.lease import JobFailed, Lease, finish_job
from bootvault.service.regionlink import RegionRefused, RegionUnreachable
from bootvault.service.retry import request_hash
from bootvault.store import backups, jobs, retry_tokens, workrequests
from bootvault.store import regions as xrc_repo
from bootvault.store.common import now

log = logging.getLogger("bootvault.copy")
T = TypeVar("T")
IDS_PER_CALL = 16384  # transfer ids per `missing` call: 512 KiB


@dataclass
class CopyRequest:
    destination_region: str
    display_name: str | None = None
    kms_key_id: str | None = None


@dataclass
class CopyResult:
    """The new backup as the destination shows it: a record (same region) or its wire JSON."""

    work_request_id: str
    backup: BootVolumeBackup | None
    wire: dict[str, Any] | None
    etag: str


# --- CopyBootVolumeBackup ---------------------------------------------------------------------


def copy_backup(
    ctx: Context, caller: Caller, source_id: str, req: CopyRequest, retry_token: str | None
) -> CopyResult:
    check_display_name(req.display_name)
    if not req.destination_region:
        raise InvalidArgument("destinationRegion must not be empty.")
    digest = request_hash("CopyBootVolumeBackup", {"source": source_id, **asdict(req)})
    dest = destination(ctx, req.destination_region)
    with ctx.db.read() as conn:
        if retry_token is not None:
            record = retry_tokens.find(conn, caller.tenancy_id, retry_token, now() - _token_age(ctx))
            if record is not None:
                if (record.operation, record.request_hash) != ("CopyBootVolumeBackup", digest):
                    raise RetryTokenReused("The retry token was already used for a different request.")
                wr = workrequests.get_wr(conn, record.resource_id)
                assert wr is not None and wr.target_id is not None
                return _shown(dest, wr.id, wr.target_id, caller.tenancy_id)
        source = backups.get_backup(conn, source_id)
    if source is None or source.tenancy_id != caller.tenancy_id:
        raise NotFound()
    if source.lifecycle_state != BackupState.AVAILABLE:
        message = (
            f"Boot volume backup {source_id} is {source.lifecycle_state}; only an AVAILABLE backup is copied."
        )
        # one still being made will clear by itself (clients retry IncorrectState); others will not
        raise (IncorrectState if source.lifecycle_state in BACKUP_IN_PROGRESS else Conflict)(message)
    # With a retry token the ids derive from it: a retry after a crash between the destination's
    # create and our commit, or a concurrent duplicate, makes the same copy (the create is
    # idempotent by id, and the work request's id collides here).
    seed = None if retry_token is None else f"{caller.tenancy_id}/{retry_token}/{digest}"
    order = order_for(ctx, source, dest.name, req.display_name, req.kms_key_id, seed=seed)
    try:
        made, wire, etag = dest.create(order)
    except (RegionRefused, RegionUnreachable) as exc:
        raise relay(exc, dest.name) from None
    try:
        with ctx.db.write() as conn:
            queue_copy(ctx, conn, order, dest.name)
            if retry_token is not None:
                retry_tokens.remember(
                    conn,
                    caller.tenancy_id,
                    retry_token,
                    "CopyBootVolumeBackup",
                    digest,
                    order.work_request_id,
                )
    except IntegrityError:  # a concurrent duplicate committed this copy first
        return _shown(dest, order.work_request_id, order.backup_id, caller.tenancy_id)
    return CopyResult(order.work_request_id, made, wire, etag)


def _token_age(ctx: Context) -> Any:
    return timedelta(hours=ctx.settings.retry_token_hours)


def _shown(dest: Destination, wr_id: str, backup_id: str, tenancy_id: str) -> CopyResult:
    try:
        made, wire, etag = dest.get(backup_id, tenancy_id)
    except (RegionRefused, RegionUnreachable) as exc:
        raise relay(exc, dest.name) from None
    return CopyResult(wr_id, made, wire, etag)


def order_for(
    ctx: Context,
    source: BootVolumeBackup,
    region: str,
    display_name: str | None,
    kms_key_id: str | None,
    schedule_retention_seconds: int | None = None,
    seed: str | None = None,
) -> CopyOrder:
    """The copy's order; with a `seed`, its ids are derived from it (see copy_policy_backups)."""
    if seed is None:
        backup_id = ocid.mint("bootvolumebackup", region)
        wr_id = ocid.mint("coreservicesworkrequest", ctx.settings.region)
    else:
        backup_id = derived_ocid(ctx, "bootvolumebackup", region, seed)
        wr_id = derived_ocid(ctx, "coreservicesworkrequest", ctx.settings.region, seed)
    return CopyOrder(
        work_request_id=wr_id,
        backup_id=backup_id,
        tenancy_id=source.tenancy_id,
        compartment_id=source.compartment_id,
        boot_volume_id=source.boot_volume_id,
        source_backup_id=source.id,
        source_region=ctx.settings.region,
        type=source.type.value,
        size_in_gbs=source.size_in_gbs,
        image_id=source.image_id,
        display_name=display_name or backup_id.rsplit(".", 1)[-1],
        kms_key_id=kms_key_id,
        freeform_tags=dict(source.tags.freeform),
        defined_tags=dict(source.tags.defined),
        time_imaged=source.time_imaged.isoformat() if source.time_imaged else None,
        schedule_retention_seconds=schedule_retention_seconds,
    )


def queue_copy(ctx: Context, conn: Any, order: CopyOrder, region: str) -> None:
    """The source's work request and COPY job, in the caller's transaction."""
    workrequests.insert_wr(conn, copy_dest.copy_work_request(order, region, now()))
    jobs.enqueue(
        conn, JobKind.COPY, order.tenancy_id, order.work_request_id, lane=f"copy:{order.boot_volume_id}"
    )


# --- the COPY job -----------------------------------------------------------------------------


def _patient(ctx: Context, lease: Lease, what: str, fn: Callable[[], T]) -> T:
    """fn(), retried with backoff while the destination does not answer (or answers 5xx), up to
    copy_link_patience_seconds; a refusal (4xx) is final."""
    deadline = time.monotonic() + ctx.settings.copy_link_patience_seconds
    delay = 0.5
    while True:
        lease.check()
        try:
            return fn()
        except RegionUnreachable as exc:
            last: Exception = exc
        except RegionRefused as exc:
            if exc.status < 500:
                raise JobFailed(f"The destination region refused to {what}: {exc.message}") from None
            last = exc
        if time.monotonic() + delay > deadline:
            raise JobFailed(
                f"The destination region did not answer for {ctx.settings.copy_link_patience_seconds:g} s "
                f"while trying to {what}: {last}"
            )
        log.warning("copy: cannot %s yet (%s); retrying in %.1f s", what, last, delay)
        time.sleep(delay)
        delay = min(delay * 2, 10.0)


def run_copy(ctx: Context, job: Job, lease: Lease) -> None:
    with ctx.db.read() as conn:
        wr = workrequests.get_wr(conn, job.resource_id)
        source = backups.get_backup(conn, wr.source_id) if wr and wr.source_id else None
    if wr is None or wr.status in workrequests.TERMINAL or wr.target_id is None:
        finish_job(ctx, job, lease, JobState.SUCCEEDED, lambda conn: None)
        return
    if source is None or source.lifecycle_state != BackupState.AVAILABLE:
        raise JobFailed(f"The source backup {wr.source_id} is no longer AVAILABLE.")
    assert wr.destination_region is not None
    dest = destination(ctx, wr.destination_region)
    tenancy, target = wr.tenancy_id, wr.target_id
    key = dest.transfer_key(tenancy)
    with ctx.db.write() as conn:
        workrequests.progress(conn, wr.id, 1.0, f"attempt {job.attempts}: reading source backup {source.id}")
    _patient(
        ctx, lease, "start the copy", lambda: dest.started(target, tenancy, f"attempt {job.attempts} started")
    )
    repo = ctx.repository(tenancy, source.kms_key_id)
    manifest = repo.manifest(source.id)
    by_index = repo.transfer_ids(manifest, key)
    lease.check()
    indices = array("Q", sorted(by_index))
    tids = [by_index[i] for i in indices]
    first_at: dict[bytes, int] = {}
    for i, t in zip(indices, tids, strict=True):
        first_at.setdefault(t, i)
    unique = list(first_at)
    lacking: list[bytes] = []
    for start in range(0, len(unique), IDS_PER_CALL):
        part = unique[start : start + IDS_PER_CALL]
        lacking += _patient(ctx, lease, "compare blocks", partial(dest.missing, target, tenancy, part))
    with ctx.db.write() as conn:
        workrequests.log_line(
            conn,
            wr.id,
            f"attempt {job.attempts}: the destination lacks {len(lacking)} of {len(unique)} blocks",
        )
    header = {
        "logical_size": manifest.logical_size,
        "block_size": manifest.block_size,
        "time_imaged": source.time_imaged.isoformat() if source.time_imaged else None,
    }
    sent_total = 0
    for _ in range(3):
        sent_total += _send(
            ctx, lease, repo, dest, wr.id, target, tenancy, key, manifest, first_at, lacking, len(unique)
        )
        header["bytes_received"] = sent_total
        lacking = _patient(
            ctx, lease, "commit the copy", lambda: dest.commit(target, tenancy, header, indices, tids)
        )
        if not lacking:
            break
        log.warning("copy %s: destination lost %d blocks meanwhile; sending them again", target, len(lacking))
    else:
        raise JobFailed("The destination kept losing blocks of the copy (garbage collection?); giving up.")
    message = f"copied: {len(unique)} distinct blocks, {sent_total} bytes sent"

    def done(conn: Any) -> None:
        workrequests.log_line(conn, wr.id, message)
        workrequests.finish(conn, wr.id, "SUCCEEDED")

    finish_job(
        ctx,
        job,
        lease,
        JobState.SUCCEEDED,
        done,
        result=json.dumps({"bytes_sent": sent_total, "blocks": len(unique)}),
    )


def _send(
    ctx: Context,
    lease: Lease,
    repo: Repository,
    dest: Destination,
    wr_id: str,
    target: str,
    tenancy: str,
    key: bytes,
    manifest: Manifest,
    first_at: dict[bytes, int],
    lacking: list[bytes],
    distinct: int,
) -> int:
    """Send the lacking blocks; returns the bytes of frames sent."""
    if not lacking:
        return 0
    wanted = sorted(first_at[t] for t in lacking)
    subset = Manifest.from_entries(
        manifest.logical_size, manifest.block_size, ((i, manifest.block_id(i) or b"") for i in wanted)
    )
    already = distinct - len(lacking)
    began = time.monotonic()

    def send(body: bytes, stats: xrc.SendStats) -> None:
        pct = 5 + 90 * (already + stats.blocks) / max(1, distinct)
        _patient(ctx, lease, "send blocks", lambda: dest.blocks(target, tenancy, body, pct))
        if ctx.settings.copy_max_bps > 0:  # keep to the cap on average
            ahead = stats.payload_bytes / ctx.settings.copy_max_bps - (time.monotonic() - began)
            if ahead > 0:
                time.sleep(ahead)
        with ctx.db.write() as conn:
            workrequests.progress(conn, wr_id, pct)

    cap = ctx.settings.copy_max_bps
    batch = xrc.BATCH_BYTES if cap <= 0 else max(256 << 10, min(xrc.BATCH_BYTES, cap // 2))
    stats = repo.send_blocks(subset, key, send, batch)
    return stats.payload_bytes


def fail_work_request(conn: Any, job: Job, reason: str) -> None:
    """A COPY job that cannot succeed: its work request FAILED (in the job's final transaction)."""
    workrequests.finish(conn, job.resource_id, "FAILED", reason)


def tell_destination(ctx: Context, job: Job, reason: str) -> None:
    """After a COPY job failed: the destination's backup FAULTY and its work request FAILED (best
    effort; a destination that cannot be told ends the copy itself, see copy_dest.expire_stalled)."""
    with ctx.db.read() as conn:
        wr = workrequests.get_wr(conn, job.resource_id)
    if wr is not None and wr.target_id and wr.destination_region:
        try:
            destination(ctx, wr.destination_region).fail(wr.target_id, wr.tenancy_id, reason)
        except Exception as exc:  # the destination's own watchdog ends it (docs/regions.md)
            log.warning("copy %s: could not tell the destination it failed: %s", wr.target_id, exc)


# --- copies made by a policy's destinationRegion ---------------------------------------------

POLICY_COPY_WINDOW = timedelta(days=2)  # scheduled backups older than this are not copied late


def copy_policy_backups(ctx: Context) -> int:
    """Copy each scheduled backup whose volume's policy names a destinationRegion, once it is
    AVAILABLE (run by the scheduler thread). The copy expires with the schedule's retention in
    the destination too. A destination that does not answer is tried again next tick."""
    with ctx.db.read() as conn:
        due = xrc_repo.policy_copies_due(conn, now() - POLICY_COPY_WINDOW)
    made = 0
    for backup_id, region, xrc_key in due:
        with ctx.db.read() as conn:
            source = backups.get_backup(conn, backup_id)
        if source is None:
            continue
        # The ids are derived from (backup, region): schedulers of several processes, or one that
        # died between the destination's create and its own commit, make the same copy, once.
        seed = f"{backup_id}>{region}"
        order = order_for(ctx, source, region, None, xrc_key, source.schedule_retention_seconds, seed)
        try:
            dest = destination(ctx, region)
            dest.create(order)
        except RegionUnreachable as exc:  # tried again next tick
            log.warning("policy copy of %s to %s not started: %s", backup_id, region, exc)
            continue
        except (RegionRefused, InvalidArgument) as exc:  # will not change by itself: say why, once
            log.warning("policy copy of %s to %s refused: %s", backup_id, region, exc)
            with contextlib.suppress(IntegrityError), ctx.db.write() as conn:
                workrequests.insert_wr(conn, copy_dest.copy_work_request(order, region, now()))
                workrequests.finish(conn, order.work_request_id, "FAILED", exc.message)
            continue
        try:
            with ctx.db.write() as conn:
                queue_copy(ctx, conn, order, dest.name)
        except IntegrityError:  # another scheduler queued this copy first
            continue
        made += 1
    return made
