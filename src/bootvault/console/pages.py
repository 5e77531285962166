"""What each console page shows. Every read goes through a service function with the signed-in
user's Caller (the same functions as the API), so another tenancy's id is "not found".

Seam for work requests and cross-region copies (built on another branch): a page of work
requests is one more entry in NAV and one more handler here; a copy action is one more form on
the backup page (templates/backup.html, block `more_actions`) posting to actions.py."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

from starlette.responses import Response

from bootvault.console.web import Page
from bootvault.domain import ocid
from bootvault.domain.errors import InvalidArgument, NotFound
from bootvault.domain.lifecycle import BACKUP_BUSY, VOLUME_BUSY
from bootvault.domain.models import BackupState, VolumeState
from bootvault.service import backups, overview, policies, volumes

NAV = [  # (path under /console, label); work requests will be added here
    ("/", "Dashboard"),
    ("/compartments", "Compartments"),
    ("/volumes", "Boot volumes"),
    ("/backups", "Boot volume backups"),
    ("/policies", "Backup policies"),
]
PAGE_SIZES = (25, 50, 100)


def path_id(p: Page, name: str, kind: str) -> str:
    ident = str(p.request.path_params[name])
    if ocid.resource_type(ident) != kind:
        raise NotFound()
    return ident


def _changing(vol: Any) -> bool:
    """Being filled, grown or deleted, or still hydrating: its page refreshes itself."""
    hydrating = vol.lifecycle_state == VolumeState.AVAILABLE and not vol.is_hydrated
    return vol.lifecycle_state in VOLUME_BUSY or hydrating


def compartment_of(p: Page) -> str:
    return p.query("compartment") or p.caller.tenancy_id


async def _frame(p: Page, compartment: str) -> dict[str, Any]:
    """What every page's header needs: the compartments for the picker."""
    comps = await p.run(overview.compartments)
    if compartment not in {c.id for c in comps}:
        raise NotFound()
    return {
        "compartments": comps,
        "compartment": compartment,
        "nav": NAV,
        "retry_token": secrets.token_hex(16),
    }


async def dashboard(p: Page) -> Response:
    comp = compartment_of(p)
    frame = await _frame(p, comp)
    board = await p.run(overview.dashboard, comp)
    return p.render("dashboard.html", board=board, **frame)


async def compartments(p: Page) -> Response:
    frame = await _frame(p, compartment_of(p))
    return p.render("compartments.html", **frame)


async def volume_list(p: Page) -> Response:
    comp = compartment_of(p)
    frame = await _frame(p, comp)
    items, next_page = await p.run(volumes.list_volumes, comp, None, 100, p.query("page") or None)
    assigned = await p.run(overview.volume_policies, items)
    live = any(_changing(v) for v in items)
    return p.render("volumes.html", volumes=items, next_page=next_page, assigned=assigned, live=live, **frame)


async def _policy_choices(p: Page, compartment: str) -> list[Any]:
    oracle, _ = await p.run(policies.list_policies, None, 100, None)
    own, _ = await p.run(policies.list_policies, compartment, 1000, None)
    return [*oracle, *own]


async def volume_detail(p: Page, error: tuple[int, str, str] | None = None) -> Response:
    vol = await p.run(volumes.get_volume, path_id(p, "volume_id", "bootvolume"))
    frame = await _frame(p, vol.compartment_id)
    assigned = (await p.run(overview.volume_policies, [vol])).get(vol.id)
    listed, _ = await p.run(
        backups.list_backups,
        backups.ListBackups(vol.compartment_id, boot_volume_id=vol.id, sort_by="TIMECREATED", limit=10),
    )
    return p.render(
        "volume.html",
        error[0] if error else 200,
        volume=vol,
        busy=_changing(vol),
        assigned=assigned,
        backups=listed,
        policy_choices=await _policy_choices(p, vol.compartment_id),
        error=error[1:] if error else None,
        **frame,
    )


