"""Two (or more) bootvault regions on one machine: each its own data dir, port and database, and
the pairing commands an operator runs (docs/regions.md)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import oci

from tests.helpers import Deployment, Tenant

SCHEDULER_TICK = 1.0  # seconds between a region's scheduler ticks (policy copies, stall watchdog)


class Region(Deployment):
    """A Deployment serving region `name` (BOOTVAULT_REGION)."""

    def __init__(self, root: Path, name: str, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(root, **kw)
        self.name = name
        self.env["BOOTVAULT_REGION"] = name
        self.env["BOOTVAULT_SCHEDULER_INTERVAL_SECONDS"] = f"{SCHEDULER_TICK:g}"
        self.env["BOOTVAULT_MIN_RETENTION_SECONDS"] = "1"  # policy copies expire within a test
        self.env["BOOTVAULT_COPY_CALL_TIMEOUT_SECONDS"] = "5"

    def peers(self) -> list[str]:
        return self.cli("region", "list").stdout.split()[::2]


def pair(a: Region, b: Region) -> None:
    """`region invite` on a, `region join` on b with the token it printed last."""
    token = a.cli("region", "invite", "--endpoint", a.endpoint).stdout.strip().splitlines()[-1]
    b.cli("region", "join", "--endpoint", b.endpoint, token)


def run_oci_cli(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """The oci CLI as a user runs it (the file-permission and label warnings silenced)."""
    env = {
        **os.environ,
        "OCI_CLI_SUPPRESS_FILE_PERMISSIONS_WARNING": "True",
        "SUPPRESS_LABEL_WARNING": "True",
    }
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)


def client_in(tenant: Tenant, region: Region) -> oci.core.BlockstorageClient:
    """The tenant's own key, pointed at another region's endpoint."""
    return oci.core.BlockstorageClient(tenant.config, service_endpoint=region.endpoint)


def work_requests_in(tenant: Tenant, region: Region) -> oci.work_requests.WorkRequestClient:
    return oci.work_requests.WorkRequestClient(tenant.config, service_endpoint=region.endpoint)


class LinkProxy:
    """A TCP relay standing for the link between two regions: `cut()` closes every connection
    and refuses new ones until `restore()` (the far region stays up; only the link is gone)."""

    def __init__(self, target_port: int) -> None:
        import socket
        import threading

        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.up = True
        self.conns: list = []  # type: ignore[type-arg]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.up:
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.conns += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst) -> None:  # type: ignore[no-untyped-def]
        try:
            while data := src.recv(1 << 16):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.close()

    def cut(self) -> None:
        import socket

        self.up = False
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                    s.close()
                except OSError:
                    pass
            self.conns.clear()

    def restore(self) -> None:
        self.up = True

    def close(self) -> None:
        self.cut()
        self.listener.close()


def pair_via(a: Region, b: Region, b_endpoint: str) -> None:
    """Pair a with b, a reaching b at `b_endpoint` (a LinkProxy) and b reaching a directly."""
    token = a.cli("region", "invite", "--endpoint", a.endpoint).stdout.strip().splitlines()[-1]
    b.cli("region", "join", "--endpoint", b_endpoint, token)
