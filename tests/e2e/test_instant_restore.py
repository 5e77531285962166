"""Instant restore: a volume restored from a backup is AVAILABLE at once with isHydrated false, reads
the backup's exact bytes on demand, keeps the machine's writes, and hydrates in the background
through kills of its worker and of its daemon. Real QSD, nbdkit and NBD; the copy is slowed
(BOOTVAULT_HYDRATE_SPEED_BPS) so the tests act while it runs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
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

from bootvault.pool.backing import BackingServer
from bootvault.pool.daemon import Runtime
from tests.e2e.test_worker_lifecycle import WorkerProcess
from tests.helpers import MIB, Deployment, Tenant, make_image, sha256_file, wait_state
from tests.nbdwriter import stop_daemons

pytestmark = pytest.mark.slow(2)

AD = "bootvault:AD-1"
SIZE = 24 * MIB
SLOW = str(2 * MIB)  # bytes per second: the copy takes ~10 s for this image's data
THROTTLED = str(256 << 10)


def _deployment(root: Path, workers: int = 1, **env: str) -> Deployment:
    dep = Deployment(root, workers=workers)
    # While the machine reads on demand the copy slows to THROTTLED, so that on a busy machine a
    # test that reads the whole volume still finishes its reads before the volume is hydrated.
    dep.env.update({"BOOTVAULT_HYDRATE_SPEED_BPS": SLOW, "BOOTVAULT_HYDRATE_THROTTLED_BPS": THROTTLED, **env})
    return dep


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    dep = _deployment(tmp_path_factory.mktemp("instant"))
    dep.start()
    yield dep
    dep.stop()
    stop_daemons(dep.run_dir)  # they daemonize: nothing else would stop them


def _image(path: Path, seed: int) -> bytes:
    make_image(path, SIZE, seed=seed)
    return path.read_bytes()


def _backup(tenant: Tenant, volume_id: str) -> str:
    client = tenant.client()
    created = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type="FULL")
    )
    return wait_state(client, "get_boot_volume_backup", created.data.id, "AVAILABLE").data.id


def _restore(tenant: Tenant, backup_id: str) -> oci.core.models.BootVolume:
    client = tenant.client()
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    vol = client.create_boot_volume(details).data
    deadline = time.monotonic() + 60
    while vol.lifecycle_state != "AVAILABLE":
        assert vol.lifecycle_state in ("PROVISIONING", "RESTORING"), vol.system_tags
        assert time.monotonic() < deadline
        time.sleep(0.05)
        vol = client.get_boot_volume(vol.id).data
    return vol


def _hydrated(tenant: Tenant, volume_id: str, timeout: float = 180) -> oci.core.models.BootVolume:
    client, deadline = tenant.client(), time.monotonic() + timeout
    while True:
        vol = client.get_boot_volume(volume_id).data
        if vol.is_hydrated or vol.lifecycle_state == "FAULTY":
            return vol
        assert time.monotonic() < deadline, f"still hydrating: {vol.system_tags}"
        time.sleep(0.25)


def _export(dep: Deployment, volume_id: str, dest: Path) -> str:
    """sha256 of the volume's raw export (the whole volume: the image, then zeros)."""
    dep.cli("volume", "export", volume_id, str(dest))
    digest = sha256_file(dest)
    dest.unlink()
    return digest


def _sha(data: bytes, dest: Path) -> str:
    """sha256 of data padded with zeros to the volume's size (1 GiB), as an export has it."""
    dest.write_bytes(data)
    return sha256_file(dest, 1 << 30)


def _wait_served(uri: str, timeout: float = 30) -> None:
    """Until the NBD server at `uri` takes connections."""
    deadline = time.monotonic() + timeout
    while True:
        h = nbd.NBD()
        try:
            h.connect_uri(uri)
            h.shutdown()
            return
        except nbd.Error:
            assert time.monotonic() < deadline, f"{uri} is not served"
            time.sleep(0.2)


