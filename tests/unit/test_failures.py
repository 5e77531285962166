"""service/failures.py: one table from failures to what users read."""

from __future__ import annotations

import pytest

from bootvault.blobstore import ObjectNotFound
from bootvault.domain.errors import Conflict, IncorrectState, InvalidArgument
from bootvault.engine.errors import EngineError
from bootvault.engine.keys import KeyNotFound
from bootvault.pool.errors import DaemonFailed, ImageRejected, PoolError, VolumeBusy
from bootvault.service import failures


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ObjectNotFound("packs/x"), "The object store failed: "),
        (KeyNotFound("k1"), "The encryption key is unavailable: "),
        (DaemonFailed("no answer"), "The volume pool failed: no answer"),
        (PermissionError(13, "denied"), "A volume pool file could not be accessed: "),
    ],
)
def test_a_job_failure_reads_as_its_row_says(exc: Exception, reason: str) -> None:
    found = failures.job_reason(exc)
    assert found is not None and found.startswith(reason)


def test_the_unforeseen_has_no_reason_and_is_not_retried() -> None:
    assert failures.job_reason(ValueError("bug")) is None
    assert failures.job_reason(EngineError("damaged")) is None  # the engine's own words name the block
    assert not failures.retried_by_hydration(ValueError("bug"))
    assert all(failures.retried_by_hydration(e) for e in (EngineError("x"), ObjectNotFound("y"), OSError()))


@pytest.mark.parametrize(
    ("exc", "answer"),
    [
        (ImageRejected("vmdk"), InvalidArgument),
        (VolumeBusy("busy"), IncorrectState),
        (DaemonFailed("x"), Conflict),
    ],
)
def test_pool_refusals_become_domain_errors(exc: PoolError, answer: type[Exception]) -> None:
    with pytest.raises(answer, match=str(exc)), failures.pool_refusals():
        raise exc
