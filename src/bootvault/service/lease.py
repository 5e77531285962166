"""What a worker holds while it runs a job, and how a job's outcome is recorded."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection

from bootvault.domain.models import Job, JobState
from bootvault.service.context import Context
from bootvault.store import jobs, workrequests


class LeaseLost(Exception):
    """Another worker owns the job now: stop without touching its resource."""


class JobFailed(Exception):
    """The job cannot succeed; the message is the reason shown to users."""


class Lease:
    """The claim a worker holds on a job. The worker's heartbeat clears `held` when renewal fails."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.held = True

    def check(self) -> None:
        if not self.held:
            raise LeaseLost("the job's lease was lost")


def finish_job(
    ctx: Context,
    job: Job,
    lease: Lease,
    state: JobState,
    apply: Callable[[Connection], object],
    error: str | None = None,
    result: str | None = None,
) -> None:
    """Record the outcome and the job's end in one transaction, only while we still own the job."""
    with ctx.db.write() as conn:
        if not jobs.finish(conn, job.id, lease.owner, state, error, result):
            raise LeaseLost("the job's lease was lost before it finished")
        apply(conn)
        workrequests.follow(conn, job.resource_id, state.value, error)
