"""Object storage backends for bootvault (write-once blobs)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from bootvault.blobstore.base import (
    BlobStore,
    BlobStoreError,
    ObjectNotFound,
    PermanentStoreError,
    StoreProperties,
)
from bootvault.blobstore.local import LocalBlobStore

__all__ = [
    "BlobStore",
    "BlobStoreError",
    "LocalBlobStore",
    "ObjectNotFound",
    "PermanentStoreError",
    "StoreProperties",
    "open_blobstore",
]


def _open_file_url(url: str) -> BlobStore:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise ValueError(f"unsupported store URL {url!r}: expected file:///absolute/path")
    return LocalBlobStore(unquote(parts.path))


def _open_s3_url(url: str) -> BlobStore:
    from bootvault.blobstore.s3 import open_s3_url  # boto3 is imported only when S3 is used

    return open_s3_url(url)


# scheme -> opener
_OPENERS: dict[str, Callable[[str], BlobStore]] = {"file": _open_file_url, "s3": _open_s3_url}


def open_blobstore(url: str) -> BlobStore:
    """Open a store from a URL or a plain filesystem path.

    "file:///abs/path" or "/abs/path": LocalBlobStore.
    "s3://bucket/prefix?endpoint=http://host:port[&region=...]": S3BlobStore (see blobstore/s3.py).
    """
    if not url:
        raise ValueError("unsupported store URL '': empty")
    if "://" not in url and not url.lower().startswith("file:"):
        return LocalBlobStore(url)
    scheme = urlsplit(url).scheme.lower()
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise ValueError(f"unsupported store URL {url!r}: scheme {scheme!r} is not supported")
    return opener(url)
