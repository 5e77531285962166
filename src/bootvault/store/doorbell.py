"""SQLite's stand-in for PostgreSQL's NOTIFY, between the processes of one host that share one
database file (`serve --processes N`, `bootvault worker`). On disk:

    <database>.wake/            0700, beside the database file
        <pid>-<random>.sock     a datagram socket, bound by each process that runs workers

A commit that queued or finished a job sends one byte to every socket there; a listener wakes its
workers. A socket whose process is gone refuses the byte and is removed. Nothing depends on a
byte arriving: workers still poll, so a lost ring costs at most poll_seconds."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

log = logging.getLogger("bootvault.worker")
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the terminating NUL


def directory(database: str) -> Path:
    return Path(database + ".wake")


def ring(folder: Path) -> None:
    """One byte to every listener; never raises."""
    try:
        names = os.listdir(folder)
    except OSError:
        return  # no listener ever bound: no process runs workers yet
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for name in names:
            if not name.endswith(".sock"):
                continue
            path = folder / name
            try:
                sock.sendto(b"!", str(path))
            except ConnectionRefusedError:  # its process is gone
                with contextlib.suppress(OSError):
                    path.unlink()
            except OSError:  # a full queue already holds a ring
                pass


class Bell:
    """A bound listening socket; `wait()` returns after a ring (or `timeout`)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        self.path = folder / f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        if len(str(self.path).encode()) > MAX_SOCKET_PATH:
            raise OSError(f"socket path too long for AF_UNIX: {self.path}")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        os.chmod(self.path, 0o600)

    def wait(self, timeout: float) -> bool:
        self.sock.settimeout(timeout)
        try:
            self.sock.recv(64)
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()
        with contextlib.suppress(OSError):
            self.path.unlink()
