"""Storage interface for write-once objects (chunks, packs, manifests)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


class BlobStoreError(Exception):
    """Any failure of the object store. A plain BlobStoreError may be transient (network, 5xx)."""


class PermanentStoreError(BlobStoreError):
    """A failure a retry cannot fix: missing bucket, rejected credentials, access denied, missing object."""


class ObjectNotFound(PermanentStoreError):
    """The named object does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"object not found: {name}")
        self.name = name


@dataclass(frozen=True)
class StoreProperties:
    """What a backend can do, so callers never have to check its type."""

    max_connections: int  # how many requests in flight at once are still useful
    atomic_replace: bool = True  # put() over an existing name: readers see the old or the new object


@runtime_checkable
class BlobStore(Protocol):
    """Flat namespace of '/'-separated names mapping to immutable byte strings.

    Every method may be called from several threads at once.
    """

    properties: StoreProperties

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        """Store atomically: readers see either nothing (or the previous object) or the whole object."""
        ...

    def get(self, name: str) -> bytes:
        """Return the object's bytes; raise ObjectNotFound if absent."""
        ...

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        """Return bytes [offset, offset + length) of the object; raise ObjectNotFound if absent.

        A range reaching past the end returns only the bytes that exist: shorter, or b"" when offset
        is at or beyond the end. Negative offset or length raise ValueError.
        """
        ...

    def size(self, name: str) -> int:
        """Return the object's length in bytes; raise ObjectNotFound if absent."""
        ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def retain_until(self, name: str, until: datetime) -> bool:
        """Make the store itself refuse to delete the object before `until` (never shortening a
        date already set); False when the store cannot (no Object Lock)."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Yield the full name of every object starting with prefix (a plain string prefix; any order)."""
        ...


TMP_PREFIX = ".tmp-"


def check_name(name: str) -> list[str]:
    """Validate an object name and return its components; raise ValueError if unsafe."""
    if not isinstance(name, str) or not name:
        raise ValueError("object name must be a non-empty string")
    if name.startswith("/") or "\\" in name or "\0" in name:
        raise ValueError(f"invalid object name: {name!r}")
    parts = name.split("/")
    for part in parts:
        if part in ("", ".", "..") or part.startswith(TMP_PREFIX):
            raise ValueError(f"invalid object name: {name!r}")
    return parts


def check_prefix(prefix: str) -> str:
    """Validate a list() prefix (a string prefix of valid names, '' for all); raise ValueError if unsafe."""
    if not isinstance(prefix, str) or prefix.startswith("/") or ".." in prefix.split("/"):
        raise ValueError(f"invalid prefix: {prefix!r}")
    return prefix


def check_range(offset: int, length: int) -> None:
    if offset < 0 or length < 0:
        raise ValueError(f"invalid range: offset={offset} length={length}")
