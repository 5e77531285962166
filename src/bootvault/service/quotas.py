"""Per-tenancy quotas: one tenancy cannot exhaust the service for the others. Checked inside the
create's transaction, with the tenancy's row locked on PostgreSQL, so concurrent creates cannot
both slip under a limit."""

from __future__ import annotations

from sqlalchemy import Connection

from bootvault.domain.errors import LimitExceeded
from bootvault.service.context import Context
from bootvault.store import backups, identity, volumes


def check_volumes(ctx: Context, conn: Connection, tenancy_id: str, *, new: int, added_gbs: int) -> None:
    """A create (new=1) or a grow (new=0) may add added_gbs GB to the tenancy's volumes."""
    identity.lock_tenancy(conn, tenancy_id)
    count, gbs = volumes.usage(conn, tenancy_id)
    limits = ctx.settings
    if new and count + new > limits.quota_volumes:
        raise LimitExceeded(f"The tenancy's limit of {limits.quota_volumes} boot volumes is reached.")
    if gbs + added_gbs > limits.quota_volume_gbs:
        raise LimitExceeded(
            f"The tenancy's boot volumes would total {gbs + added_gbs} GB, over its limit of "
            f"{limits.quota_volume_gbs} GB."
        )


def check_backups(ctx: Context, conn: Connection, tenancy_id: str) -> None:
    identity.lock_tenancy(conn, tenancy_id)
    if backups.count_live(conn, tenancy_id) + 1 > ctx.settings.quota_backups:
        raise LimitExceeded(
            f"The tenancy's limit of {ctx.settings.quota_backups} boot volume backups is reached."
        )
