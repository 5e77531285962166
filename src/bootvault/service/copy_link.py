"""Cross-region copy: the destination as the source's COPY job sees it, in this process (a copy
to the same region) or across the link (service/regionlink.py); the ids of copies that must come
out the same on a retry; and the answer for a copy held by a peer."""

from __future__ import annotations

import hmac
import json
import struct
from array import array
from dataclasses import asdict
from typing import Any

from bootvault.domain import ocid
from bootvault.domain.errors import Conflict, InvalidArgument, NotFound, RelatedNotFound
from bootvault.domain.models import BootVolumeBackup
from bootvault.service import copy_dest, regions
from bootvault.service.context import Caller, Context
from bootvault.service.copy_dest import CopyOrder
from bootvault.service.regionlink import Peer, RegionRefused, RegionUnreachable, call


class Destination:
    """The destination's side of the copy protocol (service/copy_dest.py), local or remote."""

    def __init__(self, ctx: Context, peer: Peer | None) -> None:
        self.ctx, self.peer = ctx, peer

    @property
    def name(self) -> str:
        return self.peer.name if self.peer else self.ctx.settings.region

    def transfer_key(self, tenancy_id: str) -> bytes:
        if self.peer is None:
            return self.ctx.keys.derive("xrc-self/" + tenancy_id)
        return self.peer.transfer_key(tenancy_id)

    def _call(
        self, method: str, path: str, body: bytes | dict[str, Any], **kw: Any
    ) -> tuple[bytes, dict[str, Any]]:
        assert self.peer is not None
        kw.setdefault("timeout", self.ctx.settings.copy_call_timeout_seconds)
        return call(self.ctx.settings.region, self.peer, method, path, body, **kw)

    def create(self, order: CopyOrder) -> tuple[BootVolumeBackup | None, dict[str, Any] | None, str]:
        if self.peer is None:
            b = copy_dest.create(self.ctx, order)
            return b, None, b.etag
        answer, headers = self._call("POST", "/copies", asdict(order), timeout=15.0)
        return None, json.loads(answer), headers.get("etag", "")

    def get(
        self, backup_id: str, tenancy_id: str
    ) -> tuple[BootVolumeBackup | None, dict[str, Any] | None, str]:
        if self.peer is None:
            b = copy_dest.get(self.ctx, backup_id, tenancy_id)
            return b, None, b.etag
        answer, headers = self._call("GET", f"/copies/{backup_id}?tenancyId={tenancy_id}", b"", timeout=5.0)
        return None, json.loads(answer), headers.get("etag", "")

    def started(self, backup_id: str, tenancy_id: str, message: str) -> None:
        if self.peer is None:
            return copy_dest.started(self.ctx, backup_id, tenancy_id, message)
        self._call("POST", f"/copies/{backup_id}/started", {"tenancyId": tenancy_id, "message": message})

    def missing(self, backup_id: str, tenancy_id: str, tids: list[bytes]) -> list[bytes]:
        if self.peer is None:
            return copy_dest.missing(self.ctx, backup_id, tenancy_id, tids)
        answer, _ = self._call("POST", f"/copies/{backup_id}/missing?tenancyId={tenancy_id}", b"".join(tids))
        return [answer[i : i + 32] for i in range(0, len(answer), 32)]

    def blocks(self, backup_id: str, tenancy_id: str, body: bytes, percent: float) -> None:
        if self.peer is None:
            copy_dest.receive(self.ctx, backup_id, tenancy_id, self.transfer_key(tenancy_id), body, percent)
            return
        path = f"/copies/{backup_id}/blocks?tenancyId={tenancy_id}&percent={percent:.1f}"
        self._call("POST", path, body)

    def commit(
        self, backup_id: str, tenancy_id: str, header: dict[str, Any], indices: array[int], tids: list[bytes]
    ) -> list[bytes]:
        if self.peer is None:
            return copy_dest.commit(self.ctx, backup_id, tenancy_id, header, list(indices), tids)
        head = json.dumps(header).encode()
        body = struct.pack(">I", len(head)) + head + _le(indices) + b"".join(tids)
        answer, _ = self._call(
            "POST", f"/copies/{backup_id}/commit?tenancyId={tenancy_id}", body, timeout=120.0
        )
        return [answer[i : i + 32] for i in range(0, len(answer), 32)]

    def fail(self, backup_id: str, tenancy_id: str, reason: str) -> None:
        if self.peer is None:
            return copy_dest.fail(self.ctx, backup_id, tenancy_id, reason)
        self._call(
            "POST", f"/copies/{backup_id}/fail", {"tenancyId": tenancy_id, "reason": reason}, timeout=10.0
        )


def _le(indices: array[int]) -> bytes:
    out = array("Q", indices)
    if struct.pack("=H", 1) != struct.pack("<H", 1):
        out.byteswap()
    return out.tobytes()


def destination(ctx: Context, region: str) -> Destination:
    if region == ctx.settings.region:
        return Destination(ctx, None)
    peer = regions.peer(ctx, region)
    if peer is None:
        known = [p.name for p in regions.peers(ctx)] + [ctx.settings.region]
        raise InvalidArgument(
            f"destinationRegion {region!r} is not a region paired with {ctx.settings.region} "
            f"(known: {', '.join(sorted(known))})."
        )
    return Destination(ctx, peer)


def relay(exc: Exception, region: str) -> Exception:
    """A destination's refusal as the caller's error (its message kept); an outage as 409."""
    if isinstance(exc, RegionRefused):
        message = str(exc.body.get("message") or exc.message)
        if exc.status == 404 or exc.body.get("code") == "RelatedResourceNotAuthorizedOrNotFound":
            return RelatedNotFound(message)
        if exc.status == 400:
            return InvalidArgument(message)
        return Conflict(f"destination region {region} refused the copy: {message}")
    return Conflict(f"destination region {region} is unreachable; nothing was copied: {exc}")


def derived_ocid(ctx: Context, resource_type: str, region: str, seed: str) -> str:
    """An OCID whose unique part is an HMAC of `seed` (same seed, same OCID), shaped as minted."""
    digest = hmac.new(ctx.keys.derive("copy-ids"), f"{resource_type}/{seed}".encode(), "sha512").digest()
    n, digits = int.from_bytes(digest, "big"), []
    for _ in range(60):
        n, d = divmod(n, 36)
        digits.append("abcdefghijklmnopqrstuvwxyz0123456789"[d])
    return f"ocid1.{resource_type}.{ocid.REALM}.{region}.aaaaaaaa{''.join(digits)}"


def peer_backup(ctx: Context, caller: Caller, backup_id: str) -> tuple[dict[str, Any], str]:
    """A copy this region made into a paired region, as that region shows it: the CLI with
    --endpoint and the SDK's copy_..._and_wait_for_state poll the source region for it."""
    parts = backup_id.split(".")
    region = parts[3] if len(parts) == 5 else ""
    peer = regions.peer(ctx, region) if region and region != ctx.settings.region else None
    if peer is None:
        raise NotFound()
    try:
        _, wire, etag = Destination(ctx, peer).get(backup_id, caller.tenancy_id)
    except (RegionRefused, RegionUnreachable):
        raise NotFound() from None
    assert wire is not None
    return wire, etag