def _read_all(uri: str, size: int) -> bytes:
    h = nbd.NBD()
    h.connect_uri(uri)
    out = b"".join(bytes(h.pread(min(4 * MIB, size - off), off)) for off in range(0, size, 4 * MIB))
    h.shutdown()
    return out


def test_available_at_once_reads_exact_bytes_and_keeps_writes(slow: Deployment, tmp_path: Path) -> None:
    tenant = slow.new_tenant("instant")
    original = _image(tmp_path / "disk.img", seed=21)
    source = slow.import_volume(tenant, tmp_path / "disk.img", "source")
    backup_id = _backup(tenant, source)
    vol = _restore(tenant, backup_id)
    assert vol.is_hydrated is False and vol.lifecycle_state == "AVAILABLE"
    uri = slow.cli("volume", "attach", vol.id).stdout.strip().splitlines()[-1]
    assert tenant.client().get_boot_volume(vol.id).data.is_hydrated is False
    whole = _read_all(uri, SIZE)  # read while it hydrates: every byte is the backup's
    assert hashlib.sha256(whole).hexdigest() == hashlib.sha256(original).hexdigest()
    h = nbd.NBD()
    h.connect_uri(uri)
    writes = {0: b"A" * 4096, 5 * MIB + 512: b"B" * 8192, SIZE - 4096: b"C" * 4096}
    for off, data in writes.items():
        h.pwrite(data, off)
    h.flush()
    h.shutdown()
    assert tenant.client().get_boot_volume(vol.id).data.is_hydrated is False  # the writes came first
    done = _hydrated(tenant, vol.id)
    assert done.is_hydrated and done.lifecycle_state == "AVAILABLE"
    slow.cli("volume", "detach", vol.id)
    expected = bytearray(original)
    for off, data in writes.items():
        expected[off : off + len(data)] = data
    want = _sha(bytes(expected), tmp_path / "expected.raw")
    assert _export(slow, vol.id, tmp_path / "after.raw") == want
    # the volume no longer reads from the backup: its backing is the local base, no server runs
    path = Path(slow.cli("volume", "path", vol.id).stdout.strip())
    info = json.loads(os.popen(f"qemu-img info --output=json {path}").read())
    assert (info["backing-filename"], info["backing-filename-format"]) == (f"{vol.id}.base", "raw")
    assert not path.with_suffix(".backing").exists()
    assert not list(slow.run_dir.glob("*/backing.pid"))
    # the writes survive a later backup of the restored volume, and its own instant restore
    again = _restore(tenant, _backup(tenant, vol.id))
    _hydrated(tenant, again.id)
    assert _export(slow, again.id, tmp_path / "again.raw") == want


def test_backup_cannot_be_deleted_while_a_volume_hydrates_from_it(slow: Deployment, tmp_path: Path) -> None:
    tenant = slow.new_tenant("pinned")
    _image(tmp_path / "disk.img", seed=22)
    backup_id = _backup(tenant, slow.import_volume(tenant, tmp_path / "disk.img"))
    vol = _restore(tenant, backup_id)
    client = tenant.client()
    with pytest.raises(oci.exceptions.ServiceError) as info:
        client.delete_boot_volume_backup(backup_id)
    assert (info.value.status, info.value.code) == (409, "IncorrectState")
    assert vol.id in info.value.message and "hydrat" in info.value.message
    assert client.get_boot_volume_backup(backup_id).data.lifecycle_state == "AVAILABLE"
    _hydrated(tenant, vol.id)
    client.delete_boot_volume_backup(backup_id)
    wait_state(client, "get_boot_volume_backup", backup_id, "TERMINATED")


def test_restore_requests_that_cannot_be(slow: Deployment, tmp_path: Path) -> None:
    tenant = slow.new_tenant("refused")
    _image(tmp_path / "disk.img", seed=23)
    source = slow.import_volume(tenant, tmp_path / "disk.img")
    backup_id = _backup(tenant, source)
    client = tenant.client()
    small = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        size_in_gbs=0,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    with pytest.raises(oci.exceptions.ServiceError) as info:
        client.create_boot_volume(small)
    assert info.value.status == 400 and "sizeInGBs" in info.value.message
    client.delete_boot_volume_backup(backup_id)
    wait_state(client, "get_boot_volume_backup", backup_id, "TERMINATED")
    gone = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    with pytest.raises(oci.exceptions.ServiceError) as info:
        client.create_boot_volume(gone)
    assert (info.value.status, info.value.code) == (409, "IncorrectState")


