"""Structured (JSON lines) logging; every record carries the current opc-request-id."""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "deferrable"}


_stamp = (0, "")  # the last millisecond formatted, and its text


def _timestamp(created: float) -> str:
    """ISO 8601 to the millisecond; under load many lines share one."""
    global _stamp
    ms = int(created * 1000)
    if _stamp[0] != ms:
        _stamp = ms, datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return _stamp[1]


def _dumps(entry: dict[str, Any]) -> str:
    try:  # orjson: a fifth of json's time, on every request's access line
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # an integer past 64 bits
        return json.dumps(entry, default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            entry["opcRequestId"] = rid
        fields = record.__dict__
        entry.update({k: fields[k] for k in fields.keys() - _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return _dumps(entry)


class DeferredFlushHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes lines to stderr's file through a 64 KiB buffer. A record marked `deferrable` (the
    access line of a request that succeeded, one per request) is flushed within `delay` seconds
    by a background thread; any other record flushes at once, behind the lines before it. Under
    load that is one write per many requests instead of one per request; a process killed
    outright may lose its last `delay` seconds of access lines, never another record."""

    delay = 0.2

    def __init__(self) -> None:
        stream = open(  # noqa: SIM115 - the handler keeps it for the process's life
            os.dup(sys.stderr.fileno()), "w", buffering=1 << 16, encoding="utf-8", errors="replace"
        )
        super().__init__(stream)
        self._pending = threading.Event()
        threading.Thread(target=self._flusher, name="bv-log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write_line(self.format(record), getattr(record, "deferrable", False))
        except Exception:
            self.handleError(record)

    def write_line(self, line: str, deferrable: bool) -> None:
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + "\n")
            if not deferrable:
                self.stream.flush()
            elif not self._pending.is_set():  # set() takes a lock and notifies, once is enough
                self._pending.set()

    def _flusher(self) -> None:
        while self._pending.wait():
            time.sleep(self.delay)
            self._pending.clear()
            self.flush()


_direct: DeferredFlushHandler | None = None  # the handler setup_logging installed


def access(logger: logging.Logger, message: str, fields: dict[str, Any], *, deferrable: bool) -> None:
    """A request's access line: what logger.info(message, extra=fields) writes, in a tenth of the
    time when setup_logging's handler is the only one (as under `serve`). The LogRecord, the
    handler chain and the formatter cost more than the rest of a cached read; anything else
    attached (a test's capture, a filter) gets the record as usual."""
    handler = _direct
    root = logging.root.handlers
    alone = handler is not None and len(root) == 1 and root[0] is handler and handler.level <= logging.INFO
    if not alone or logger.handlers or logger.filters:
        logger.info(message, extra=fields | {"deferrable": deferrable})
        return
    if not logger.isEnabledFor(logging.INFO):
        return
    entry = {"time": _timestamp(time.time()), "level": "INFO", "logger": logger.name, "message": message}
    handler.write_line(_dumps(entry | fields), deferrable)  # type: ignore[union-attr]


def setup_logging(level: str = "INFO") -> None:
    # Facts the JSON lines never carry, not gathered for each record (the logging module's own
    # advice for speed): the caller's source line, thread, process names.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    global _direct
    handler = _direct = DeferredFlushHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("qemu.qmp").setLevel(logging.WARNING)  # it logs every QMP disconnect at INFO
