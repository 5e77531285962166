"""Requests exactly as given, byte for byte: a raw socket, signed (or not) by the oci SDK's own
signer. For hostile input that requests/urllib3 would normalise or refuse to send."""

from __future__ import annotations

import http.client
import json
import socket
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import oci
from oci._vendor.requests.structures import CaseInsensitiveDict

from tests.helpers import Tenant


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _ToSign:
    """What the SDK signer reads of a requests.PreparedRequest."""

    method: str
    url: str
    path_url: str
    body: bytes | None
    headers: CaseInsensitiveDict = field(default_factory=CaseInsensitiveDict)


class RawClient:
    """One tenant's signing key against one endpoint; every call is a fresh connection."""

    def __init__(self, tenant: Tenant, timeout: float = 30.0) -> None:
        cfg = tenant.config
        self.signer = oci.signer.Signer(cfg["tenancy"], cfg["user"], cfg["fingerprint"], cfg["key_file"])
        self.endpoint = tenant.endpoint
        url = urlparse(tenant.endpoint)
        self.host, self.port = url.hostname or "127.0.0.1", url.port or 80
        self.timeout = timeout

    def signed_headers(
        self, method: str, target: str, body: bytes | None, headers: dict[str, str] | None = None
    ) -> dict[str, str]:
        """The headers the SDK would send for `target` (path and query as they go on the wire)."""
        # The SDK signs only the verbs it sends; any other is signed as a GET (so it fails auth).
        verb = (
            method.upper() if method.upper() in ("GET", "HEAD", "DELETE", "PUT", "POST", "PATCH") else "GET"
        )
        req = _ToSign(verb, self.endpoint + target, target, body)
        req.headers.update({"accept": "application/json", **(headers or {})})
        if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
            req.headers.setdefault("content-type", "application/json")
            req.headers.setdefault("content-length", str(len(body or b"")))
        self.signer(req)
        return dict(req.headers)

    def request(
        self,
        method: str,
        target: str | bytes,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        *,
        sign: bool = True,
        extra: list[tuple[str, str]] | None = None,
    ) -> RawResponse:
        """Send `target` (already encoded; bytes for raw non-ASCII) as is. `extra` headers go
        after the signed ones, unsigned (so a name may appear twice)."""
        if sign:
            # A target with raw non-ASCII bytes cannot be signed (the signing string is ASCII):
            # sign a spelling of it that the server will not match, so it answers 401.
            text_target = target if isinstance(target, str) else target.decode("ascii", "replace")
            hdrs = self.signed_headers(method, text_target.encode("ascii", "replace").decode(), body, headers)
        else:
            hdrs = {"host": f"{self.host}:{self.port}", **(headers or {})}
            if body is not None:
                hdrs.setdefault("content-length", str(len(body)))
        raw_target = target.encode("latin-1") if isinstance(target, str) else target
        lines = [method.upper().encode() + b" " + raw_target + b" HTTP/1.1"]
        for name, value in [*hdrs.items(), *(extra or []), ("connection", "close")]:
            lines.append(f"{name}: {value}".encode("latin-1"))
        data = b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")
        with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
            sock.sendall(data)
            resp = http.client.HTTPResponse(sock, method=method.upper())
            resp.begin()
            payload = resp.read()
            return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, payload)

    def call(
        self,
        method: str,
        target: str,
        document: Any = None,
        headers: dict[str, str] | None = None,
    ) -> RawResponse:
        """A signed call with a JSON body (None: no body)."""
        body = None if document is None else json.dumps(document).encode()
        return self.request(method, "/20160918" + target, body, headers)
