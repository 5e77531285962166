"""qemu-storage-daemon (QSD): one daemon per volume that is in use, driven over QMP.

Runtime files of a volume live in `<run dir>/<hash of the volume id>/` (short, because a unix
socket path is limited to 107 bytes):

    lock        flock held by whoever drives the daemon (attach, detach, a backup, a resize)
    qmp.sock    the QMP monitor
    nbd.sock    the NBD server: export `disk` (read-write, only while attached) and the
                read-only point-in-time exports of backups and clones
    qsd.pid     the daemon's pid (written by QSD itself)
    mode        "attached" (export `disk` served) or "transient" (started by a job for its own
                duration); "hydrating" was an earlier release's (no export, copying its backing)
    volume      the volume id (the directory name is only its hash)
    backing.sock, backing.pid, ...  an instant restore's backing server (pool/backing.py)

A unix socket path holds at most 107 bytes. When `<run dir>/<hash>/backing.sock` would not fit,
the runtime directories go to a private directory named after the run dir in the system's
temporary directory instead (`socket_root`), the same for every process of that run dir.

QSD daemonizes (`--daemonize`: the parent exits once the sockets exist), so a daemon outlives
the process that started it: serving survives an API or worker restart, and a job that died
leaves a daemon the next reconcile finds by its pid file. A clean stop (`quit`) writes the
persistent dirty bitmaps; a killed daemon leaves them "in use", which the next backup detects.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from bootvault.pool.errors import DaemonFailed, VolumeBusy

log = logging.getLogger("bootvault.pool")
QSD = "qemu-storage-daemon"
EXPORT = "disk"  # the read-write export a machine attaches to
STREAM_JOB = "hydrate"  # an earlier release's hydration (block-stream): cancelled if found
NODE = "disk0"
CACHE_BYTES = 8 << 20  # qcow2 metadata cache: covers 64 GiB of 64 KiB clusters, and no more
# The volume's qcow2 node, on the command line and when it is reopened onto another backing.
QCOW2_NODE: dict[str, str | int] = {
    "driver": "qcow2",
    "file": "file0",
    "node-name": NODE,
    "cache-size": CACHE_BYTES,
    "cache-clean-interval": 60,
}
STOP_WAIT_S = 15.0


SOCKET_PATH_MAX = 107  # sun_path
BACKING_SOCK = "backing.sock"  # the longest socket name of a runtime directory


def _fits(run_root: Path) -> bool:
    return len(str(Runtime(run_root, "any volume").dir / BACKING_SOCK)) <= SOCKET_PATH_MAX


def socket_root(run_root: Path) -> Path:
    """run_root, or if its sockets' paths would be too long, /tmp/bootvault-<uid>-<hash of it>:
    created 0700, and refused unless it is a directory of ours that no one else can enter."""
    if _fits(run_root):
        return run_root
    digest = hashlib.sha256(str(run_root).encode()).hexdigest()[:12]
    short = Path(tempfile.gettempdir()) / f"bootvault-{os.getuid()}-{digest}"
    with contextlib.suppress(FileExistsError):
        os.mkdir(short, 0o700)
    info = os.lstat(short)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
        raise DaemonFailed(f"{short} is not a private directory of this user; set BOOTVAULT_RUN_DIR")
    if not _fits(short):
        raise DaemonFailed(f"run directory {run_root} is too long for unix sockets; set BOOTVAULT_RUN_DIR")
    return short


def _alive(pid: int) -> bool:
    """Until every thread has exited: a killed daemon's main thread turns zombie a moment before
    the others have closed the image (and released its locks)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_bytes().strip()
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return False
    return comm == QSD.encode()[:15] and any(b"zombie" not in _state(f"{pid}/task/{t}") for t in threads)


def _state(pid: int | str) -> bytes:
    with contextlib.suppress(OSError, IndexError):
        return Path(f"/proc/{pid}/status").read_bytes().split(b"State:", 1)[1][:16]
    return b"zombie"  # gone while we looked


