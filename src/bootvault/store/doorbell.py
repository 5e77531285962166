"""SQLite's stand-in for PostgreSQL's NOTIFY, between the processes of one host that share one
database file (`serve --processes N`, `bootvault worker`). On disk:

    <database>.wake/            0700, beside the database file
        <pid>-<random>.sock     a datagram socket, bound by each process that runs workers

A commit that queued or finished a job sends one byte to every socket there; a listener wakes its
workers. A socket whose process is gone refuses the byte and is removed. Nothing depends on a
byte arriving: workers still poll, so a lost ring costs at most poll_seconds. Sockets are named
through /proc/self/fd/<directory fd>/: an AF_UNIX address holds 107 bytes, less than a data
directory's path may take."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
from pathlib import Path

log = logging.getLogger("bootvault.worker")


def directory(database: str) -> Path:
    return Path(database + ".wake")


def _open(folder: Path) -> int:
    return os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def _address(dirfd: int, name: str) -> str:
    return f"/proc/self/fd/{dirfd}/{name}"


def ring(folder: Path) -> None:
    """One byte to every listener; never raises."""
    try:
        dirfd = _open(folder)
    except OSError:
        return  # no listener ever bound: no process runs workers yet
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            for name in os.listdir(dirfd):
                if not name.endswith(".sock"):
                    continue
                try:
                    sock.sendto(b"!", _address(dirfd, name))
                except ConnectionRefusedError:  # its process is gone
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=dirfd)
                except OSError:  # a full queue already holds a ring
                    pass
    except OSError:
        pass
    finally:
        os.close(dirfd)


class Bell:
    """A bound listening socket; `wait()` returns after a ring (or `timeout`)."""

    def __init__(self, folder: Path) -> None:
        folder.mkdir(mode=0o700, exist_ok=True)
        os.chmod(folder, 0o700)
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}.sock"
        self.path = folder / self.name
        self.dirfd = _open(folder)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            self.sock.bind(_address(self.dirfd, self.name))
            os.chmod(self.name, 0o600, dir_fd=self.dirfd)
        except OSError:
            self.close()
            raise

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
            os.unlink(self.name, dir_fd=self.dirfd)
        os.close(self.dirfd)
