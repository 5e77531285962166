"""What every volume of the chaos run (bench/chaos.py) held when: the model its checks compare
restored bytes with.

Volumes hold DATA bytes of content that matter (the rest of their size reads as zeros, and is
not compared). The workload changes a volume only through its NBD URI (`bootvault volume attach`,
one pwrite, a flush, `volume detach`), under the volume's lock, and records each write's window
[sent, acknowledged] (the host's realtime clock, the one QEMU stamps a backup's image with). So
the bytes a backup must restore to are known exactly from its `timeCreated` t: every block is the
content after all writes acknowledged before t, except the blocks of the (at most one) write in
flight at t, which may hold either side (`Vol.matches`).

The live volume's region after DATA holds the sequence-stamped blocks of the live writer
(bench/chaoswrite.py): `live_slots_ok` checks a restore of it, or its final content, against the
writer's log.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # tests.nbdwriter, when run as bench/chaos.py; appended, as in chaosrig.py
    sys.path.append(str(ROOT))

from tests.nbdwriter import BLOCK, Write, block, slot_of  # noqa: E402

MIB = 1 << 20
DATA = 4 * MIB
SLOTS = 256  # the live writer's region: SLOTS 4 KiB blocks at DATA
UNKNOWN = 1 << 62  # the acknowledgement time of a write that never got one: in flight for ever


def ns(when: datetime) -> int:
    return int(when.timestamp() * 1_000_000) * 1000


@dataclass
class Vol:
    id: str
    base: bytes  # DATA bytes at creation
    size_gbs: int
    writes: list[tuple[int, int, int, bytes]] = field(default_factory=list)  # sent, acked, offset, data
    lock: threading.Lock = field(default_factory=threading.Lock)
    deleted: bool = False
    live: bool = False

    def content(self, until_ns: int | None = None, *, inclusive: bool = False) -> bytes:
        """DATA after the writes acknowledged before `until_ns` (all: None); `inclusive` adds a
        write in flight at that instant."""
        out = bytearray(self.base)
        for sent, acked, offset, data in self.writes:
            if until_ns is None or acked < until_ns or (inclusive and sent <= until_ns):
                out[offset : offset + len(data)] = data
        return bytes(out)

    def matches(self, data: bytes, t_ns: int) -> bool:
        """`data` is what this volume may have held at instant t: block by block, the state
        before or after a write in flight then (1 ms of slack for the clocks' rounding)."""
        before, after = self.content(t_ns - 1_000_000), self.content(t_ns + 1_000_000, inclusive=True)
        if data in (before, after):
            return True
        return all(
            data[p : p + BLOCK] in (before[p : p + BLOCK], after[p : p + BLOCK])
            for p in range(0, DATA, BLOCK)
        )


def live_slots_ok(region: bytes, writes: list[Write], t_ns: int | None) -> list[str]:
    """Problems with the live region at instant t (None: after every write): each slot holds a
    write sent by then, no older than the last one acknowledged before it."""
    problems, last_acked = [], [-1] * SLOTS
    sent_by = {w.seq: w.sent for w in writes}
    for w in writes:
        if w.acked >= 0 and (t_ns is None or w.acked < t_ns - 1_000_000):
            last_acked[slot_of(w.seq, SLOTS)] = w.seq
    for slot in range(SLOTS):
        data = region[slot * BLOCK : (slot + 1) * BLOCK]
        found = -1 if data == bytes(BLOCK) else int.from_bytes(data[8:16], "little")
        if found >= 0 and data != block(found, SLOTS):
            problems.append(f"slot {slot}: damaged or foreign bytes")
        elif found < last_acked[slot]:
            problems.append(f"slot {slot}: holds {found}, write {last_acked[slot]} was acknowledged")
        elif found >= 0 and (
            found not in sent_by or (t_ns is not None and sent_by[found] > t_ns + 1_000_000)
        ):
            problems.append(f"slot {slot}: holds write {found}, not sent by then")
    return problems


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]
