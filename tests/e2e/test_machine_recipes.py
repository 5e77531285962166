"""The README's recipes for a machine's disk, run against an attached volume: QEMU's block layer
opens the attach URI (the `-drive` form) and the documented `-blockdev` options (in a
qemu-storage-daemon, which takes the same option syntax as the system emulator, not installed
here); the libvirt `<disk>` has the shape libvirt wants. And what the README says happens while
the service restarts: the disk keeps serving while `bootvault serve` is down, and with the
documented reconnect delay a client rides out a SIGKILL of the volume's daemon (the worker's
reconcile serves it again) and reads the right bytes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import nbd
import pytest

from tests.helpers import MIB, Deployment, make_image
from tests.nbdwriter import stop_daemons

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()
SIZE = 4 * MIB


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, re.S)


def _documented_blockdev(sock: str) -> str:
    (block,) = [b for b in _blocks("sh") if "-blockdev driver=nbd" in b]
    options = re.search(r"-blockdev (\S+)", block)
    assert options, block
    return options.group(1).replace('"$SOCK"', sock)


@pytest.fixture(scope="module")
def attached(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, str, str, bytes]]:
    root = tmp_path_factory.mktemp("machine")
    dep = Deployment(root)
    dep.start()
    make_image(root / "disk.img", SIZE, seed=71)
    tenant = dep.new_tenant("machine")
    volume = dep.import_volume(tenant, root / "disk.img")
    uri = dep.attach(volume)
    yield dep, volume, uri, (root / "disk.img").read_bytes()
    dep.stop()
    stop_daemons(dep.run_dir)


def _read(h: nbd.NBD, offset: int, length: int) -> bytes:
    return bytes(h.pread(length, offset))


def test_qemu_opens_the_attach_uri_as_documented(attached: tuple[Deployment, str, str, bytes]) -> None:
    _, _, uri, _ = attached
    assert any('-drive file="$URI",format=raw,if=virtio' in b for b in _blocks("sh"))
    info = subprocess.run(
        ["qemu-img", "info", "-f", "raw", "--output=json", uri], capture_output=True, text=True, timeout=60
    )
    assert info.returncode == 0, info.stderr
    assert '"virtual-size": 1073741824' in info.stdout


def test_libvirt_disk_has_the_nbd_unix_shape() -> None:
    (xml,) = [b for b in _blocks("xml") if "protocol='nbd'" in b]
    disk = ET.fromstring(xml)
    assert (disk.tag, disk.get("type"), disk.get("device")) == ("disk", "network", "disk")
    source = disk.find("source")
    assert source is not None and (source.get("protocol"), source.get("name")) == ("nbd", "disk")
    host = source.find("host")
    assert host is not None and host.get("transport") == "unix" and host.get("socket", "").endswith(".sock")
    driver = disk.find("driver")
    assert driver is not None and driver.get("type") == "raw"


def test_disk_keeps_serving_while_the_service_restarts(attached: tuple[Deployment, str, str, bytes]) -> None:
    dep, _, uri, image = attached
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        assert _read(h, 0, MIB) == image[:MIB]
        dep.stop()  # API and worker gone: the machine's connection is untouched
        h.pwrite(b"R" * 4096, 2 * MIB)
        h.flush()
        assert _read(h, 2 * MIB, 4096) == b"R" * 4096
        dep.start()
        assert _read(h, MIB, MIB) == image[MIB : 2 * MIB]
    finally:
        h.shutdown()


def test_documented_reconnect_rides_out_a_killed_daemon(
    attached: tuple[Deployment, str, str, bytes], tmp_path: Path
) -> None:
    dep, volume, uri, image = attached
    sock = uri.split("socket=", 1)[1]
    proxy_sock = tmp_path / "machine.sock"
    machine = subprocess.Popen(  # stands in for the machine: QEMU's NBD client with those options
        [
            "qemu-storage-daemon",
            "--blockdev",
            _documented_blockdev(sock),
            "--nbd-server",
            f"addr.type=unix,addr.path={proxy_sock}",
            "--export",
            "type=nbd,id=machine,node-name=boot,name=disk",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not proxy_sock.exists():
            assert machine.poll() is None, machine.stderr.read() if machine.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        h = nbd.NBD()
        h.connect_uri(f"nbd+unix:///disk?socket={proxy_sock}")
        assert _read(h, 3 * MIB, 4096) == image[3 * MIB : 3 * MIB + 4096]
        pid = int((Path(sock).parent / "qsd.pid").read_text())
        os.kill(pid, signal.SIGKILL)  # the volume's daemon dies under the machine
        box: dict[str, object] = {}
        reader = threading.Thread(target=lambda: box.update(data=_read(h, 0, MIB)), daemon=True)
        reader.start()
        reader.join(60)  # the worker's reconcile serves the volume again within seconds
        assert not reader.is_alive() and box.get("data") == image[:MIB]
        h.shutdown()
        assert (Path(sock).parent / "qsd.pid").read_text() != str(pid)
    finally:
        machine.terminate()
        machine.wait(30)
