"""Test helpers that drive bootvault the way users do: the CLI, the live server, the oci SDK."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import oci

BIN = Path(sys.executable).parent
MIB = 1 << 20
NBD_WRITE = 4 * MIB  # QEMU's NBD server refuses requests over 32 MiB


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def sha256_file(path: Path, length: int | None = None) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        remaining = length
        while True:
            n = MIB if remaining is None else min(MIB, remaining)
            chunk = fh.read(n)
            if not chunk:
                break
            h.update(chunk)
            if remaining is not None:
                remaining -= len(chunk)
                if remaining == 0:
                    break
    if length is not None and remaining:
        h.update(bytes(remaining))  # beyond EOF reads as zeros
    return h.hexdigest()


def make_image(path: Path, size: int, seed: int = 1) -> None:
    """A disk image with holes, compressible bytes (from /usr/bin) and random bytes."""
    rng = random.Random(seed)
    text = b"".join(
        p.read_bytes() for p in sorted(Path("/usr/bin").iterdir())[:40] if p.is_file() and not p.is_symlink()
    )
    with open(path, "wb") as fh:
        fh.truncate(size)
        off = 0
        while off < size:
            run = min(rng.choice([1, 2, 3]) * MIB // 2, size - off)
            kind = rng.choice(["hole", "text", "random"])
            if kind == "text":
                start = rng.randrange(0, max(1, len(text) - run))
                fh.seek(off)
                fh.write(text[start : start + run])
            elif kind == "random":
                fh.seek(off)
                fh.write(rng.randbytes(run))
            off += run


def wait_port(
    port: int, *, host: str = "127.0.0.1", timeout: float = 30, alive: Callable[[], None] | None = None
) -> None:
    """Return once something listens on host:port; `alive` raises when what should listen has
    died, so a crash is reported at once rather than at the timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        if alive is not None:
            alive()
        time.sleep(0.1)
    raise RuntimeError(f"nothing listened on {host}:{port} within {timeout:g} s")


@dataclass
class Tenant:
    name: str
    tenancy_id: str
    config_path: Path
    endpoint: str

    @property
    def config(self) -> dict:
        return oci.config.from_file(str(self.config_path))

    def client(self, **kw) -> oci.core.BlockstorageClient:  # type: ignore[no-untyped-def]
        return oci.core.BlockstorageClient(self.config, service_endpoint=self.endpoint, **kw)


def log_entries(log: Path) -> list[dict[str, Any]]:
    """The JSON records of a bootvault log file (lines that are not JSON, such as a traceback
    printed by a dying process, are skipped)."""
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                entries.append(json.loads(line))
    return entries


