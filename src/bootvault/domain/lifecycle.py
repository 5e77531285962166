"""Lifecycle of boot volume backups and boot volumes: one table per resource of the events that
move it, the states each event may start from and the state it ends in, and the job that owns
each transient state (what re-runs it after a crash; docs/architecture.md's restart table says
the same, and tests/unit/test_lifecycle.py holds the two together).

Every state change goes through `store.common.transition`, which moves a row by compare-and-set
on its current state: an event the table does not allow from the row's state is refused with
`Conflict`, whoever asked for it. Checks that answer a request before anything is written (409
with the reason a user reads) ask the same table through `allows` and the named sets below."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from bootvault.domain.models import BackupState, JobKind, JobState, VolumeState

S = TypeVar("S", bound=StrEnum)


@dataclass(frozen=True)
class Move(Generic[S]):
    sources: frozenset[S]
    target: S


class Lifecycle(Generic[S]):
    """The events of one kind of resource, and the jobs that own its transient states."""

    def __init__(self, noun: str, moves: dict[str, Move[S]], owners: dict[S, tuple[JobKind, ...]]) -> None:
        self.noun, self.moves, self.owners = noun, moves, owners

    def move(self, event: str) -> Move[S]:
        return self.moves[event]

    def allows(self, event: str, state: S) -> bool:
        return state in self.moves[event].sources

    def refusal(self, ident: str, event: str, state: S | None) -> str:
        """Why an event cannot happen to a resource in `state` (None: the resource is gone)."""
        if state is None:
            return f"{self.noun} {ident} is gone."
        return f"{self.noun} {ident} is {state}; it cannot be {event.replace('_', ' ')}."


def _move(sources: set[S], target: S) -> Move[S]:
    return Move(frozenset(sources), target)


B = BackupState
V = VolumeState

BACKUP: Lifecycle[BackupState] = Lifecycle(
    "Boot volume backup",
    {
        # a worker takes the point-in-time image; a re-run after a crash starts over from CREATING
        "started": _move({B.REQUEST_RECEIVED, B.CREATING}, B.CREATING),
        "completed": _move({B.CREATING}, B.AVAILABLE),
        # a job that cannot recover; verify finding damage (a FAULTY one gets the newer reason)
        "failed": _move({B.REQUEST_RECEIVED, B.CREATING, B.AVAILABLE, B.TERMINATING, B.FAULTY}, B.FAULTY),
        "deleted": _move({B.AVAILABLE, B.FAULTY}, B.TERMINATING),  # by a user, or expired
        "terminated": _move({B.TERMINATING}, B.TERMINATED),
    },
    {
        B.REQUEST_RECEIVED: (JobKind.BACKUP,),
        B.CREATING: (JobKind.BACKUP, JobKind.COPY),  # a copy: the source region's COPY job
        B.TERMINATING: (JobKind.DELETE_BACKUP,),
    },
)

VOLUME: Lifecycle[VolumeState] = Lifecycle(
    "Boot volume",
    {
        # restore (instant: usable at once, hydrating), clone, grow
        "filled": _move({V.RESTORING, V.PROVISIONING}, V.AVAILABLE),
        "resized": _move({V.AVAILABLE}, V.PROVISIONING),  # a grow: as OCI, the volume provisions
        "grown": _move({V.PROVISIONING, V.AVAILABLE}, V.AVAILABLE),
        # a job that cannot recover (a restore, a clone, a grow, a hydration, a delete)
        "failed": _move({V.RESTORING, V.PROVISIONING, V.AVAILABLE, V.TERMINATING, V.FAULTY}, V.FAULTY),
        "deleted": _move({V.AVAILABLE, V.FAULTY}, V.TERMINATING),
        "terminated": _move({V.TERMINATING}, V.TERMINATED),
    },
    {
        V.RESTORING: (JobKind.RESTORE,),
        V.PROVISIONING: (JobKind.CLONE, JobKind.RESIZE),
        V.TERMINATING: (JobKind.DELETE_VOLUME,),
    },
)

# Named sets of states, for the checks that answer a request before anything changes.
BACKUP_IN_PROGRESS = frozenset({B.REQUEST_RECEIVED, B.CREATING})  # its image is being taken
BACKUP_GONE = frozenset({B.TERMINATING, B.TERMINATED})  # deleted or being deleted
BACKUP_BUSY = BACKUP_IN_PROGRESS | {B.TERMINATING}
VOLUME_FILLING = frozenset({V.RESTORING, V.PROVISIONING})  # its data is being written by a job
VOLUME_GONE = frozenset({V.TERMINATING, V.TERMINATED})
VOLUME_BUSY = VOLUME_FILLING | {V.TERMINATING}
JOB_ENDED = frozenset({JobState.SUCCEEDED, JobState.FAILED})  # a job's outcome is recorded