def _backup_query(p: Page, comp: str) -> tuple[backups.ListBackups, dict[str, str]]:
    state, volume = p.query("state").upper(), p.query("volume")
    sort, order = p.query("sort", "TIMECREATED").upper(), p.query("order", "DESC").upper()
    limit = p.query("limit", "25")
    if state and state not in BackupState.__members__:
        raise InvalidArgument(f"lifecycleState must be one of {', '.join(BackupState)}.")
    if sort not in ("TIMECREATED", "DISPLAYNAME") or order not in ("ASC", "DESC"):
        raise InvalidArgument("sortBy must be TIMECREATED or DISPLAYNAME, sortOrder ASC or DESC.")
    if volume and ocid.resource_type(volume) != "bootvolume":
        raise InvalidArgument("bootVolumeId is not a boot volume OCID.")
    if not limit.isdigit() or int(limit) not in PAGE_SIZES:
        raise InvalidArgument(f"limit must be one of {', '.join(map(str, PAGE_SIZES))}.")
    q = backups.ListBackups(
        comp,
        boot_volume_id=volume or None,
        lifecycle_state=BackupState(state) if state else None,
        sort_by=sort,
        sort_order=order,
        limit=int(limit),
        page=p.query("page") or None,
    )
    shown = {
        "compartment": comp,
        "state": state,
        "volume": volume,
        "sort": sort,
        "order": order,
        "limit": limit,
    }
    return q, shown


async def backup_list(p: Page) -> Response:
    comp = compartment_of(p)
    frame = await _frame(p, comp)
    q, shown = _backup_query(p, comp)
    items, next_page = await p.run(backups.list_backups, q)
    vols, _ = await p.run(volumes.list_volumes, comp, None, 1000, None)
    # The table refreshes itself only while a listed backup changes (a refresh moves the focus).
    live = any(b.lifecycle_state in BACKUP_BUSY for b in items)
    return p.render(
        "backups.html",
        backups=items,
        next_page=next_page,
        filters=shown,
        volumes=vols,
        live=live,
        states=list(BackupState),
        page_sizes=PAGE_SIZES,
        **frame,
    )


async def _volume_or_none(p: Page, volume_id: str) -> Any:
    try:
        return await p.run(volumes.get_volume, volume_id)
    except NotFound:
        return None


async def backup_detail(p: Page, error: tuple[int, str, str] | None = None) -> Response:
    backup = await p.run(backups.get_backup, path_id(p, "backup_id", "bootvolumebackup"))
    frame = await _frame(p, backup.compartment_id)
    chain, _ = await p.run(
        backups.list_backups,
        backups.ListBackups(
            backup.compartment_id, boot_volume_id=backup.boot_volume_id, sort_by="TIMECREATED", limit=20
        ),
    )
    return p.render(
        "backup.html",
        error[0] if error else 200,
        backup=backup,
        volume=await _volume_or_none(p, backup.boot_volume_id),
        chain=chain,
        blocker=backup.retention.blocker(backup.id, datetime.now(UTC)),
        live=backup.lifecycle_state in BACKUP_BUSY,
        availability_domains=p.ctx.settings.availability_domains,
        error=error[1:] if error else None,
        **frame,
    )


async def backup_delete_confirm(p: Page) -> Response:
    backup = await p.run(backups.get_backup, path_id(p, "backup_id", "bootvolumebackup"))
    frame = await _frame(p, backup.compartment_id)
    blocker = backup.retention.blocker(backup.id, datetime.now(UTC))
    return p.render("delete_backup.html", backup=backup, blocker=blocker, **frame)


async def policy_list(p: Page) -> Response:
    comp = compartment_of(p)
    frame = await _frame(p, comp)
    return p.render("policies.html", policies=await _policy_choices(p, comp), **frame)


async def policy_detail(p: Page) -> Response:
    policy = await p.run(policies.get_policy, path_id(p, "policy_id", "volumebackuppolicy"))
    frame = await _frame(p, policy.compartment_id or p.caller.tenancy_id)
    assigned = await p.run(overview.policy_volumes, policy.id)
    return p.render("policy.html", policy=policy, assigned=assigned, **frame)