class Deployment:
    """A bootvault data dir plus a server process (API + in-process worker).

    HTTPS: `tls=(cert, key)` serves with that pair, `tls_demo=True` with the demo CA that
    `serve --tls-demo` makes (clients trust `ca_bundle`)."""

    def __init__(
        self,
        root: Path,
        workers: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: tuple[Path, Path] | None = None,
        tls_demo: bool = False,
    ) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.host = host
        self.port = port or free_port(host)
        self.tls = tls
        self.tls_demo = tls_demo
        scheme = "https" if tls or tls_demo else "http"
        self.endpoint = f"{scheme}://{host}:{self.port}"
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            "BOOTVAULT_DATA_DIR": str(self.data_dir),
            "BOOTVAULT_LEASE_SECONDS": "3",
            "BOOTVAULT_POLL_SECONDS": "0.2",
        }

    def cli(
        self, *args: str, check: bool = True, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "bootvault"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=300,
            input=input,
        )

    def start(self) -> None:
        self.cli("migrate")
        log = open(self.root / "server.log", "ab")  # noqa: SIM115 - the server process keeps it
        args = ["serve", "--host", self.host, "--port", str(self.port), "--workers", str(self.workers)]
        if self.tls:
            args += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        if self.tls_demo:
            args.append("--tls-demo")
        self.proc = subprocess.Popen(
            [str(BIN / "bootvault"), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port, host=self.host, alive=self._serving)

    def _serving(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"server exited: {(self.root / 'server.log').read_text()[-3000:]}")

    @property
    def ca_bundle(self) -> Path:
        """What clients of a `tls_demo` deployment trust: the demo CA's certificate."""
        return self.data_dir / "tls" / "ca.pem"

    @property
    def run_dir(self) -> Path:
        """Where the server's volume daemons keep their sockets (short enough for them)."""
        from bootvault.pool.daemon import socket_root

        return socket_root(self.data_dir / "run")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._print_warnings()

    def _print_warnings(self, last: int = 30) -> None:
        """The server's last warnings and errors, on stdout: pytest shows them when a test fails."""
        log = self.root / "server.log"
        if log.exists():
            noisy = [e for e in log_entries(log) if e.get("level") in ("WARNING", "ERROR")]
            for entry in noisy[-last:]:
                print("server:", json.dumps(entry)[:600])

    def new_tenant(self, name: str) -> Tenant:
        config = self.root / f"oci-{name}" / "config"
        out = self.cli("tenancy", "create", "--name", name, "--oci-config", str(config)).stdout
        return Tenant(name, out.strip().splitlines()[-1], config, self.endpoint)

    def import_volume(
        self, tenant: Tenant, image: Path, name: str = "vol", compartment: str | None = None
    ) -> str:
        out = self.cli(
            "volume",
            "import",
            "--compartment",
            compartment or tenant.tenancy_id,
            "--display-name",
            name,
            str(image),
        ).stdout
        return out.strip().splitlines()[-1]

    def volume_path(self, volume_id: str) -> Path:
        """The volume's qcow2 file in the pool: to inspect (qemu-img info, its allocation), never
        to read as the volume's content or to write (see volume_sha256 and write_volume)."""
        return Path(self.cli("volume", "path", volume_id).stdout.strip().splitlines()[-1])

    def volume_size(self, volume_id: str) -> int:
        """The volume's virtual size, as qemu-img reports it for its qcow2 file."""
        out = subprocess.run(
            ["qemu-img", "info", "-U", "--output=json", str(self.volume_path(volume_id))],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        info = json.loads(out)
        assert info["format"] == "qcow2", info
        return int(info["virtual-size"])

    @contextlib.contextmanager
    def exported(self, volume_id: str, fmt: str = "raw") -> Iterator[Path]:
        """The volume's content as `bootvault volume export` writes it, in a temporary file."""
        with tempfile.TemporaryDirectory(dir=self.root, prefix="export-") as tmp:
            dest = Path(tmp) / f"volume.{fmt}"
            self.cli("volume", "export", "--format", fmt, volume_id, str(dest))
            yield dest

    def volume_sha256(self, volume_id: str, length: int | None = None) -> str:
        """sha256 of the volume's content as raw bytes (sha256_file semantics for `length`)."""
        with self.exported(volume_id) as path:
            return sha256_file(path, length)

    def attach(self, volume_id: str) -> str:
        """Serve the volume over NBD (`bootvault volume attach`); returns its NBD URI."""
        return self.cli("volume", "attach", volume_id).stdout.strip().splitlines()[-1]

    def detach(self, volume_id: str) -> None:
        self.cli("volume", "detach", volume_id)

    def write_volume(self, volume_id: str, writes: Iterable[tuple[int, bytes]]) -> None:
        """Write into the volume the way a machine does: attach it, write (offset, data) pieces
        through its NBD URI with libnbd, flush, and detach."""
        import nbd

        uri = self.attach(volume_id)
        try:
            h = nbd.NBD()
            h.connect_uri(uri)
            try:
                for offset, data in writes:
                    view = memoryview(data)
                    for pos in range(0, len(view), NBD_WRITE):
                        h.pwrite(bytes(view[pos : pos + NBD_WRITE]), offset + pos)
                h.flush()
            finally:
                h.shutdown()
        finally:
            self.detach(volume_id)


def sleep_until(moment: float) -> None:
    """Until time.monotonic() reaches `moment`: a check that something did NOT happen for a while
    after an event counts the time since the event, not a fixed sleep after whatever came next."""
    time.sleep(max(0.0, moment - time.monotonic()))


def wait_state(client: oci.core.BlockstorageClient, getter: str, ident: str, state: str, timeout: int = 120):  # type: ignore[no-untyped-def]
    resp = getattr(client, getter)(ident)
    return oci.wait_until(
        client, resp, "lifecycle_state", state, max_wait_seconds=timeout, max_interval_seconds=1
    )


def wait_hydrated(client: oci.core.BlockstorageClient, volume_id: str, timeout: int = 300):  # type: ignore[no-untyped-def]
    """A restored volume is AVAILABLE at once and copies the backup's data in the background
    (instant restore); wait until it holds all of it (isHydrated) and return it."""
    resp = oci.wait_until(
        client,
        client.get_boot_volume(volume_id),
        evaluate_response=lambda r: (
            r.data.is_hydrated or r.data.lifecycle_state not in ("RESTORING", "PROVISIONING", "AVAILABLE")
        ),
        max_wait_seconds=timeout,
        max_interval_seconds=1,
    )
    vol = resp.data
    assert vol.lifecycle_state == "AVAILABLE" and vol.is_hydrated, (vol.lifecycle_state, vol.system_tags)
    return vol


def raw_request(
    tenant: Tenant, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
):  # type: ignore[no-untyped-def]
    """A request signed by the SDK's own signer, for what the SDK refuses to send or parse."""
    from oci._vendor import requests

    cfg = tenant.config
    signer = oci.signer.Signer(cfg["tenancy"], cfg["user"], cfg["fingerprint"], cfg["key_file"])
    hdrs = {"content-type": "application/json", "accept": "application/json", **(headers or {})}
    req = requests.Request(method, tenant.endpoint + "/20160918" + path, data=body, headers=hdrs)
    prepared = req.prepare()
    signer(prepared)
    with requests.Session() as session:
        return session.send(prepared, timeout=30)
