"""Work requests as callers read them: one, its errors and logs, and lists by compartment and
resource. A copy's work request is in both regions under one id (service/copy.py)."""

from __future__ import annotations

from bootvault.domain.errors import NotFound
from bootvault.domain.models import WorkRequest
from bootvault.service import pagetokens
from bootvault.service.context import Caller, Context
from bootvault.service.identity import require_compartment
from bootvault.store import workrequests as repo

MAX_PAGE = 1000
OP = "ListWorkRequests"


def get(ctx: Context, caller: Caller, wr_id: str) -> WorkRequest:
    with ctx.db.read() as conn:
        wr = repo.get_wr(conn, wr_id)
    if wr is None or wr.tenancy_id != caller.tenancy_id:
        raise NotFound()
    return wr


def list_(
    ctx: Context, caller: Caller, compartment_id: str, resource_id: str | None, limit: int, page: str | None
) -> tuple[list[WorkRequest], str | None]:
    asked = {"compartmentId": compartment_id or None, "resourceId": resource_id}
    query, after = pagetokens.resume(ctx.page_tokens, OP, caller.tenancy_id, page, asked)
    with ctx.db.read() as conn:
        require_compartment(conn, caller, query["compartmentId"], in_body=False)
        items = repo.list_wrs(
            conn,
            caller.tenancy_id,
            query["compartmentId"],
            query["resourceId"],
            limit + 1,
            after[1] if after else None,
        )
    token = None
    if len(items) > limit:
        items = items[:limit]
        token = ctx.page_tokens.seal(OP, caller.tenancy_id, query, ("", items[-1].id))
    return items, token
