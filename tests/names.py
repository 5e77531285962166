"""Make host names resolve for client subprocesses, the way an operator's /etc/hosts line would.

Preferred: the client runs in a mount namespace of its own (`unshare --mount`) where a copy of
/etc/hosts with the extra lines is bind-mounted over /etc/hosts, so the machine's file is never
touched. Where namespaces are not allowed, the lines are appended to /etc/hosts with a marker
unique to this run and removed again on exit (also after a failure). Where neither works the test
is skipped, or fails under BOOTVAULT_REQUIRE_SERVICES=1.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.dbs import services_required

HOSTS = Path("/etc/hosts")
Wrap = Callable[[Sequence[str]], list[str]]


def _unavailable(msg: str) -> None:
    if services_required():
        pytest.fail(f"name resolution for the test is required (BOOTVAULT_REQUIRE_SERVICES=1) but {msg}")
    pytest.skip(msg)


def _namespace_wrap(hosts_copy: Path) -> Wrap:
    def wrap(cmd: Sequence[str]) -> list[str]:
        script = 'mount --bind "$0" /etc/hosts && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(hosts_copy), *cmd]

    return wrap


def _resolves(wrap: Wrap, name: str, address: str) -> bool:
    try:
        out = subprocess.run(
            wrap(["getent", "hosts", name]), capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and out.stdout.split()[:1] == [address]


@contextlib.contextmanager
def resolving(names: dict[str, str], workdir: Path) -> Iterator[Wrap]:
    """names: host name -> address. Yields wrap(cmd): the command to run instead of cmd so that
    the names resolve in it."""
    lines = "".join(f"{addr} {name}\n" for name, addr in names.items())
    probe_name, probe_addr = next(iter(names.items()))

    if shutil.which("unshare") and shutil.which("getent"):
        copy = workdir / "hosts"
        copy.write_text(HOSTS.read_text() + lines)
        wrap = _namespace_wrap(copy)
        if _resolves(wrap, probe_name, probe_addr):
            yield wrap
            return

    marker = f"# bootvault-test {uuid.uuid4().hex}"
    try:
        with open(HOSTS, "r+") as fh:
            original = fh.read()
            added = "" if original.endswith("\n") or not original else "\n"
            added += "".join(f"{line}  {marker}\n" for line in lines.splitlines())
            fh.write(added)
    except OSError as exc:
        _unavailable(f"no mount namespace for a private /etc/hosts and {HOSTS} is not writable ({exc})")
    try:
        if not _resolves(list, probe_name, probe_addr):
            _unavailable(f"{probe_name} does not resolve to {probe_addr} even with a line in {HOSTS}")
        yield list
    finally:
        # Rewritten in place (it may be a bind mount that cannot be replaced): exactly as it was,
        # or, if someone else changed it meanwhile, with only the marked lines taken out.
        with open(HOSTS, "r+") as fh:
            now = fh.read()
            kept = (
                original
                if now == original + added
                else "".join(line for line in now.splitlines(keepends=True) if marker not in line)
            )
            fh.seek(0)
            fh.write(kept)
            fh.truncate()
