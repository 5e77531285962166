"""Opaque, tamper-proof page tokens. A token seals the whole query (filters, sort) and the
position after the last item returned, under a key derived from the deployment's master key, so
every API process reads every other's tokens. A client may send `page` alone and gets the next
page of the original query; a token sent with a different query, issued to another tenancy or
for another operation, or forged, answers 400 InvalidParameter."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime
from typing import Any

from bootvault.domain.errors import InvalidArgument
from bootvault.engine import envelope

MAGIC = b"BVPT\x01"
Position = tuple[Any, str]  # (sort value, id) of the last item returned


class PageTokens:
    def __init__(self, key: bytes) -> None:
        self.key = key

    def seal(self, operation: str, tenancy_id: str, query: dict[str, Any], position: Position) -> str:
        value, ident = position
        kind = "t" if isinstance(value, datetime) else "s"
        plain = json.dumps({"q": query, "p": [kind, value.isoformat() if kind == "t" else value, ident]})
        blob = envelope.seal(self.key, MAGIC, _binding(operation, tenancy_id), plain.encode())
        return base64.urlsafe_b64encode(blob).decode().rstrip("=")

    def open(self, token: str, operation: str, tenancy_id: str) -> tuple[dict[str, Any], Position]:
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body = json.loads(envelope.open_sealed(self.key, MAGIC, _binding(operation, tenancy_id), blob))
            kind, value, ident = body["p"]
            return body["q"], (datetime.fromisoformat(value) if kind == "t" else str(value), str(ident))
        except (binascii.Error, ValueError, KeyError, TypeError, envelope.InvalidEnvelope):
            raise InvalidArgument(
                "page is invalid: not a page token this service issued for this list."
            ) from None


def _binding(operation: str, tenancy_id: str) -> bytes:
    return f"{operation}\n{tenancy_id}".encode()


def resume(
    tokens: PageTokens, operation: str, tenancy_id: str, page: str | None, query: dict[str, Any]
) -> tuple[dict[str, Any], Position | None]:
    """The query to run and where to start. With a token, every parameter the client sent again
    must equal the one sealed in it; the ones it left out come from the token."""
    if not page:
        return query, None
    sealed, position = tokens.open(page, operation, tenancy_id)
    for name, value in query.items():
        if value is not None and sealed.get(name) != value:
            raise InvalidArgument(
                f"page is invalid for this query: it was issued with {name}={sealed.get(name)!r}, "
                f"not {value!r}."
            )
    return sealed, position
