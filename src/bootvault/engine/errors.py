"""The engine's errors share one base, so callers can tell data-plane failures from bugs. The
object store's own errors are named here too, so the service handles what the Repository raises
without importing the blob store (engine/repository.py is the only way to the data)."""

from __future__ import annotations

from bootvault.blobstore import BlobStoreError, ObjectNotFound

StorageError = BlobStoreError  # the object store failed (an outage may pass)
DataMissing = ObjectNotFound  # an object the data needs is not in the store


class EngineError(Exception):
    """A backup, restore or key operation failed for a reason str() states."""
