"""The deployment a chaos run faults: bootvault's processes, started and supervised here.

Two shapes (bench/chaos.py `--backend`):
- `sqlite`: embedded defaults (SQLite and the local store in one data dir), one API process
  (`serve --workers 0`) and one `bootvault worker`.
- `pg`: PostgreSQL (a database of its own per run, dropped at the end) and SeaweedFS S3, two API
  processes and two workers sharing the pool and the host's run directory (docs/deploy.md).

`Rig.kill(target, rng)` SIGKILLs one part and says what it killed; `supervise()` restarts a
dead API process, worker or S3 server as an operator's supervisor would (systemd Restart=always)
after RESTART_DELAY. The volume daemons (qemu-storage-daemon, nbdkit) are brought back by
bootvault itself: the workers' reconcile serves an attached volume again and a hydration
restarts its backing server. On PostgreSQL, `pg` terminates every backend of the run's database.
"""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from tests.helpers import wait_port  # noqa: E402
from tests.s3server import S3Server, start_s3_server  # noqa: E402

BIN = Path(sys.executable).parent
PG_ADMIN = os.environ.get("BOOTVAULT_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
RESTART_DELAY = (0.3, 2.0)  # seconds a killed part stays down before its supervisor restarts it

# Fast clocks for a run of minutes: schedules fire and expire, leases run out, GC and verify run.
FAST = {
    "BOOTVAULT_LEASE_SECONDS": "3",
    "BOOTVAULT_POLL_SECONDS": "0.2",
    "BOOTVAULT_MIN_RETENTION_SECONDS": "1",
    "BOOTVAULT_SCHEDULER_INTERVAL_SECONDS": "0.5",
    "BOOTVAULT_RETENTION_DAY_SECONDS": "7200",  # a 1-DAY lock outlasts any run
    "BOOTVAULT_GC_GRACE_SECONDS": "5",
    "BOOTVAULT_GC_INTERVAL_SECONDS": "40",
    "BOOTVAULT_VERIFY_INTERVAL_SECONDS": "90",
    "BOOTVAULT_HYDRATE_SPEED_BPS": str(2 << 20),  # slow enough that reads meet unhydrated data
    "BOOTVAULT_ENGINE_THREADS": "2",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])




@dataclass
class Part:
    """One supervised process: how to start it, the process, and when it was killed."""

    name: str
    args: list[str]
    port: int | None = None
    proc: subprocess.Popen[bytes] | None = None
    down_since: float | None = None
    restart_after: float = 0.0


