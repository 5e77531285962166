"""Shared fixtures: a live bootvault server on a random loopback port, and real OCI clients."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Deployment

E2E = Path(__file__).parent / "e2e"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything under tests/e2e starts servers, daemons or clients: marked `e2e`, so that
    `make test-fast` (-m "not e2e") runs the unit, contract and in-process tiers alone.

    Files marked `slow(minutes)` (a rough length, for this order only) come first, the longest
    first: pytest-xdist (--dist loadfile, with --no-loadscope-reorder in the addopts) hands out
    whole files in collection order, so they start at once and the short files fill in around
    them. By default xdist orders files by their number of tests, which left the few-test,
    many-minute files (the chaos soak, the cluster) to the end of the run."""
    for item in items:
        if E2E in item.path.parents:
            item.add_marker(pytest.mark.e2e)
    items.sort(key=_minutes_descending)  # stable: each file's tests stay together, in order


def _minutes_descending(item: pytest.Item) -> float:
    slow = item.get_closest_marker("slow")
    return -float(slow.args[0]) if slow else 0.0


@pytest.fixture(scope="session")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = Deployment(tmp_path_factory.mktemp("bootvault"))
    dep.start()
    yield dep
    dep.stop()


@pytest.fixture(scope="session")
def tenant(deployment: Deployment):  # type: ignore[no-untyped-def]
    return deployment.new_tenant("main")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """A SeaweedFS `weed mini` S3 server for the session (skipped without `weed`, unless
    BOOTVAULT_REQUIRE_SERVICES=1); see tests/s3server.py."""
    from tests.s3server import running_s3_server

    with running_s3_server(tmp_path_factory.mktemp("s3server")) as server:
        yield server


@pytest.fixture(scope="session", autouse=True)
def _no_daemons_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Volume daemons (qemu-storage-daemon, nbdkit) outlive the servers that start them, as they
    must in production; at the end of the session stop those whose files are under this run's
    temporary directory, so a test run leaves no processes behind."""
    yield
    base = str(tmp_path_factory.getbasetemp())
    for pidfile in Path(base).rglob("*.pid"):
        try:
            pid = int(pidfile.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            continue
        if base.encode() in cmdline and (b"qemu-storage-daemon" in cmdline or b"nbdkit" in cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
