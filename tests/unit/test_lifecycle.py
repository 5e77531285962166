"""domain/lifecycle.py is the one table of states, events and the jobs that own transient
states; docs/architecture.md's restart table must say the same, row by row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from bootvault.domain.lifecycle import BACKUP, VOLUME, Lifecycle
from bootvault.domain.models import BackupState, JobKind, VolumeState

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
ROW = re.compile(r"^\| (backup|volume) ([A-Z_]+(?: / [A-Z_]+)*)(?: \([^)]*\))? \| ([^|]+) \|")
MACHINES: dict[str, Lifecycle] = {"backup": BACKUP, "volume": VOLUME}  # type: ignore[type-arg]


def _restart_rows() -> list[tuple[str, list[str], set[str]]]:
    rows = []
    for line in DOC.read_text().splitlines():
        m = ROW.match(line)
        if m:
            kinds = set(re.findall(r"\b[A-Z_]{2,}\b", m.group(3)))
            rows.append((m.group(1), m.group(2).split(" / "), kinds))
    return rows


def test_the_restart_table_names_the_owning_jobs_of_the_lifecycle_table() -> None:
    """Each row names only jobs the table gives its states, and every owning job of every
    transient state is named by a row of that state (a state may have several rows: a copy's
    CREATING has its own)."""
    rows = _restart_rows()
    assert rows, "the restart table of docs/architecture.md was not found"
    named: dict[tuple[str, str], set[str]] = {}  # (noun, state) -> the jobs its rows name
    for noun, states, kinds in rows:
        owners = {
            kind.value for s in states for kind in MACHINES[noun].owners[s]
        }  # a StrEnum key is its text
        assert kinds <= owners, f"{noun} {' / '.join(states)}: the document names {kinds - owners} too"
        for state in states:
            named.setdefault((noun, state), set()).update(kinds)
    for noun, machine in MACHINES.items():
        for state, kinds in machine.owners.items():
            found = named.get((noun, state.value), set())
            assert {k.value for k in kinds} <= found, f"{noun} {state}: the document does not name {kinds}"
    assert set(named) == {(noun, s.value) for noun, m in MACHINES.items() for s in m.owners}


def test_every_transient_state_is_owned_by_a_job_and_every_event_ends_in_a_state() -> None:
    for machine, transient in (
        (BACKUP, {BackupState.REQUEST_RECEIVED, BackupState.CREATING, BackupState.TERMINATING}),
        (VOLUME, {VolumeState.RESTORING, VolumeState.PROVISIONING, VolumeState.TERMINATING}),
    ):
        assert set(machine.owners) == transient
        assert all(isinstance(kind, JobKind) for kinds in machine.owners.values() for kind in kinds)
        for event, move in machine.moves.items():
            assert move.sources and move.target not in (None, ""), event


def test_what_the_table_allows_and_refuses() -> None:
    assert BACKUP.allows("deleted", BackupState.AVAILABLE) and BACKUP.allows("deleted", BackupState.FAULTY)
    assert not BACKUP.allows("deleted", BackupState.CREATING)  # a backup in progress cannot be deleted
    assert not BACKUP.allows("completed", BackupState.TERMINATING)  # a deleted backup never comes back
    assert not VOLUME.allows("resized", VolumeState.RESTORING)
    assert (
        VOLUME.refusal("v1", "resized", VolumeState.TERMINATED)
        == "Boot volume v1 is TERMINATED; it cannot be resized."
    )


SRC = Path(__file__).resolve().parents[2] / "src" / "bootvault"
STATE_NAMES = {s.value for s in BackupState} | {s.value for s in VolumeState}
# The enums are the wire values themselves; the table is the one place that groups them.
WHERE_STATES_LIVE = {SRC / "domain" / "models.py", SRC / "domain" / "lifecycle.py"}


def _spelled_states(path: Path) -> list[str]:
    """State strings, and tuples/lists/sets of two or more state members, in one module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Constant) and node.value in STATE_NAMES:
            found.append(f"{path.name}:{node.lineno} {node.value!r}")
        elif isinstance(node, ast.Tuple | ast.List | ast.Set):
            members = [
                e
                for e in node.elts
                if isinstance(e, ast.Attribute)
                and e.attr in STATE_NAMES
                and ast.unparse(e.value).endswith("State")
            ]
            if len(members) >= 2:
                found.append(f"{path.name}:{node.lineno} {ast.unparse(node)}")
    return found


def test_no_state_is_spelled_or_grouped_outside_the_lifecycle_table() -> None:
    modules = [p for p in SRC.rglob("*.py") if p not in WHERE_STATES_LIVE and "migrations" not in p.parts]
    spelled = [hit for p in modules for hit in _spelled_states(p)]
    templates = [
        f"{p.name}: {name}"
        for p in (SRC / "console" / "templates").rglob("*.html")
        for name in sorted(STATE_NAMES)
        if re.search(rf"['\"]{name}['\"]", p.read_text())
    ]
    assert spelled + templates == []
