"""Region-to-region calls: how one region signs a call to a paired peer, and how the peer checks it.

Every peer pair shares a random 32-byte pairing secret (made by the inviting region, handed to the
joining one over the join call). From it, HKDF derives:
- the *link key*, an HMAC-SHA256 key that signs region protocol calls. Only the region protocol
  (`api/routes_regions.py`) accepts it: tenants' API calls need an OCI signature with an API key;
- per tenancy, the *transfer-id key*, a BLAKE3 key naming blocks on the wire (engine/xrc.py).

A signed call carries `x-bootvault-region` (the sender), `date`, `x-content-sha256` and
`authorization: BootvaultRegion <base64 HMAC>` over the method, path, sender, receiver, date and
body digest; the receiver refuses a date more than five minutes away. Bodies are binary or JSON.
Plain HTTP is refused for any endpoint that is not on loopback.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import ipaddress
import json
import ssl
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bootvault.domain.errors import BootVaultError, InvalidArgument

PREFIX = "/bootvault/region/v1"
SCHEME = "BootvaultRegion"
MAX_SKEW = timedelta(minutes=5)


class RegionUnreachable(BootVaultError):
    """A peer region did not answer (down, link cut, TLS refused)."""


class RegionRefused(BootVaultError):
    """A peer region answered with an error."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.body = status, body or {}


def derive(secret: bytes, purpose: str, context: str = "") -> bytes:
    info = b"bootvault-region/v1/" + purpose.encode() + b"/" + context.encode()
    return HKDF(algorithm=SHA256(), length=32, salt=None, info=info).derive(secret)


def check_endpoint(endpoint: str) -> str:
    """An endpoint a region may be reached at: https://host[:port], or http:// on loopback only."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise InvalidArgument(f"endpoint {endpoint!r} must be https://host[:port]")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise InvalidArgument(f"endpoint {endpoint!r}: plain HTTP is for loopback only; use https://")
    return f"{parts.scheme}://{parts.netloc}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def signing_string(method: str, path: str, sender: str, receiver: str, date: str, digest: str) -> bytes:
    return "\n".join((method.upper(), path, sender, receiver, date, digest)).encode()


def sign(key: bytes, method: str, path: str, sender: str, receiver: str, body: bytes) -> dict[str, str]:
    date = format_datetime(datetime.now(UTC), usegmt=True)
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    mac = hmac.new(key, signing_string(method, path, sender, receiver, date, digest), "sha256").digest()
    return {
        "x-bootvault-region": sender,
        "date": date,
        "x-content-sha256": digest,
        "authorization": f"{SCHEME} {base64.b64encode(mac).decode()}",
    }


def verify(key: bytes, method: str, path: str, receiver: str, headers: dict[str, str], body: bytes) -> bool:
    """True if the call was signed with `key` for this receiver, recently, over this body."""
    auth, date = headers.get("authorization", ""), headers.get("date", "")
    sender, digest = headers.get("x-bootvault-region", ""), headers.get("x-content-sha256", "")
    if not auth.startswith(SCHEME + " "):
        return False
    try:
        when = parsedate_to_datetime(date)
        mac = base64.b64decode(auth[len(SCHEME) + 1 :], validate=True)
    except (TypeError, ValueError):
        return False
    if when.tzinfo is None or abs(datetime.now(UTC) - when) > MAX_SKEW:
        return False
    if base64.b64encode(hashlib.sha256(body).digest()).decode() != digest:
        return False
    want = hmac.new(key, signing_string(method, path, sender, receiver, date, digest), "sha256").digest()
    return hmac.compare_digest(mac, want)


@dataclass
class Peer:
    """A paired region as this one reaches it."""

    name: str
    endpoint: str
    ca_pem: str | None
    secret: bytes = field(repr=False)

    @property
    def link_key(self) -> bytes:
        return derive(self.secret, "link")

    def transfer_key(self, tenancy_id: str) -> bytes:
        return derive(self.secret, "transfer-id", tenancy_id)


def _connection(endpoint: str, ca_pem: str | None, timeout: float) -> http.client.HTTPConnection:
    parts = urlsplit(endpoint)
    if parts.scheme == "https":
        context = ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl.create_default_context()
        return http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout, context=context)
    return http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)


def raw_call(
    endpoint: str,
    ca_pem: str | None,
    method: str,
    path: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
) -> tuple[int, bytes, dict[str, str]]:
    """One HTTP exchange; RegionUnreachable if it cannot happen."""
    conn = _connection(endpoint, ca_pem, timeout)
    try:
        conn.request(method, path, body=body, headers={"content-length": str(len(body)), **headers})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, data, {k.lower(): v for k, v in resp.getheaders()}
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        raise RegionUnreachable(f"{endpoint} did not answer: {type(exc).__name__}: {exc}") from None
    finally:
        conn.close()


def call(
    me: str,
    peer: Peer,
    method: str,
    path: str,
    body: bytes | dict[str, Any] = b"",
    *,
    timeout: float = 30.0,
    extra: dict[str, str] | None = None,
) -> tuple[bytes, dict[str, str]]:
    """A signed call to `peer`; the answer's body and headers, or RegionRefused/RegionUnreachable."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    full = PREFIX + path
    headers = sign(peer.link_key, method, full, me, peer.name, data)
    headers["content-type"] = "application/json" if isinstance(body, dict) else "application/octet-stream"
    headers.update(extra or {})
    status, answer, got = raw_call(peer.endpoint, peer.ca_pem, method, full, data, headers, timeout)
    if status >= 300:
        try:
            parsed = json.loads(answer)
        except ValueError:
            parsed = {}
        message = parsed.get("message") if isinstance(parsed, dict) else None
        raise RegionRefused(
            status, f"region {peer.name} answered {status}: {message or answer[:200]!r}", parsed
        )
    return answer, got


def call_json(
    me: str, peer: Peer, method: str, path: str, body: bytes | dict[str, Any] = b"", **kw: Any
) -> Any:
    answer, _ = call(me, peer, method, path, body, **kw)
    return json.loads(answer) if answer else None
