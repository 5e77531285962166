"""Errors of the volume pool. The service maps them to domain errors (and job reasons)."""

from __future__ import annotations


class PoolError(Exception):
    """A volume file or its daemon could not be handled; str() is a sentence for users."""


class ImageRejected(PoolError):
    """An image offered for import is not one we accept (format, backing file, size)."""


class VolumeBusy(PoolError):
    """Another operation holds the volume (a backup, an attach) and did not finish in time."""


class DaemonFailed(PoolError):
    """qemu-storage-daemon did not start, or stopped answering."""
