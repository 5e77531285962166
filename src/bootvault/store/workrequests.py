"""Work request rows (OCI's /workRequests): status, progress, resources, errors and log lines."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from bootvault.domain import ocid
from bootvault.domain.models import WorkRequest
from bootvault.store.common import now
from bootvault.store.tables import work_requests as t

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED")


def _from_row(row: Any) -> WorkRequest:
    return WorkRequest(**{c.name: getattr(row, c.name) for c in t.columns})


def insert_wr(conn: Connection, wr: WorkRequest) -> None:
    conn.execute(insert(t).values(**{**wr.__dict__, "time_updated": wr.time_updated or now()}))


def get_wr(conn: Connection, wr_id: str) -> WorkRequest | None:
    row = conn.execute(select(t).where(t.c.id == wr_id)).first()
    return None if row is None else _from_row(row)


def update_wr(conn: Connection, wr_id: str, values: dict[str, Any]) -> None:
    conn.execute(update(t).where(t.c.id == wr_id).values(**values, time_updated=now()))


def log_line(conn: Connection, wr_id: str, message: str) -> None:
    wr = get_wr(conn, wr_id)
    if wr is not None:
        entry = {"message": message, "timestamp": now().isoformat()}
        update_wr(conn, wr_id, {"logs": [*wr.logs, entry][-200:]})


def progress(conn: Connection, wr_id: str, percent: float, message: str | None = None) -> None:
    """IN_PROGRESS at `percent` (started now if it had not), unless it has already ended."""
    wr = get_wr(conn, wr_id)
    if wr is None or wr.status in TERMINAL:
        return
    values: dict[str, Any] = {"status": "IN_PROGRESS", "percent_complete": float(percent)}
    if wr.time_started is None:
        values["time_started"] = now()
    update_wr(conn, wr_id, values)
    if message:
        log_line(conn, wr_id, message)


def finish(conn: Connection, wr_id: str, status: str, error: str | None = None) -> None:
    wr = get_wr(conn, wr_id)
    if wr is None or wr.status in TERMINAL:
        return
    ts = now()
    values: dict[str, Any] = {"status": status, "time_finished": ts, "time_started": wr.time_started or ts}
    if status == "SUCCEEDED":
        values["percent_complete"] = 100.0
    if error:
        values["errors"] = [
            *wr.errors,
            {"code": "InternalError", "message": error, "timestamp": ts.isoformat()},
        ]
    update_wr(conn, wr_id, values)
    log_line(conn, wr_id, f"work request {status.lower()}" + (f": {error}" if error else ""))


def by_target(conn: Connection, target_id: str) -> list[WorkRequest]:
    return [_from_row(r) for r in conn.execute(select(t).where(t.c.target_id == target_id))]


def active_copies_of(conn: Connection, source_id: str) -> list[WorkRequest]:
    stmt = select(t).where(
        t.c.source_id == source_id, t.c.status.not_in(TERMINAL), t.c.operation_type == "CopyBootVolumeBackup"
    )
    return [_from_row(r) for r in conn.execute(stmt)]


def list_wrs(
    conn: Connection,
    tenancy_id: str,
    compartment_id: str,
    resource_id: str | None,
    limit: int,
    after: str | None,
) -> list[WorkRequest]:
    stmt = select(t).where(t.c.tenancy_id == tenancy_id, t.c.compartment_id == compartment_id)
    if after is not None:
        stmt = stmt.where(t.c.id > after)
    rows = [_from_row(r) for r in conn.execute(stmt.order_by(t.c.id))]
    if resource_id is not None:
        rows = [
            w
            for w in rows
            if any(r.get("identifier") == resource_id for r in w.resources) or w.source_id == resource_id
        ]
    return rows[:limit]


def stalled_incoming(conn: Connection, region: str, before: datetime) -> list[WorkRequest]:
    """Copies into `region` from another region, not ended, with no progress since `before`."""
    stmt = select(t).where(
        t.c.destination_region == region,
        t.c.source_region != region,
        t.c.status.not_in(TERMINAL),
        t.c.time_updated < before,
    )
    return [_from_row(r) for r in conn.execute(stmt)]


ENTITY_URI = {"bootVolumeBackup": "/20160918/bootVolumeBackups/", "bootVolume": "/20160918/bootVolumes/"}


def open_for_job(
    conn: Connection,
    region: str,
    tenancy_id: str,
    compartment_id: str,
    operation: str,
    entity_type: str,
    resource_id: str,
    action: str,
) -> str:
    """The work request of an API call whose job does the work (it follows the job: see follow)."""
    wr_id = ocid.mint("coreservicesworkrequest", region)
    resource = {
        "entityType": entity_type,
        "actionType": action,
        "identifier": resource_id,
        "entityUri": ENTITY_URI[entity_type] + resource_id,
    }
    insert_wr(
        conn,
        WorkRequest(
            id=wr_id,
            tenancy_id=tenancy_id,
            compartment_id=compartment_id,
            operation_type=operation,
            status="ACCEPTED",
            percent_complete=0.0,
            time_accepted=now(),
            resources=[resource],
            target_id=resource_id,
        ),
    )
    return wr_id


def follow(conn: Connection, resource_id: str, state: str | None, error: str | None = None) -> None:
    """Move the open work requests of a job's resource (copies excepted: their job writes them):
    state None = started; SUCCEEDED / FAILED = ended."""
    stmt = select(t.c.id).where(
        t.c.target_id == resource_id,
        t.c.status.not_in(TERMINAL),
        t.c.operation_type != "CopyBootVolumeBackup",
    )
    for (wr_id,) in conn.execute(stmt).all():
        if state is None:
            progress(conn, wr_id, 0.0)
        else:
            finish(conn, wr_id, state, error)