def _daemon_pid(dep: Deployment, volume_id: str, name: str) -> int:
    for runtime in dep.run_dir.iterdir():
        if (runtime / "volume").exists() and (runtime / "volume").read_text() == volume_id:
            return int((runtime / name).read_text())
    raise AssertionError(f"no runtime directory for {volume_id}")


def _progress(tenant: Tenant, volume_id: str) -> int:
    tags = tenant.client().get_boot_volume(volume_id).data.system_tags or {}
    value = tags.get("bootvault", {}).get("hydrationProgress")
    assert value is None or isinstance(value, str), tags  # OCI tag values are strings (Terraform)
    return int(value or 0)


def test_hydration_survives_sigkill_of_its_daemon(slow: Deployment, tmp_path: Path) -> None:
    """The daemon serving the machine dies while the volume hydrates: the worker serves it again
    (reading from the backup), the hydration goes on, and a write made before the kill is kept."""
    tenant = slow.new_tenant("qsdkill")
    original = _image(tmp_path / "disk.img", seed=24)
    vol = _restore(tenant, _backup(tenant, slow.import_volume(tenant, tmp_path / "disk.img")))
    uri = slow.cli("volume", "attach", vol.id).stdout.strip().splitlines()[-1]
    h = nbd.NBD()
    h.connect_uri(uri)
    h.pwrite(b"W" * 4096, MIB)
    h.flush()
    h.shutdown()
    deadline = time.monotonic() + 60
    while _progress(tenant, vol.id) < 1:  # the copy is under way
        assert time.monotonic() < deadline
        time.sleep(0.2)
    os.kill(_daemon_pid(slow, vol.id, "qsd.pid"), signal.SIGKILL)
    done = _hydrated(tenant, vol.id)
    assert done.is_hydrated, done.system_tags
    expected = bytearray(original)
    expected[MIB : MIB + 4096] = b"W" * 4096
    _wait_served(uri)  # the worker's reconcile serves the attached volume again (every 5 s)
    assert _read_all(uri, SIZE) == bytes(expected)  # served again, now from the local base
    slow.cli("volume", "detach", vol.id)
    assert _export(slow, vol.id, tmp_path / "out.raw") == _sha(bytes(expected), tmp_path / "want.raw")


def test_hydration_survives_sigkill_of_its_worker(tmp_path: Path) -> None:
    dep = _deployment(tmp_path / "dep", workers=0)
    dep.start()
    worker = WorkerProcess(dep)
    try:
        tenant = dep.new_tenant("workerkill")
        original = _image(tmp_path / "disk.img", seed=25)
        vol = _restore(tenant, _backup(tenant, dep.import_volume(tenant, tmp_path / "disk.img")))
        deadline = time.monotonic() + 60
        while _progress(tenant, vol.id) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        worker.kill()  # a new worker takes the job over and restores the base again
        worker = WorkerProcess(dep)
        done = _hydrated(tenant, vol.id)
        assert done.is_hydrated, done.system_tags
        assert _export(dep, vol.id, tmp_path / "out.raw") == _sha(original, tmp_path / "want.raw")
    finally:
        worker.stop()
        dep.stop()


