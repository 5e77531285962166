"""Upgrading from the previous release (commit 8aecd56: raw volumes `<ocid>.img`, no daemons):
its volumes and backups still restore bit-exact with the current release, its raw volumes are
converted to qcow2 on first use, and incrementals work from there on."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbd
import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from tests.helpers import MIB, Deployment, Tenant, make_image, wait_port, wait_state
from tests.nbdwriter import assert_zero_from, stop_daemons

PREVIOUS = "8aecd56"
REPO = Path(__file__).resolve().parents[2]
AD = "bootvault:AD-1"
GIB = 1 << 30
BS = 64 << 10


@pytest.fixture(scope="module")
def previous_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs the git history of the repository")
    root = tmp_path_factory.mktemp("previous")
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", PREVIOUS, "src"], capture_output=True, check=True, timeout=60
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive, check=True, timeout=60)
    return root / "src"


class PreviousRelease:
    """The previous release's code run on a deployment's data dir, with the same venv."""

    def __init__(self, dep: Deployment, src: Path) -> None:
        self.dep = dep
        self.env = {**dep.env, "PYTHONPATH": str(src)}
        self.proc: subprocess.Popen[bytes] | None = None

    def _cmd(self, *args: str) -> list[str]:
        return [sys.executable, "-c", "from bootvault.cli import main; main()", *args]

    def cli(self, *args: str) -> str:
        out = subprocess.run(self._cmd(*args), env=self.env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return out.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        log = open(self.dep.root / "previous.log", "ab")  # noqa: SIM115 - the server process keeps it
        args = self._cmd("serve", "--port", str(self.dep.port), "--workers", "1")
        self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.dep.port, alive=self._serving)

    def _serving(self) -> None:
        assert self.proc is None or self.proc.poll() is None, (self.dep.root / "previous.log").read_text()[
            -3000:
        ]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


@pytest.fixture
def dep(tmp_path: Path) -> Iterator[Deployment]:
    d = Deployment(tmp_path / "d")
    yield d
    d.stop()
    stop_daemons(d.run_dir)


def _backup(client: oci.core.BlockstorageClient, volume_id: str, kind: str) -> str:
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type=kind)
    backup_id = client.create_boot_volume_backup(details).data.id
    done = wait_state(client, "get_boot_volume_backup", backup_id, "AVAILABLE").data
    assert done.type == kind
    return backup_id


def _restore(client: oci.core.BlockstorageClient, tenant: Tenant, backup_id: str) -> str:
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    volume_id = client.create_boot_volume(details).data.id
    deadline = time.monotonic() + 180
    while True:  # an instant restore is AVAILABLE at once; it is whole once hydrated
        vol = client.get_boot_volume(volume_id).data
        if vol.lifecycle_state == "AVAILABLE" and vol.is_hydrated:
            return volume_id
        assert vol.lifecycle_state in ("RESTORING", "AVAILABLE"), (vol.lifecycle_state, vol.system_tags)
        assert time.monotonic() < deadline, "the restored volume was not hydrated in 180 s"
        time.sleep(0.1)


def _assert_content(dep: Deployment, volume_id: str, want: bytes, name: str) -> None:
    """`bootvault volume export` of the volume is `want`, then zeros up to its 1 GiB."""
    dest = dep.root / f"{name}.raw"
    out = dep.cli("volume", "export", volume_id, str(dest), check=False)
    assert out.returncode == 0, out.stderr
    assert dest.stat().st_size == GIB
    with open(dest, "rb") as fh:
        assert fh.read(len(want)) == want, f"{name}: the restored bytes differ"
    assert_zero_from(dest, len(want))
    dest.unlink()


def _bytes_read(dep: Deployment, backup_id: str) -> tuple[int, str]:
    for line in (dep.root / "server.log").read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message", "").startswith(f"backup {backup_id} read "):
            return int(entry["bytes_read"]), entry["message"].split("(", 1)[1].rstrip(")")
    raise AssertionError(f"no 'backup {backup_id} read' line in server.log")


def test_volumes_and_backups_of_the_previous_release_restore_bit_exact(
    dep: Deployment, previous_src: Path, tmp_path: Path
) -> None:
    image = tmp_path / "original.img"
    make_image(image, 48 * MIB, seed=31)
    original = image.read_bytes()
    pool = dep.data_dir / "volumes" / AD.replace(":", "_")

    # -- the previous release: a raw volume in the pool and a FULL backup of it
    old = PreviousRelease(dep, previous_src)
    old.cli("migrate")
    config = dep.root / "oci-up" / "config"
    tenant = Tenant(
        "up", old.cli("tenancy", "create", "--name", "up", "--oci-config", str(config)), config, dep.endpoint
    )
    volume_id = old.cli("volume", "import", "--compartment", tenant.tenancy_id, str(image))
    assert old.cli("volume", "path", volume_id) == str(pool / f"{volume_id}.img")
    assert (pool / f"{volume_id}.img").stat().st_size == GIB
    old.start()
    try:
        old_backup = _backup(tenant.client(), volume_id, "FULL")
    finally:
        old.stop()
    assert sorted(p.name for p in pool.iterdir()) == [f"{volume_id}.img"]

    # -- the current release on the same data dir
    dep.start()
    client = tenant.client()
    _assert_content(dep, _restore(client, tenant, old_backup), original, "old-backup")
    assert (pool / f"{volume_id}.img").exists()  # a restore does not touch the source volume

    # the first backup of the raw volume converts it and reads it whole: the parent has no bitmap
    first = _backup(client, volume_id, "INCREMENTAL")
    assert (pool / f"{volume_id}.qcow2").exists() and not (pool / f"{volume_id}.img").exists()
    read, what = _bytes_read(dep, first)
    assert what == "allocated" and read >= len(original) // 2
    _assert_content(dep, _restore(client, tenant, first), original, "first-new")

    # a machine writes; the next incremental reads only what it changed and restores exactly
    uri = dep.cli("volume", "attach", volume_id).stdout.strip().splitlines()[-1]
    changed = bytearray(original)
    writes = [(3 * MIB + 512, os.urandom(5000)), (20 * MIB, os.urandom(BS)), (47 * MIB, os.urandom(MIB))]
    h = nbd.NBD()
    h.connect_uri(uri)
    for offset, data in writes:
        h.pwrite(data, offset)
        changed[offset : offset + len(data)] = data
    h.flush()
    h.shutdown()
    dep.cli("volume", "detach", volume_id)
    second = _backup(client, volume_id, "INCREMENTAL")
    assert _bytes_read(dep, second) == (BS + BS + MIB, "changed since parent")
    _assert_content(dep, _restore(client, tenant, second), bytes(changed), "second-new")

    # and the previous release's backup is still whole after all that
    _assert_content(dep, _restore(client, tenant, old_backup), original, "old-backup-again")
