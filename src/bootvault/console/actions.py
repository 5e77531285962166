"""Forms that change something. Each calls one service function with the signed-in user's
Caller; success answers 303 to the resource's page (post/redirect/get), a service error shows
that page again with the OCI code and message the API would answer, and its status.
Create forms carry a random token used as opc-retry-token, so a form sent twice creates once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.responses import Response

from bootvault.console import pages
from bootvault.console.web import PREFIX, Page, error_parts, redirect
from bootvault.domain.errors import BootVaultError, InvalidArgument
from bootvault.domain.models import BackupType, VolumeSource
from bootvault.domain.retention import Retention, RetentionDuration
from bootvault.service import backups, policies, volumes


def _text(p: Page, name: str) -> str | None:
    value = p.values.get(name, "").strip()
    return value or None


def _tags(p: Page) -> dict[str, str] | None:
    """Free-form tags from a textarea, one `key=value` a line; None when the field is absent."""
    if "tags" not in p.values:
        return None
    tags: dict[str, str] = {}
    for number, line in enumerate(p.values["tags"].splitlines(), 1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InvalidArgument(f"freeformTags: line {number} is not key=value.")
        tags[key.strip()] = value.strip()
    return tags


def _retry_token(p: Page) -> str | None:
    token = p.values.get("retry_token", "")
    return token if token.isalnum() and len(token) <= 64 else None


def _on(fallback: Callable[..., Awaitable[Response]]) -> Callable[..., Callable[[Page], Awaitable[Response]]]:
    """Run the action; a service error re-renders the resource page (`fallback`) with it."""

    def wrap(action: Callable[[Page], Awaitable[Response]]) -> Callable[[Page], Awaitable[Response]]:
        async def run(p: Page) -> Response:
            try:
                return await action(p)
            except BootVaultError as exc:
                return await fallback(p, error=error_parts(exc))

        return run

    return wrap


def _volume_id(p: Page) -> str:
    return pages.path_id(p, "volume_id", "bootvolume")


def _backup_id(p: Page) -> str:
    return pages.path_id(p, "backup_id", "bootvolumebackup")


@_on(pages.volume_detail)
async def create_backup(p: Page) -> Response:
    kind = p.values.get("type", "INCREMENTAL")
    if kind not in BackupType.__members__:
        raise InvalidArgument("type must be FULL or INCREMENTAL.")
    req = backups.CreateBackup(_volume_id(p), _text(p, "display_name"), BackupType(kind))
    backup = await p.run(backups.create_backup, req, _retry_token(p))
    return redirect(f"{PREFIX}/backups/{backup.id}")


@_on(pages.volume_detail)
async def clone_volume(p: Page) -> Response:
    source = await p.run(volumes.get_volume, _volume_id(p))
    req = volumes.CreateVolume(
        source.compartment_id, VolumeSource.VOLUME, source.id, display_name=_text(p, "display_name")
    )
    vol = await p.run(volumes.create_volume, req, _retry_token(p))
    return redirect(f"{PREFIX}/volumes/{vol.id}")


@_on(pages.volume_detail)
async def update_volume(p: Page) -> Response:
    req = volumes.UpdateVolume(display_name=_text(p, "display_name"), freeform_tags=_tags(p))
    vol = await p.run(volumes.update_volume, _volume_id(p), req, None)
    return redirect(f"{PREFIX}/volumes/{vol.id}")


@_on(pages.volume_detail)
async def move_volume(p: Page) -> Response:
    volume_id = _volume_id(p)
    await p.run(volumes.change_compartment, volume_id, p.values.get("compartment_id", ""), None)
    return redirect(f"{PREFIX}/volumes/{volume_id}")


@_on(pages.volume_detail)
async def set_policy(p: Page) -> Response:
    """Assign the chosen policy (replacing any), or remove the volume's when none is chosen."""
    volume_id, policy_id = _volume_id(p), p.values.get("policy_id", "")
    if policy_id:
        await p.run(policies.create_assignment, volume_id, policy_id)
    else:
        for found in await p.run(policies.assignments_of_asset, volume_id):
            await p.run(policies.delete_assignment, found.id, None)
    return redirect(f"{PREFIX}/volumes/{volume_id}")


@_on(pages.backup_detail)
async def restore_backup(p: Page) -> Response:
    source = await p.run(backups.get_backup, _backup_id(p))
    req = volumes.CreateVolume(
        p.values.get("compartment_id") or source.compartment_id,
        VolumeSource.BACKUP,
        source.id,
        availability_domain=p.values.get("availability_domain") or None,
        display_name=_text(p, "display_name"),
    )
    vol = await p.run(volumes.create_volume, req, _retry_token(p))
    return redirect(f"{PREFIX}/volumes/{vol.id}")


@_on(pages.backup_detail)
async def update_backup(p: Page) -> Response:
    req = backups.UpdateBackup(display_name=_text(p, "display_name"), freeform_tags=_tags(p))
    backup = await p.run(backups.update_backup, _backup_id(p), req, None)
    return redirect(f"{PREFIX}/backups/{backup.id}")


@_on(pages.backup_detail)
async def move_backup(p: Page) -> Response:
    backup_id = _backup_id(p)
    await p.run(backups.change_compartment, backup_id, p.values.get("compartment_id", ""), None)
    return redirect(f"{PREFIX}/backups/{backup_id}")


def _retention(p: Page) -> Retention:
    """The retention form: a period (blank: unchanged), the lock (can only be turned on),
    deletion prevention and legal hold (checkboxes: on or off)."""
    amount, unit = p.values.get("period_amount", "").strip(), p.values.get("period_unit", "DAYS")
    period = None
    if amount:
        if not amount.isdigit() or unit not in ("DAYS", "YEARS"):
            raise InvalidArgument("retentionPeriod: a whole number of DAYS or YEARS.")
        period = RetentionDuration(unit, int(amount))
    return Retention(
        period=period,
        lock=True if p.values.get("lock") == "on" else None,
        prevent_deletion=p.values.get("prevent_deletion") == "on",
        legal_hold=p.values.get("legal_hold") == "on",
    )


@_on(pages.backup_detail)
async def set_retention(p: Page) -> Response:
    req = backups.UpdateBackup(retention=_retention(p))
    backup = await p.run(backups.update_backup, _backup_id(p), req, None)
    return redirect(f"{PREFIX}/backups/{backup.id}")


@_on(pages.backup_detail)
async def delete_backup(p: Page) -> Response:
    backup_id = _backup_id(p)
    if p.values.get("confirm") != "yes":
        raise InvalidArgument("Confirm the deletion first.")
    await p.run(backups.delete_backup, backup_id, None)
    return redirect(f"{PREFIX}/backups/{backup_id}")
