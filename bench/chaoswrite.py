"""The chaos run's writes over NBD: the live volume's writer thread, and one write made through
a volume's attach URI until a flush acknowledges it.

One volume, `live`, stays attached while a writer thread writes sequence-stamped 4 KiB blocks
with FUA (tests/nbdwriter.py's format) into its region after DATA and logs every write's send
and acknowledgement: its backups and its final content are checked against that log.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from chaosmodel import DATA, SLOTS

from tests.nbdwriter import BLOCK, Write, block, slot_of


class LiveWriter(threading.Thread):
    """Sequence-stamped 4 KiB FUA writes into the live volume, about 100 a second, reconnecting
    through a killed daemon; `writes` is the log (acked -1: no answer)."""

    def __init__(self, uri: str) -> None:
        super().__init__(daemon=True, name="live-writer")
        self.uri, self.stop_event, self.writes = uri, threading.Event(), []  # type: list[Write]

    def run(self) -> None:
        import nbd

        h: Any = None
        seq = 0
        while not self.stop_event.is_set():
            if h is None:
                try:
                    h = nbd.NBD()
                    h.connect_uri(self.uri)
                except nbd.Error:
                    h = None
                    time.sleep(0.1)
                    continue
            sent = time.time_ns()
            try:
                h.pwrite(block(seq, SLOTS), DATA + slot_of(seq, SLOTS) * BLOCK, nbd.CMD_FLAG_FUA)
                acked = time.time_ns()
            except nbd.Error:
                acked, h = -1, None
            self.writes.append(Write(seq, sent, acked))
            seq += 1
            time.sleep(0.01)
        if h is not None:
            h.shutdown()


def write_until_acknowledged(uri: str, offset: int, data: bytes) -> bool:
    """Through a killed daemon (served again by the reconcile): the same bytes again until a
    flush acknowledges them; False if none did within 3 minutes (the write may have landed)."""
    import nbd

    deadline = time.monotonic() + 180
    while True:
        try:
            h = nbd.NBD()
            h.connect_uri(uri)
            h.pwrite(data, offset)
            h.flush()
            h.shutdown()
            return True
        except nbd.Error:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.5)
