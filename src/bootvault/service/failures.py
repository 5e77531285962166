"""The one table from failures to what users read: for each kind of error a job, a hydration or
an admin call can meet, the sentence a job's FAULTY reason starts with, whether a hydration tries
it again (an outage may pass), and the domain error an admin call answers with (its CLI
message). The first row that matches wins, so rows go from the specific to the general."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from bootvault.domain.errors import BootVaultError, Conflict, IncorrectState, InvalidArgument
from bootvault.engine.errors import EngineError, StorageError
from bootvault.engine.keys import KeyNotFound, KeyUnwrapError
from bootvault.pool import PoolError
from bootvault.pool.errors import ImageRejected, VolumeBusy


@dataclass(frozen=True)
class Failure:
    kinds: tuple[type[BaseException], ...]
    reason: str | None  # a job's FAULTY reason starts with it; None: not foreseen (a bug, logged)
    retried: bool  # a hydration tries it again, with back-off, before it gives up
    refusal: type[BootVaultError] | None = None  # what an admin call answers (pool refusals)


TABLE = (
    Failure((ImageRejected,), "The volume pool failed", True, InvalidArgument),
    Failure((VolumeBusy,), "The volume pool failed", True, IncorrectState),
    Failure((PoolError,), "The volume pool failed", True, Conflict),
    Failure((StorageError,), "The object store failed", True),
    Failure((KeyNotFound, KeyUnwrapError), "The encryption key is unavailable", True),
    Failure((EngineError,), None, True),  # damaged data: fails again, then the reason
    Failure((OSError,), "A volume pool file could not be accessed", True),
)


def classify(exc: BaseException) -> Failure | None:
    return next((row for row in TABLE if isinstance(exc, row.kinds)), None)


def job_reason(exc: BaseException) -> str | None:
    """The sentence a job's resource shows when the job fails with exc; None if unforeseen."""
    row = classify(exc)
    return None if row is None or row.reason is None else f"{row.reason}: {exc}"


def retried_by_hydration(exc: BaseException) -> bool:
    row = classify(exc)
    return row is not None and row.retried


@contextmanager
def pool_refusals() -> Iterator[None]:
    """The pool's refusals become the domain's errors (and so clear CLI messages)."""
    try:
        yield
    except PoolError as exc:
        row = classify(exc)
        assert row is not None and row.refusal is not None  # every PoolError has a row with one
        raise row.refusal(str(exc)) from exc
