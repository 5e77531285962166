"""Job pickup without polling delay: a worker sleeps on an event that is set when a job is queued
or finished, in this process (Database.subscribe) or in any other: on PostgreSQL by LISTEN, on
SQLite by the doorbell sockets beside the database file (store/doorbell.py). Polling stays as the
fallback, so a lost notification only costs poll_seconds."""

from __future__ import annotations

import logging
import threading
import time

from bootvault.store import doorbell
from bootvault.store.db import Database
from bootvault.store.jobs import CHANNEL

log = logging.getLogger("bootvault.worker")
LISTEN_RETRY_S = 5.0
STOP_CHECK_S = 1.0


class Wakeup:
    def __init__(self, db: Database, stop: threading.Event) -> None:
        self.event, self.stop = threading.Event(), stop
        db.subscribe(self.event.set)
        if not db.is_sqlite:
            threading.Thread(target=self._listen, args=(db, stop), name="bv-listen", daemon=True).start()
        elif db.engine.url.database and db.engine.url.database != ":memory:":
            try:
                bell = doorbell.Bell(doorbell.directory(db.engine.url.database))
            except OSError as exc:
                log.warning("no doorbell for other processes' jobs (%s); polling only", exc)
            else:
                threading.Thread(target=self._answer, args=(bell, stop), name="bv-bell", daemon=True).start()

    def wait(self, timeout: float) -> None:
        """Until a job is queued or finished, `timeout` passes, or stop is set (seen within
        STOP_CHECK_S: a signal handler that sets it cannot wake a waiting Event)."""
        deadline = time.monotonic() + timeout
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0 or self.event.wait(min(left, STOP_CHECK_S)):
                break
        self.event.clear()

    def _answer(self, bell: doorbell.Bell, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                if bell.wait(1.0):
                    self.event.set()
        finally:
            bell.close()

    def _listen(self, db: Database, stop: threading.Event) -> None:
        import psycopg

        while not stop.is_set():
            try:
                with psycopg.connect(db.psycopg_url(), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=1.0):
                            self.event.set()
            except Exception as exc:  # the database restarts: polling covers the gap
                log.warning("LISTEN %s failed (%s); retrying in %.0f s", CHANNEL, exc, LISTEN_RETRY_S)
                stop.wait(LISTEN_RETRY_S)
