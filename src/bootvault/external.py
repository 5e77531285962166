"""What bootvault needs beyond its Python packages: QEMU's tools, nbdkit with its python plugin,
and libnbd's Python binding (a Debian package, not on PyPI: PyPI's `nbd` is an unrelated notebook
diff tool). `bootvault doctor` lists them; the code that needs one says in one line what is
missing and how to get it (`missing_line`).

None of them is imported or run when this module is imported, so a `pip install`ed bootvault
starts, and answers --help and doctor, on a machine that has none of them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

PROBE_TIMEOUT_S = 20


class Missing(Exception):
    """A dependency is not there, or does not work; the message says what was found."""


@dataclass(frozen=True)
class Dependency:
    name: str
    purpose: str
    install: str  # how to get it, for a person
    probe: Callable[[], str]  # its version; raises Missing

    def missing_line(self, detail: str | None = None) -> str:
        why = f" ({detail})" if detail else ""
        return f"{self.name} is missing{why}: it {self.purpose}. Install {self.install}."


def _run(args: list[str]) -> list[str]:
    """The lines a probe prints, or Missing with the first line of its complaint."""
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except FileNotFoundError as exc:
        raise Missing(f"{args[0]} not found on PATH") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Missing(f"{args[0]} did not answer: {exc}") from exc
    if done.returncode != 0:
        complaint = (done.stderr or done.stdout).strip().splitlines()
        raise Missing(complaint[0] if complaint else f"{' '.join(args)} exited {done.returncode}")
    return done.stdout.strip().splitlines()


def _first_line(args: list[str]) -> str:
    lines = _run(args)
    return lines[0] if lines else ""


def _qemu_version(program: str) -> str:
    line = _first_line([program, "--version"])
    found = re.search(r"version (\S+)", line)
    return found.group(1) if found else line


def _nbdkit_version() -> str:
    return _first_line(["nbdkit", "--version"]).removeprefix("nbdkit ").strip()


def _nbdkit_python_version() -> str:
    """The plugin's version, and the Python it embeds: it imports this bootvault and its packages
    (pool/backing.py), so it must be the same minor version as the Python running bootvault."""
    lines = _run(["nbdkit", "python", "--dump-plugin"])
    fields = dict(line.split("=", 1) for line in lines if "=" in line)
    embedded = fields.get("python_version", "?")
    ours = f"{sys.version_info.major}.{sys.version_info.minor}"
    if not embedded.startswith(ours + "."):
        raise Missing(f"it embeds Python {embedded}, bootvault runs on {ours}")
    return f"{fields.get('version', '?')} (Python {embedded})"


def import_nbd() -> ModuleType:
    """libnbd's Python binding, or Missing."""
    try:
        import nbd
    except ImportError as exc:
        raise Missing(f"no module named 'nbd' in {sys.prefix}") from exc
    binding: ModuleType = nbd
    return binding


def _libnbd_version() -> str:
    return str(import_nbd().NBD().get_version())


QSD = Dependency(
    "qemu-storage-daemon",
    "serves each attached volume over NBD and takes point-in-time images for backups",
    "the Debian package qemu-system-common",
    lambda: _qemu_version("qemu-storage-daemon"),
)
QEMU_IMG = Dependency(
    "qemu-img",
    "creates, imports, converts, grows and exports volume files",
    "the Debian package qemu-utils",
    lambda: _qemu_version("qemu-img"),
)
NBDKIT = Dependency(
    "nbdkit",
    "serves a backup to a volume restored from it while the volume hydrates (instant restore)",
    "the Debian package nbdkit",
    _nbdkit_version,
)
NBDKIT_PYTHON = Dependency(
    "nbdkit python plugin",
    "runs bootvault's backing server inside nbdkit (instant restore)",
    "the Debian package nbdkit-plugin-python",
    _nbdkit_python_version,
)
LIBNBD = Dependency(
    "libnbd Python binding (module nbd)",
    "reads volumes over NBD for backups (serve with workers, worker)",
    "the Debian packages python3-libnbd and libnbd-bin, then make it visible to this Python: "
    "`make install` links it into .venv; elsewhere link /usr/lib/python3/dist-packages/nbd.py and "
    "libnbdmod*.so into the environment's site-packages (PyPI's `nbd` is another project)",
    _libnbd_version,
)
ALL = [QSD, QEMU_IMG, NBDKIT, NBDKIT_PYTHON, LIBNBD]


@dataclass(frozen=True)
class Found:
    dependency: Dependency
    version: str | None
    problem: str | None


def survey() -> list[Found]:
    """Every dependency: its version, or why it is missing."""
    found = []
    for dep in ALL:
        try:
            found.append(Found(dep, dep.probe(), None))
        except Missing as exc:
            found.append(Found(dep, None, str(exc)))
    return found


def require_libnbd() -> None:
    """Raise Missing with the one line that says what to install, unless libnbd's binding loads."""
    try:
        import_nbd()
    except Missing as exc:
        raise Missing(LIBNBD.missing_line(str(exc))) from exc
