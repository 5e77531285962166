"""Regions: this deployment's peers, pairing them (invite / join), and keeping identity global.

Pairing, as the operator runs it (docs/regions.md):
- `region invite` on A stores the sha256 of a random one-time code (valid an hour) and prints a
  token: base64url JSON of A's name, endpoint, CA (when A serves HTTPS with the demo CA or a CA
  file given) and the code.
- `region join TOKEN` on B calls A's join endpoint (TLS checked against the CA in the token) with
  the code and B's name, endpoint and CA. A checks and deletes the invite, makes the pairing
  secret, records B, and answers the secret and its identity snapshot; B records A and applies
  the snapshot, then pushes its own snapshot to A. Both ways are paired by the one command.
- Identity is global: every change (tenancy, user, API key, compartment) queues an IDENTITY_SYNC
  job per peer, which pushes the whole snapshot (rows are inserted where missing; ids are global).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

from bootvault.domain.errors import InvalidArgument, NotFound
from bootvault.domain.models import JobKind
from bootvault.engine import envelope
from bootvault.service.context import Context
from bootvault.service.regionlink import PREFIX, Peer, RegionRefused, call_json, check_endpoint, raw_call
from bootvault.store import jobs
from bootvault.store import regions as repo
from bootvault.store.common import now

INVITE_SECONDS = 3600
_WRAP = b"BVRS\x01"


def _wrap_key(ctx: Context) -> bytes:
    return ctx.keys.derive("region-secrets")


def _load(ctx: Context, row: Any) -> Peer:
    secret = envelope.open_sealed(_wrap_key(ctx), _WRAP, row.name.encode(), row.secret_wrapped)
    return Peer(row.name, row.endpoint, row.ca_pem, secret)


def peers(ctx: Context) -> list[Peer]:
    with ctx.db.read() as conn:
        return [_load(ctx, r) for r in repo.peers(conn)]


def peer(ctx: Context, name: str) -> Peer | None:
    with ctx.db.read() as conn:
        row = repo.peer(conn, name)
    return None if row is None else _load(ctx, row)


def _record_peer(ctx: Context, conn: Any, p: Peer) -> None:
    if p.name == ctx.settings.region:
        raise InvalidArgument(f"region {p.name} is this region: a region cannot pair with itself")
    wrapped = envelope.seal(_wrap_key(ctx), _WRAP, p.name.encode(), p.secret)
    repo.upsert_peer(conn, p.name, p.endpoint, p.ca_pem, wrapped)


def _own_ca(ctx: Context, ca_file: str | None) -> str | None:
    """The CA a peer should trust for this region: the file given, else the demo CA if present."""
    if ca_file:
        return open(ca_file).read()
    demo = ctx.settings.data_dir / "tls" / "ca.pem"
    return demo.read_text() if demo.exists() else None


def invite(ctx: Context, endpoint: str, ca_file: str | None = None) -> str:
    """A one-time token another region joins with."""
    endpoint = check_endpoint(endpoint)
    code = secrets.token_urlsafe(24)
    with ctx.db.write() as conn:
        repo.add_invite(
            conn, hashlib.sha256(code.encode()).hexdigest(), now() + timedelta(seconds=INVITE_SECONDS)
        )
    token = {"region": ctx.settings.region, "endpoint": endpoint, "ca": _own_ca(ctx, ca_file), "code": code}
    return base64.urlsafe_b64encode(json.dumps(token).encode()).decode()


def _parse_token(token: str) -> dict[str, Any]:
    try:
        parsed = json.loads(base64.urlsafe_b64decode(token.strip().encode()))
        if not all(isinstance(parsed.get(k), str) for k in ("region", "endpoint", "code")):
            raise ValueError("fields missing")
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"the token is not a bootvault region invite ({exc})") from None
    invite: dict[str, Any] = parsed
    return invite


def join(ctx: Context, endpoint: str, token: str, ca_file: str | None = None) -> str:
    """Pair with the region that made `token` (it must be serving); returns its name."""
    endpoint = check_endpoint(endpoint)
    inv = _parse_token(token)
    their_endpoint = check_endpoint(inv["endpoint"])
    with ctx.db.read() as conn:
        mine = repo.identity_snapshot(conn)
    body = {
        "code": inv["code"],
        "region": ctx.settings.region,
        "endpoint": endpoint,
        "ca": _own_ca(ctx, ca_file),
        "identity": mine,
    }
    data = json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    status, answer, _ = raw_call(their_endpoint, inv.get("ca"), "POST", PREFIX + "/join", data, headers, 30.0)
    if status != 200:
        raise RegionRefused(status, f"region {inv['region']} refused to pair: {answer[:300]!r}")
    reply = json.loads(answer)
    if reply.get("region") != inv["region"]:
        raise RegionRefused(
            status, f"the invite names {inv['region']} but the endpoint is {reply.get('region')}"
        )
    p = Peer(inv["region"], their_endpoint, inv.get("ca"), base64.b64decode(reply["secret"]))
    with ctx.db.write() as conn:
        _record_peer(ctx, conn, p)
        repo.apply_identity(conn, reply.get("identity", {}))
    return p.name


def accept_join(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """The inviting side of join: check the one-time code, record the new peer, answer the secret."""
    code = body.get("code")
    if not isinstance(code, str):
        raise NotFound()
    name, endpoint = body.get("region"), body.get("endpoint")
    if not isinstance(name, str) or not isinstance(endpoint, str):
        raise InvalidArgument("region and endpoint are required")
    p = Peer(name, check_endpoint(endpoint), body.get("ca"), secrets.token_bytes(32))
    with ctx.db.write() as conn:
        if not repo.take_invite(conn, hashlib.sha256(code.encode()).hexdigest()):
            raise NotFound("The invite is unknown, used or expired.")
        _record_peer(ctx, conn, p)
        repo.apply_identity(conn, body.get("identity") or {})
        mine = repo.identity_snapshot(conn)
    return {"region": ctx.settings.region, "secret": base64.b64encode(p.secret).decode(), "identity": mine}


def queue_identity_sync(ctx: Context, conn: Any) -> None:
    """After an identity change: push the snapshot to every peer (one job per peer, own lane)."""
    for row in repo.peers(conn):
        jobs.enqueue(conn, JobKind.IDENTITY_SYNC, "", row.name, lane=f"identity-sync:{row.name}")


def push_identity(ctx: Context, peer_name: str) -> int:
    """Send the identity snapshot to one peer; returns how many rows it lacked."""
    p = peer(ctx, peer_name)
    if p is None:
        return 0
    with ctx.db.read() as conn:
        snapshot = repo.identity_snapshot(conn)
    answer = call_json(ctx.settings.region, p, "POST", "/identity", {"identity": snapshot})
    return int(answer.get("added", 0))


def apply_identity(ctx: Context, body: dict[str, Any]) -> int:
    with ctx.db.write() as conn:
        return repo.apply_identity(conn, body.get("identity") or {})