class Runtime:
    """The runtime directory of one volume and the daemon it may have."""

    def __init__(self, run_root: Path, volume_id: str) -> None:
        self.dir = run_root / hashlib.sha256(volume_id.encode()).hexdigest()[:16]
        self.volume_id = volume_id
        self.qmp_sock = self.dir / "qmp.sock"
        self.nbd_sock = self.dir / "nbd.sock"
        self.pidfile = self.dir / "qsd.pid"
        self.modefile = self.dir / "mode"

    def uri(self, export: str = EXPORT) -> str:
        return f"nbd+unix:///{export}?socket={self.nbd_sock}"

    # -- locking ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, timeout: float) -> Iterator[None]:
        """Exclusive use of the volume's daemon and files on this host. The lock goes with the
        process: one that dies releases it (the fd is close-on-exec, so a daemon never holds it)."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise VolumeBusy(
                            f"boot volume {self.volume_id} is busy with another operation "
                            f"(waited {timeout:.0f} s); try again when it has finished"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)

    # -- the daemon ------------------------------------------------------------------------

    def pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def mode(self) -> str | None:
        if self.pid() is None:
            return None
        with contextlib.suppress(OSError):
            return self.modefile.read_text().strip() or None
        return None

    def set_mode(self, mode: str) -> None:
        self.modefile.write_text(mode)

    def spawn(self, image: Path, *, writable_export: bool, mode: str) -> None:
        """Start a daemon that owns `image` (read-write: bitmaps must record and rotate)."""
        self.clear_stale()
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "volume").write_text(self.volume_id)
        args = [
            QSD,
            "--daemonize",
            "--blockdev",
            f"driver=file,filename={image},node-name=file0,discard=unmap{_file_cache(image)}",
            "--blockdev",
            ",".join(f"{key}={value}" for key, value in QCOW2_NODE.items()),
            "--nbd-server",
            f"addr.type=unix,addr.path={self.nbd_sock}",
            "--chardev",
            f"socket,path={self.qmp_sock},server=on,wait=off,id=qmp0",
            "--monitor",
            "chardev=qmp0",
            "--pidfile",
            str(self.pidfile),
        ]
        if writable_export:
            args += ["--export", f"type=nbd,id={EXPORT},node-name={NODE},name={EXPORT},writable=on"]
        try:
            out = subprocess.run(args, capture_output=True, text=True, timeout=60, close_fds=True)
        except FileNotFoundError as exc:
            raise DaemonFailed(f"{QSD} is not installed (Debian package qemu-system-common)") from exc
        if out.returncode != 0:
            raise DaemonFailed(f"{QSD} could not open the volume: {out.stderr.strip()}")
        self.modefile.write_text(mode)
        log.info("started %s for %s (%s)", QSD, self.volume_id, mode, extra={"volume": self.volume_id})

    @contextlib.contextmanager
    def qmp(self, timeout: float = 30.0) -> Iterator[Qmp]:
        client = QEMUMonitorProtocol(str(self.qmp_sock))
        try:
            client.connect()
        except (QMPError, OSError) as exc:
            raise DaemonFailed(f"the daemon of boot volume {self.volume_id} does not answer: {exc}") from exc
        client.settimeout(timeout)
        try:
            yield Qmp(client, self.volume_id)
        finally:
            with contextlib.suppress(Exception):
                client.close()

    def stop(self) -> None:
        """Stop the daemon cleanly (flush, write bitmaps); kill it only if it will not go."""
        pid = self.pid()
        if pid is not None:
            try:
                with self.qmp(timeout=STOP_WAIT_S) as q:
                    q.run("quit")
            except Exception:  # unresponsive: ask the OS, then insist
                log.warning("daemon of %s did not take quit; terminating it", self.volume_id)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, STOP_WAIT_S):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 5.0)
        self.clear_stale()

    def clear_stale(self) -> None:
        """Remove what a stopped or killed daemon left: sockets (QSD never unlinks them), pid
        and mode files."""
        if self.pid() is not None:
            return
        for path in (self.qmp_sock, self.nbd_sock, self.pidfile, self.modefile):
            path.unlink(missing_ok=True)


def _file_cache(image: Path) -> str:
    """Open the image with O_DIRECT (QEMU's cache=none, as production machines run) where the
    filesystem allows it. Through the page cache, every read of a freshly written qcow2 cluster
    made the kernel zero-fill pages for the parts the write never touched, and read ahead more of
    them: 40 % of the daemon's time in a scattered incremental. tmpfs has no O_DIRECT."""
    try:
        os.close(os.open(image, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC))
    except OSError:  # EINVAL: no O_DIRECT here; anything else, QSD will say what is wrong
        return ""
    return ",cache.direct=on,aio=native"


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.02)
    return False


class Qmp:
    """A connected QMP session: commands, and the events that arrived with them."""

    def __init__(self, client: QEMUMonitorProtocol, volume_id: str) -> None:
        self.client, self.volume_id = client, volume_id

    def run(self, command: str, **args: Any) -> Any:
        try:
            return self.client.cmd(command, **args)
        except QMPError as exc:
            raise DaemonFailed(f"{command} failed on the daemon of {self.volume_id}: {exc}") from exc

    def events(self) -> list[dict[str, Any]]:
        return self.client.get_events(wait=False) or []

    def bitmaps(self) -> dict[str, dict[str, Any]]:
        for node in self.run("query-named-block-nodes", flat=True):
            if node["node-name"] == NODE:
                return {b["name"]: b for b in node.get("dirty-bitmaps", []) or []}
        raise DaemonFailed(f"the daemon of {self.volume_id} has no node {NODE}")

    def node_names(self) -> set[str]:
        return {n["node-name"] for n in self.run("query-named-block-nodes", flat=True)}

    def virtual_size(self) -> int:
        for node in self.run("query-named-block-nodes", flat=True):
            if node["node-name"] == NODE:
                return int(node["image"]["virtual-size"])
        raise DaemonFailed(f"the daemon of {self.volume_id} has no node {NODE}")
