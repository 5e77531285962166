"""The one table from domain errors to OCI's wire errors, and the error body renderer."""

from __future__ import annotations

import random

from starlette.responses import JSONResponse

from bootvault.domain import errors as d

# Order matters: subclasses before their bases.
ERROR_TABLE: list[tuple[type[d.BootVaultError], int, str]] = [
    (d.MissingArgument, 400, "InvalidParameter"),  # Core names missing fields InvalidParameter too
    (d.InvalidArgument, 400, "InvalidParameter"),
    (d.RelatedNotFound, 400, "RelatedResourceNotAuthorizedOrNotFound"),
    (d.LimitExceeded, 400, "LimitExceeded"),
    (d.Unauthenticated, 401, "NotAuthenticated"),
    (d.NotFound, 404, "NotAuthorizedOrNotFound"),
    (d.IncorrectState, 409, "IncorrectState"),
    (d.Conflict, 409, "Conflict"),
    (d.RetryTokenReused, 409, "InvalidatedRetryToken"),
    (d.EtagMismatch, 412, "NoEtagMatch"),
    (d.TooManyRequests, 429, "TooManyRequests"),
]


class WireError(Exception):
    """An error that exists only on the wire (unknown route, unparsable body)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def classify(exc: d.BootVaultError) -> tuple[int, str]:
    for cls, status, code in ERROR_TABLE:
        if isinstance(exc, cls):
            return status, code
    return 500, "InternalServerError"


_ids = random.Random()  # seeded from the OS once per process


def _segment() -> str:
    """32 random hex digits: an identifier, not a secret. Drawn without a system call: on the
    event loop os.urandom (uuid4) gives the GIL away and waits to get it back, three times a
    request."""
    return f"{_ids.getrandbits(128):032X}"


def request_id(client_id: str | None) -> str:
    """OCI answers the client's opc-request-id followed by two server segments."""
    base = client_id if client_id else _segment()
    return f"{base}/{_segment()}/{_segment()}"


def printable(text: str) -> str:
    """Text that encodes as UTF-8 whatever a client sent: a lone surrogate becomes a visible
    escape (messages quote what was refused, and a refusal must not fail to render)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def error_response(status: int, code: str, message: str, request_id: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": printable(message)},
        status_code=status,
        headers={"opc-request-id": request_id, "x-content-type-options": "nosniff"},
    )
