"""nbdkit plugin: serve one backup, read-only, lazily from the object store (the backing of a
volume restored instantly while it hydrates). Started by pool/backing.py as

    nbdkit --unix SOCK --pidfile PID python .../backing_server.py pythonpath=... backup=OCID size=N

with the worker's BOOTVAULT_ settings in the environment. With `size` (the backup's logical size)
the server answers at once and opens the backup (bootvault's imports, settings, database, index:
seconds) in a thread started after nbdkit has forked, which the first read waits for: an attach
does not wait for it. Without `size` it opens the backup before serving. nbdkit runs Debian's
python3.11; the project's packages come from `pythonpath` (the venv has the same ABI). A block
that cannot be fetched or fails its check is an I/O error (EIO) to the reader, never zeros.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import os
import sys
import threading
import time
from typing import Any

import nbdkit  # provided by nbdkit's python plugin

API_VERSION = 2
STATS_EVERY_S = 0.25
_config: dict[str, str] = {}
_reader: Any = None
_opened = threading.Event()  # set when _reader is open, or _open_error says why it is not
_open_error: list[str] = []
OPEN_WAIT_S = 600.0
_served = {"bytes": 0, "written_at": 0.0, "every": STATS_EVERY_S}
_lock = threading.Lock()
_publishing = threading.Lock()  # held while the stats file is written


def _count(nbytes: int) -> None:
    """Count the bytes served; publish the count at most every `stats_every` seconds (the
    HYDRATE job tells the machine's reads from its copy's by it)."""
    with _lock:
        _served["bytes"] += nbytes
        now = time.monotonic()
        if now - _served["written_at"] < _served["every"]:
            return
        _served["written_at"] = now
    _publish()


def _publish() -> None:
    """Write the count to the stats file. One writer at a time: a second one would find its
    temporary file renamed away by the first (on a busy machine a write can outlast the
    interval). A thread that finds another writing leaves it the newer count to write; a write
    that fails only delays the throttle, so it never fails the read that was served."""
    if "stats" not in _config or not _publishing.acquire(blocking=False):
        return
    try:
        with _lock:
            total = _served["bytes"]
        tmp = _config["stats"] + ".tmp"
        with builtins.open(tmp, "w") as fh:
            fh.write(str(total))
        os.replace(tmp, _config["stats"])
    except OSError as exc:
        nbdkit.debug(f"could not publish the bytes served: {exc}")
    finally:
        _publishing.release()


def _note_failure(message: str) -> None:
    """Publish why the last read failed (EIO says nothing): the HYDRATE job gives it as the reason."""
    if "errors" not in _config:
        return
    with _lock, contextlib.suppress(OSError):  # the read fails with EIO whatever happens here
        tmp = _config["errors"] + ".tmp"
        with builtins.open(tmp, "w") as fh:
            fh.write(message)
        os.replace(tmp, _config["errors"])


def config(key: str, value: str) -> None:
    _config[key] = value


def config_complete() -> None:
    _served["every"] = float(_config.get("stats_every", STATS_EVERY_S))
    for path in reversed(_config.get("pythonpath", "").split(os.pathsep)):
        if path and path not in sys.path:
            sys.path.insert(0, path)
    if "size" not in _config:
        _open_backup()
        if _open_error:
            raise RuntimeError(_open_error[0])


def after_fork() -> None:
    if not _opened.is_set():
        threading.Thread(target=_open_backup, name="open-backup", daemon=True).start()


def _open_backup() -> None:
    global _reader
    try:
        from bootvault.service.hydration import open_backup_reader

        reader = open_backup_reader(_config["backup"])
        if "size" in _config and reader.size != int(_config["size"]):
            raise ValueError(f"the backup holds {reader.size} bytes, not the {_config['size']} announced")
        _reader = reader
    except Exception as exc:
        _open_error.append(f"cannot open backup {_config.get('backup')}: {exc}")
        _note_failure(_open_error[0])
    finally:
        _opened.set()


def _backup() -> Any:
    """The reader, once open (the first reads wait for it)."""
    if not _opened.wait(OPEN_WAIT_S):
        raise TimeoutError(f"backup {_config.get('backup')} did not open within {OPEN_WAIT_S:.0f} s")
    if _open_error:
        raise OSError(errno.EIO, _open_error[0])
    return _reader


def thread_model() -> int:
    return int(nbdkit.THREAD_MODEL_PARALLEL)


def open(readonly: bool) -> int:  # noqa: A001 - nbdkit's callback name
    return 1


def get_size(h: int) -> int:
    return int(_config["size"]) if "size" in _config else int(_backup().size)


def can_write(h: int) -> bool:
    return False


def can_multi_conn(h: int) -> bool:
    return True


def can_extents(h: int) -> bool:
    return True


def can_cache(h: int) -> int:
    return int(nbdkit.CACHE_NONE)


def extents(h: int, count: int, offset: int, flags: int) -> list[tuple[int, int, int]]:
    """Data where the backup has blocks, holes elsewhere (so QEMU never copies the holes)."""
    end, found = offset + count, []
    for start, length, is_data in _backup().extents_in(offset, end):
        found.append((start, length, 0 if is_data else nbdkit.EXTENT_HOLE | nbdkit.EXTENT_ZERO))
    return found


def pread(h: int, buf: memoryview, offset: int, flags: int) -> None:
    try:
        _backup().read_into(memoryview(buf), offset)
    except Exception as exc:
        nbdkit.debug(f"read of {len(buf)} bytes at {offset} failed: {exc}")
        _note_failure(str(exc))
        nbdkit.set_error(errno.EIO)
        raise
    _count(len(buf))  # after the read, outside it: bookkeeping never turns a good read into EIO
