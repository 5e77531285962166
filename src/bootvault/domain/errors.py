"""Domain errors. They carry no HTTP knowledge; api/errors.py maps each class to an OCI code."""

from __future__ import annotations


class BootVaultError(Exception):
    """Base of every error a use case raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(BootVaultError):
    """A request field is malformed or out of range. The message names the field."""


class MissingArgument(InvalidArgument):
    """A required request field is absent."""


class NotFound(BootVaultError):
    """The resource named in the request path does not exist or belongs to another tenancy."""

    def __init__(self, message: str = "Authorization failed or requested resource not found.") -> None:
        super().__init__(message)


class RelatedNotFound(BootVaultError):
    """A resource named in the request body does not exist or belongs to another tenancy."""


class IncorrectState(BootVaultError):
    """The resource is in a state that forbids the operation now; it will clear by itself."""


class Conflict(BootVaultError):
    """A state conflict that will not clear by waiting."""


class RetryTokenReused(BootVaultError):
    """An opc-retry-token was already used for a different request."""


class EtagMismatch(BootVaultError):
    """The if-match value does not match the resource's current etag."""

    IF_MATCH = "The if-match value does not match the current etag of the resource."
    CHANGED = "The resource changed while it was being updated; fetch it and retry."


class Unauthenticated(BootVaultError):
    """The request signature or credentials are missing or invalid."""


class LimitExceeded(BootVaultError):
    """A service limit would be exceeded."""


class TooManyRequests(BootVaultError):
    """Too many attempts (console sign-in) within the rate limit's window."""