@dataclass
class Rig:
    root: Path
    backend: str
    env: dict[str, str] = field(default_factory=dict)
    parts: dict[str, Part] = field(default_factory=dict)
    s3: S3Server | None = None
    s3_args: list[str] = field(default_factory=list)
    pg_db: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: bool = False

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{p.port}" for p in self.parts.values() if p.port]

    @property
    def run_dir(self) -> Path:
        from bootvault.pool.daemon import socket_root

        return socket_root(Path(self.env["BOOTVAULT_RUN_DIR"]))

    def db_url(self) -> str:
        if self.backend == "pg":
            return PG_ADMIN.rsplit("/", 1)[0] + "/" + self.pg_db
        return f"sqlite:///{self.root / 'data' / 'bootvault.db'}"

    # -- start and stop -------------------------------------------------------------------------

    def start(self) -> None:
        # The run's processes import a copy of src/bootvault taken now: edits made during a long
        # run never mix two versions of the code (restarted processes would load the new one).
        shutil.copytree(ROOT / "src" / "bootvault", self.root / "src" / "bootvault",
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        pythonpath = os.pathsep.join(p for p in (str(self.root / "src"), os.environ.get("PYTHONPATH")) if p)
        self.env = {
            **os.environ,
            **FAST,
            "PYTHONPATH": pythonpath,
            "BOOTVAULT_DATA_DIR": str(self.root / "data"),
            "BOOTVAULT_RUN_DIR": str(self.root / "run"),
            "BOOTVAULT_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        }
        apis, workers = (2, 2) if self.backend == "pg" else (1, 1)
        if self.backend == "pg":
            self._start_pg()
            self._start_s3()
        self.cli("migrate")
        for i in range(apis):
            port = free_port()
            self.parts[f"api{i}"] = Part(f"api{i}", ["serve", "--workers", "0", "--port", str(port)], port)
        for i in range(workers):
            self.parts[f"worker{i}"] = Part(f"worker{i}", ["worker"])
        for part in self.parts.values():
            self._spawn(part)
        for part in self.parts.values():
            if part.port:
                wait_port(part.port, timeout=60)

    def _start_pg(self) -> None:
        from sqlalchemy import create_engine, text

        self.pg_db = f"bvchaos_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{self.pg_db}"'))
        admin.dispose()
        self.env["BOOTVAULT_DATABASE_URL"] = self.db_url()

    def _start_s3(self) -> None:
        directory = self.root / "s3"
        directory.mkdir()
        self.s3 = start_s3_server(directory)
        self.s3_args = list(self.s3.process.args)  # type: ignore[arg-type]
        self.env.update(
            BOOTVAULT_STORE_URL=f"s3://{self.s3.bucket}/chaos?endpoint={self.s3.endpoint}",
            AWS_ACCESS_KEY_ID=self.s3.access_key,
            AWS_SECRET_ACCESS_KEY=self.s3.secret_key,
        )

    def _spawn(self, part: Part) -> None:
        log = open(self.root / f"{part.name}.log", "ab")  # noqa: SIM115 - the process keeps it
        env = {**self.env, "BOOTVAULT_DATA_DIR": str(self.root / "data")}
        part.proc = subprocess.Popen([str(BIN / "bootvault"), *part.args], env=env, stdout=log, stderr=log)
        part.down_since = None

    def stop(self) -> None:
        self.stopping = True
        for part in self.parts.values():
            if part.proc and part.proc.poll() is None:
                part.proc.send_signal(signal.SIGTERM)
        for part in self.parts.values():
            if part.proc:
                try:
                    part.proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    part.proc.kill()
                    part.proc.wait()
        self._stop_daemons()
        if self.s3:
            self.s3.stop()
        if self.pg_db:
            from sqlalchemy import create_engine, text

            admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{self.pg_db}" WITH (FORCE)'))
            admin.dispose()

    def _stop_daemons(self) -> None:
        from tests.nbdwriter import stop_daemons

        stop_daemons(self.run_dir)

    def cli(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        run = subprocess.run(
            [str(BIN / "bootvault"), *args], env=self.env, capture_output=True, text=True, timeout=timeout
        )
        if check and run.returncode != 0:
            raise RuntimeError(f"bootvault {' '.join(args)} failed ({run.returncode}):\n{run.stderr[-2000:]}")
        return run

    # -- faults ---------------------------------------------------------------------------------

    def targets(self) -> list[str]:
        out = ["api", "worker", "qsd", "nbdkit"]
        return out + (["s3", "pg"] if self.backend == "pg" else [])

    def kill(self, target: str, rng: random.Random) -> str | None:
        """SIGKILL one part of the kind `target`; what was killed, or None if none was running."""
        if target in ("api", "worker"):
            with self.lock:
                alive = [p for p in self.parts.values() if p.name.startswith(target) and _alive(p)]
                if not alive:
                    return None
                part = rng.choice(alive)
                assert part.proc is not None
                part.proc.kill()
                part.proc.wait()
                self._down(part, rng)
            return part.name
        if target in ("qsd", "nbdkit"):
            pidfiles = sorted(self.run_dir.glob("*/qsd.pid" if target == "qsd" else "*/backing.pid"))
            rng.shuffle(pidfiles)
            for pidfile in pidfiles:
                if _kill_pidfile(pidfile, b"qemu-storage-daemon" if target == "qsd" else b"nbdkit"):
                    return f"{target} {pidfile.parent.name}"
            return None
        if target == "s3":
            assert self.s3 is not None
            with self.lock:
                if self.s3.process.poll() is not None:
                    return None
                self.s3.process.kill()
                self.s3.process.wait()
                self.s3_down = time.monotonic() + rng.uniform(*RESTART_DELAY)
            return "s3"
        if target == "pg":
            return f"pg {self._terminate_backends()} backends"
        raise ValueError(target)

    def _down(self, part: Part, rng: random.Random) -> None:
        part.down_since = time.monotonic()
        part.restart_after = part.down_since + rng.uniform(*RESTART_DELAY)

    def _terminate_backends(self) -> int:
        from sqlalchemy import create_engine, text

        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :db AND pid <> pg_backend_pid()"
                    ),
                    {"db": self.pg_db},
                ).all()
        finally:
            admin.dispose()
        return len(rows)

    def supervise(self) -> None:
        """Restart what is down and due (called often by the chaos thread)."""
        now = time.monotonic()
        with self.lock:
            if self.stopping:
                return
            for part in self.parts.values():
                if part.proc and part.proc.poll() is not None and now >= part.restart_after:
                    self._spawn(part)
            if self.s3 and self.s3.process.poll() is not None and now >= getattr(self, "s3_down", 0):
                self._restart_s3()

    def _restart_s3(self) -> None:
        """The same `weed mini` command line: same ports, data and credentials."""
        assert self.s3 is not None
        env = {**os.environ, "TMPDIR": str(self.s3.directory)}
        with open(self.s3.directory / "weed.log", "ab") as log:
            self.s3.process = subprocess.Popen(
                self.s3_args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def all_up(self) -> bool:
        with self.lock:
            up = all(_alive(p) for p in self.parts.values())
            return up and (self.s3 is None or self.s3.process.poll() is None)


def _alive(part: Part) -> bool:
    return part.proc is not None and part.proc.poll() is None


def _kill_pidfile(pidfile: Path, name: bytes) -> bool:
    try:
        pid = int(pidfile.read_text().strip())
        if name not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return False
        os.kill(pid, signal.SIGKILL)
        return True
    except (OSError, ValueError):
        return False


def json_dump(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=1, default=str))
