"""bootvault installed the way `pip install .` or pipx does it, into a plain venv that has no libnbd:
--help, doctor and every command that does not back up work; those that need libnbd stop with one
line that says what is missing and how to get it.

Kept fast and offline: the wheel is built without build isolation, installed with --no-deps and
--no-index, and the dependencies come from this test run's own venv through a directory of links
to its site-packages that leaves out libnbd's binding (which `make install` links there) and the
editable bootvault. The venv is made without system site-packages, where Debian keeps `nbd`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import MIB, free_port, make_image
from tests.nbdwriter import stop_daemons

ROOT = Path(__file__).resolve().parents[2]
LEFT_OUT = ("nbd.py", "libnbdmod", "bootvault", "__editable__", "_bootvault", "__pycache__")


def _run(args: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=300, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin directory of a plain venv holding bootvault as pip installs it."""
    root = tmp_path_factory.mktemp("plain")
    wheels, tree = root / "wheels", root / "tree"  # built from a copy: no build/ left in the work tree
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tree)
    built = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(tree),
        ]
    )
    assert built.returncode == 0, built.stderr
    venv = root / "venv"
    made = _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", "--without-pip", str(venv)])
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    )
    deps = root / "deps"
    deps.mkdir()
    ours = Path(sysconfig.get_paths()["purelib"])
    for entry in ours.iterdir():
        if not entry.name.startswith(LEFT_OUT) and not entry.name.endswith(".pth"):
            (deps / entry.name).symlink_to(entry)
    (site / "deps.pth").write_text(f"{deps}\n")
    (wheel,) = wheels.glob("bootvault-*.whl")
    installed = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ]
    )
    assert installed.returncode == 0, installed.stderr
    assert _run([str(python), "-c", "import nbd"]).returncode != 0, "libnbd leaked into the plain venv"
    return venv / "bin"


def _env(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BOOTVAULT_", "PYTHON", "VIRTUAL_ENV"))}
    return {**env, "BOOTVAULT_DATA_DIR": str(root / "data"), "COLUMNS": "200"}


def test_help_and_doctor_without_libnbd(plain: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    shown = _run([str(plain / "bootvault"), "--help"], env=env)
    assert shown.returncode == 0, shown.stderr
    assert "doctor" in shown.stdout and "serve" in shown.stdout
    assert (
        str(plain.parent)
        in _run([str(plain / "python"), "-c", "import bootvault; print(bootvault.__file__)"]).stdout
    )
    doctor = _run([str(plain / "bootvault"), "doctor"], env=env)
    assert doctor.returncode == 1, doctor.stdout + doctor.stderr
    lines = doctor.stdout.splitlines()
    for name in ("qemu-storage-daemon", "qemu-img", "nbdkit", "nbdkit python plugin"):
        assert any(line.startswith(f"ok       {name} ") for line in lines), doctor.stdout
    (missing,) = [line for line in lines if line.startswith("MISSING")]
    assert "libnbd Python binding" in missing and "python3-libnbd" in missing, missing


def test_commands_that_need_libnbd_say_so_in_one_line(plain: Path, tmp_path: Path) -> None:
    env = _env(tmp_path)
    for args in (["worker"], ["serve", "--port", "1"]):
        done = _run([str(plain / "bootvault"), *args], env=env)
        assert done.returncode == 1, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("error: libnbd Python binding (module nbd) is missing"), lines[0]
        assert "python3-libnbd" in lines[0] and "libnbd-bin" in lines[0]
    assert "--workers 0" in done.stderr  # serve says how to run without it


def test_commands_without_libnbd_work(plain: Path, tmp_path: Path) -> None:
    """Admin commands and serving a volume need QEMU, not libnbd."""
    env, cli = _env(tmp_path), str(plain / "bootvault")
    created = _run(
        [cli, "tenancy", "create", "--name", "t", "--oci-config", str(tmp_path / "oci" / "config")], env=env
    )
    assert created.returncode == 0, created.stderr
    tenancy = created.stdout.strip().splitlines()[-1]
    make_image(tmp_path / "disk.img", 4 * MIB, seed=3)
    imported = _run([cli, "volume", "import", "--compartment", tenancy, str(tmp_path / "disk.img")], env=env)
    assert imported.returncode == 0, imported.stderr
    volume = imported.stdout.strip().splitlines()[-1]
    try:
        attached = _run([cli, "volume", "attach", volume], env=env)
        assert attached.returncode == 0, attached.stderr
        assert attached.stdout.strip().splitlines()[-1].startswith("nbd+unix:///disk?socket=")
        detached = _run([cli, "volume", "detach", volume], env=env)
        assert detached.returncode == 0, detached.stderr
    finally:
        from bootvault.pool.daemon import socket_root

        stop_daemons(socket_root(tmp_path / "data" / "run"))


def test_the_api_alone_serves_without_libnbd(plain: Path, tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [str(plain / "bootvault"), "serve", "--workers", "0", "--port", str(port)],
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read() if server.stderr else ""
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "serve --workers 0 did not answer"
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(30)
