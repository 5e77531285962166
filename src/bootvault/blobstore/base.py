"""Storage interface for write-once objects (chunks, manifests)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable


class BlobStoreError(Exception):
    """Any failure of the object store."""


class ObjectNotFound(BlobStoreError):
    """The named object does not exist."""

    def __init__(self, name: str) -> None:
        super().__init__(f"object not found: {name}")
        self.name = name


@runtime_checkable
class BlobStore(Protocol):
    """Flat namespace of '/'-separated names mapping to immutable byte strings."""

    def put(self, name: str, data: bytes | memoryview) -> None:
        """Store atomically: readers see either nothing or the whole object."""
        ...

    def get(self, name: str) -> bytes:
        """Return the object's bytes; raise ObjectNotFound if absent."""
        ...

    def exists(self, name: str) -> bool: ...

    def delete(self, name: str) -> None:
        """Remove the object; a missing object is not an error."""
        ...

    def list(self, prefix: str) -> Iterator[str]:
        """Yield every name starting with prefix (order unspecified)."""
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
