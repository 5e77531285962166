"""The chaos soak's byte checks (bench/chaosload.py) catch what they must: a backup holding a
block its volume never held at that instant, and a lost or premature write of the live writer."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = str(Path(__file__).resolve().parents[2] / "bench")
if BENCH not in sys.path:
    sys.path.append(BENCH)  # appended: bench's module names never shadow anything

from chaosload import DATA, SLOTS, Vol, live_slots_ok  # noqa: E402

from tests.nbdwriter import BLOCK, Write, block, slot_of  # noqa: E402

MS = 1_000_000


def _vol() -> Vol:
    vol = Vol("v", bytes(DATA), 1)
    vol.writes.append((100 * MS, 110 * MS, 0, b"A" * 2 * BLOCK))  # acknowledged at 110 ms
    vol.writes.append((200 * MS, 210 * MS, BLOCK, b"B" * 2 * BLOCK))  # in flight 200-210 ms
    return vol


def test_a_backup_holds_the_state_at_its_instant_or_either_side_of_a_write_in_flight() -> None:
    vol = _vol()
    before, after = vol.content(150 * MS), vol.content()
    assert vol.matches(before, 150 * MS) and vol.matches(before, 205 * MS) and vol.matches(after, 205 * MS)
    torn = before[: 2 * BLOCK] + after[2 * BLOCK :]  # one block of the write in flight landed
    assert vol.matches(torn, 205 * MS)
    assert not vol.matches(after, 150 * MS)  # a write sent after the image is not in it
    assert not vol.matches(bytes(DATA), 150 * MS)  # an acknowledged write lost
    damaged = bytearray(before)
    damaged[DATA - 1] ^= 1
    assert not vol.matches(bytes(damaged), 150 * MS)


def _region(writes: list[Write], upto: int) -> bytes:
    region = bytearray(SLOTS * BLOCK)
    for w in writes[:upto]:
        slot = slot_of(w.seq, SLOTS)
        region[slot * BLOCK : (slot + 1) * BLOCK] = block(w.seq, SLOTS)
    return bytes(region)


def test_live_region_checks_find_lost_and_premature_writes() -> None:
    writes = [Write(seq, seq * 10 * MS, seq * 10 * MS + MS) for seq in range(SLOTS + 10)]
    assert live_slots_ok(_region(writes, len(writes)), writes, None) == []
    assert live_slots_ok(_region(writes, 50), writes, 50 * 10 * MS) == []
    lost = live_slots_ok(_region(writes, 49), writes, None)
    assert lost and "was acknowledged" in lost[0]
    premature = live_slots_ok(_region(writes, 80), writes, 50 * 10 * MS)
    assert premature and "not sent by then" in premature[0]
    failed = [*writes[:60], Write(60, 600 * MS, -1)]  # no answer: it may or may not have landed
    assert live_slots_ok(_region(failed, 60), failed, None) == []
    assert live_slots_ok(_region(failed, 61), failed, None) == []
