"""The engine's errors share one base, so callers can tell data-plane failures from bugs."""

from __future__ import annotations


class EngineError(Exception):
    """A backup, restore or key operation failed for a reason str() states."""
