"""The backing server of a volume restored instantly: nbdkit running backing_server.py, serving
the source backup read-only over NBD from the object store while the volume hydrates.

Files: `<run dir>/<hash>/backing.sock` and `backing.pid` beside the volume's daemon files, and
`<pool>/<ocid>.backing` (the backup id, then its logical size on a second line; files of earlier
releases have the id alone) for as long as the qcow2 names the server as its backing. Knowing the
size, the server starts at once and opens the backup in the background (backing_server.py), so
attaching a hydrating volume costs about what attaching any volume does.
QEMU reaches the server through a `json:` backing spec with a reconnect delay, so a restarted
server (same socket) is picked up again without failing the machine's reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sysconfig
import time
from pathlib import Path

import bootvault
from bootvault.pool.daemon import BACKING_SOCK, Runtime
from bootvault.pool.errors import DaemonFailed

log = logging.getLogger("bootvault.pool")
NBDKIT = "nbdkit"
SCRIPT = Path(bootvault.__file__).parent / "backing_server.py"
RECONNECT_S = 30
THREADS = 8


def _package_paths() -> list[str]:
    """Where bootvault and its packages come from, for nbdkit's own python3.11 (same ABI): the
    source tree and site-packages, never this interpreter's standard library."""
    paths = sysconfig.get_paths()
    found = [str(Path(bootvault.__file__).parent.parent), paths["purelib"], paths["platlib"]]
    return list(dict.fromkeys(found))


class BackingServer:
    def __init__(self, runtime: Runtime, env: dict[str, str], stats_every: float | None = None) -> None:
        self.stats_every = stats_every  # how often the server publishes its count (None: its default)
        self.sock = runtime.dir / BACKING_SOCK
        self.pidfile = runtime.dir / "backing.pid"
        self.stats = runtime.dir / "backing.stats"
        self.errors = runtime.dir / "backing.error"
        self.runtime, self.env = runtime, env

    def backing_spec(self) -> str:
        """What the volume's qcow2 records as its backing file."""
        server = {"type": "unix", "path": str(self.sock)}
        nbd = {"driver": "nbd", "server": server, "reconnect-delay": RECONNECT_S}
        return "json:" + json.dumps({"driver": "raw", "file": nbd})

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if b"nbdkit" in cmdline.split(b"\0", 1)[0] else None

    def ensure(self, backup_id: str, size: int | None = None) -> None:
        """Start the server unless it runs. With the backup's size it answers before the backup
        is open; without, it opens the backup first (seconds: imports, database, index)."""
        if self.pid() is not None:
            return
        self.sock.unlink(missing_ok=True)
        self.runtime.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        pythonpath = os.pathsep.join(_package_paths())
        args = [
            NBDKIT,
            "--unix",
            str(self.sock),
            "--pidfile",
            str(self.pidfile),
            "--threads",
            str(THREADS),
            "python",
            str(SCRIPT),
            f"pythonpath={pythonpath}",
            f"backup={backup_id}",
            f"stats={self.stats}",
            f"errors={self.errors}",
            *([f"size={size}"] if size is not None else []),
        ]
        if self.stats_every is not None:
            args.append(f"stats_every={self.stats_every}")
        logfile = self.runtime.dir / "backing.log"
        try:
            with open(logfile, "ab") as err:  # nbdkit logs to syslog once it runs in the background
                code = subprocess.run(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    timeout=120,
                    env={**os.environ, **self.env},
                ).returncode
        except FileNotFoundError as exc:
            raise DaemonFailed(
                "nbdkit is not installed (Debian packages nbdkit, nbdkit-plugin-python)"
            ) from exc
        if code != 0:
            tail = logfile.read_text(errors="replace")[-600:]
            raise DaemonFailed(f"the backing server of backup {backup_id} did not start: {tail}")
        log.info("started the backing server of %s (backup %s)", self.runtime.volume_id, backup_id)

    def bytes_served(self) -> int:
        """Bytes the server has read out since it started (published every 0.25 s)."""
        try:
            return int(self.stats.read_text())
        except (OSError, ValueError):
            return 0

    def last_failure(self) -> str | None:
        """Why the server's last failed read failed (a damaged or missing block), if one did."""
        try:
            return self.errors.read_text().strip() or None
        except OSError:
            return None

    def stop(self) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.02)
            if self.pid() is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for path in (self.sock, self.pidfile, self.stats, self.errors):
            path.unlink(missing_ok=True)