def test_unreadable_backup_data_is_an_io_error_then_faulty(tmp_path: Path) -> None:
    # three retries (back-offs of 2, 4 and 8 s): the volume is still hydrating when the CLI,
    # slow to start on a busy machine, attaches it; with one, it could be FAULTY already
    dep = _deployment(tmp_path / "dep", BOOTVAULT_HYDRATE_RETRIES="3")
    dep.start()
    try:
        tenant = dep.new_tenant("broken")
        _image(tmp_path / "disk.img", seed=26)
        backup_id = _backup(tenant, dep.import_volume(tenant, tmp_path / "disk.img"))
        for pack in (dep.data_dir / "store" / "packs").rglob("*"):
            if pack.is_file():  # damage every stored block (the manifest stays readable)
                data = bytearray(pack.read_bytes())
                for off in range(64, len(data), 4096):
                    data[off] ^= 0xFF
                pack.write_bytes(bytes(data))
        vol = _restore(tenant, backup_id)
        uri = dep.cli("volume", "attach", vol.id).stdout.strip().splitlines()[-1]
        h = nbd.NBD()
        h.connect_uri(uri)
        with pytest.raises(nbd.Error) as failed:  # never zeros, never stale bytes
            for off in range(0, SIZE, MIB):
                h.pread(MIB, off)
        assert "command failed" in str(failed.value)  # the daemon answered the read with an error
        done = _hydrated(tenant, vol.id)
        assert done.lifecycle_state == "FAULTY"
        assert "Hydration failed" in done.system_tags["bootvault"]["lifecycleDetails"]
        dep.cli("volume", "detach", vol.id)
    finally:
        dep.stop()
        stop_daemons(dep.run_dir)


def test_backup_and_export_of_a_hydrating_volume(slow: Deployment, tmp_path: Path) -> None:
    tenant = slow.new_tenant("busy")
    original = _image(tmp_path / "disk.img", seed=27)
    vol = _restore(tenant, _backup(tenant, slow.import_volume(tenant, tmp_path / "disk.img")))
    want = _sha(original, tmp_path / "want.raw")
    client = tenant.client()
    created = client.create_boot_volume_backup(
        CreateBootVolumeBackupDetails(boot_volume_id=vol.id, type="FULL")
    )
    assert client.get_boot_volume(vol.id).data.is_hydrated is False  # backed up while hydrating
    backup_id = wait_state(client, "get_boot_volume_backup", created.data.id, "AVAILABLE").data.id
    assert _export(slow, vol.id, tmp_path / "during.raw") == want  # read through the backing
    again = _restore(tenant, backup_id)
    assert _hydrated(tenant, again.id).is_hydrated
    assert _export(slow, again.id, tmp_path / "again.raw") == want
    assert _hydrated(tenant, vol.id).is_hydrated


def test_reads_never_fail_while_the_backing_server_publishes_its_count(
    slow: Deployment, tmp_path: Path
) -> None:
    """Regression (chaos issue): the server published the bytes it served from whichever read
    crossed the interval, through one temporary file; on a busy machine a publish outlasted the
    interval, the next one renamed the file away under it, and that error failed a good read with
    EIO (`qemu-img: error while reading at byte 693108736: Input/output error` exporting a volume
    restored instantly). Publishing at every read makes the overlap certain without the fix."""
    tenant = slow.new_tenant("publish")
    original = _image(tmp_path / "disk.img", seed=31)
    backup_id = _backup(tenant, slow.import_volume(tenant, tmp_path / "disk.img"))
    server = BackingServer(Runtime(slow.run_dir, "publish-probe"), slow.env, stats_every=0.0)
    server.ensure(backup_id)
    failures: list[str] = []
    block = 64 << 10

    def read_everything(first: int) -> None:
        h = nbd.NBD()
        h.connect_uri(f"nbd+unix:///?socket={server.sock}")
        try:
            for n in range(SIZE // block):
                off = (first + n) % (SIZE // block) * block
                if h.pread(block, off) != original[off : off + block]:
                    failures.append(f"wrong bytes at {off}")
        except nbd.Error as exc:
            failures.append(str(exc))
        finally:
            h.shutdown()

    try:
        readers = [threading.Thread(target=read_everything, args=(k * 48,)) for k in range(8)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        assert failures == []
        assert server.last_failure() is None
        assert 0 < server.bytes_served() <= 8 * SIZE
    finally:
        server.stop()
