"""Peer regions, one-time invites, the destination's transfer-id map, and the identity snapshot
that paired regions exchange (tenancies, users, API keys, compartments: identity is global)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, exists, func, insert, select

from bootvault.domain.models import BackupState
from bootvault.store.common import now
from bootvault.store.tables import (
    api_keys,
    boot_volume_backups,
    boot_volumes,
    compartments,
    region_invites,
    region_peers,
    tenancies,
    users,
    volume_backup_policies,
    volume_backup_policy_assignments,
    work_requests,
    xrc_blocks,
)


def add_invite(conn: Connection, code_hash: str, expires_at: datetime) -> None:
    conn.execute(
        insert(region_invites).values(code_hash=code_hash, expires_at=expires_at, time_created=now())
    )


def take_invite(conn: Connection, code_hash: str) -> bool:
    """Use an invite once: True if it existed and had not expired (it is gone either way)."""
    row = conn.execute(select(region_invites).where(region_invites.c.code_hash == code_hash)).first()
    conn.execute(delete(region_invites).where(region_invites.c.code_hash == code_hash))
    return row is not None and row.expires_at > now()


def upsert_peer(
    conn: Connection, name: str, endpoint: str, ca_pem: str | None, secret_wrapped: bytes
) -> None:
    conn.execute(delete(region_peers).where(region_peers.c.name == name))
    conn.execute(
        insert(region_peers).values(
            name=name, endpoint=endpoint, ca_pem=ca_pem, secret_wrapped=secret_wrapped, time_created=now()
        )
    )


def peers(conn: Connection) -> list[Any]:
    return list(conn.execute(select(region_peers).order_by(region_peers.c.name)))


def peer(conn: Connection, name: str) -> Any | None:
    return conn.execute(select(region_peers).where(region_peers.c.name == name)).first()


# Identity snapshot: rows as JSON-able dicts, applied with insert-if-absent (ids are global).
IDENTITY_TABLES = {"tenancies": tenancies, "users": users, "compartments": compartments, "api_keys": api_keys}
_KEYS = {
    "tenancies": ("id",),
    "users": ("id",),
    "compartments": ("id",),
    "api_keys": ("user_id", "fingerprint"),
}


def identity_snapshot(conn: Connection) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for name, table in IDENTITY_TABLES.items():
        rows = conn.execute(select(table)).mappings()
        out[name] = [
            {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in r.items()} for r in rows
        ]
    return out


def apply_identity(conn: Connection, snapshot: dict[str, list[dict[str, Any]]]) -> int:
    """Insert the rows this region lacks; returns how many. Existing rows are left as they are."""
    added = 0
    for name in ("tenancies", "users", "compartments", "api_keys"):  # parents first
        table, keys = IDENTITY_TABLES[name], _KEYS[name]
        for row in snapshot.get(name, []):
            where = [table.c[k] == row[k] for k in keys]
            if conn.execute(select(table.c[keys[0]]).where(*where)).first() is not None:
                continue
            values = {c.name: row.get(c.name) for c in table.columns}
            values["time_created"] = datetime.fromisoformat(str(values["time_created"]))
            conn.execute(insert(table).values(**values))
            added += 1
    return added


def known_transfers(conn: Connection, scope: str, transfer_ids: list[str]) -> dict[str, str]:
    """transfer id -> local block id (hex) for those of `transfer_ids` this scope has received."""
    found: dict[str, str] = {}
    for start in range(0, len(transfer_ids), 500):
        chunk = transfer_ids[start : start + 500]
        stmt = select(xrc_blocks.c.transfer_id, xrc_blocks.c.block_id).where(
            xrc_blocks.c.scope == scope, xrc_blocks.c.transfer_id.in_(chunk)
        )
        found.update({r.transfer_id: r.block_id for r in conn.execute(stmt)})
    return found


def remember_transfers(conn: Connection, scope: str, pairs: list[tuple[str, str]]) -> None:
    """Record (transfer id, local block id) pairs; a transfer id already known is replaced."""
    if not pairs:
        return
    ids = [t for t, _ in pairs]
    for start in range(0, len(ids), 500):
        conn.execute(
            delete(xrc_blocks).where(
                xrc_blocks.c.scope == scope, xrc_blocks.c.transfer_id.in_(ids[start : start + 500])
            )
        )
    conn.execute(insert(xrc_blocks), [{"scope": scope, "transfer_id": t, "block_id": b} for t, b in pairs])


def policy_copies_due(
    conn: Connection, since: datetime, limit: int = 100
) -> list[tuple[str, str, str | None]]:
    """(backup id, destination region, xrc kms key id) of scheduled backups made since `since`,
    AVAILABLE, whose volume's policy names a destinationRegion, and that have no copy yet."""
    b, a, p, w = boot_volume_backups, volume_backup_policy_assignments, volume_backup_policies, work_requests
    v = boot_volumes
    copied = exists().where(w.c.source_id == b.c.id, w.c.operation_type == "CopyBootVolumeBackup")
    stmt = (
        select(b.c.id, p.c.destination_region, func.coalesce(a.c.xrc_kms_key_id, v.c.xrc_kms_key_id))
        .join(a, a.c.asset_id == b.c.boot_volume_id)
        .join(v, v.c.id == b.c.boot_volume_id)
        .join(p, p.c.id == a.c.policy_id)
        .where(
            b.c.source_type == "SCHEDULED",
            b.c.lifecycle_state == BackupState.AVAILABLE.value,
            b.c.source_boot_volume_backup_id.is_(None),
            b.c.time_created >= since,
            p.c.destination_region.is_not(None),
            ~copied,
        )
        .limit(limit)
    )
    return [(r[0], r[1], r[2]) for r in conn.execute(stmt)]
