"""Attaching a volume that is still hydrating does not wait for its backing server to open the
backup (bootvault's imports, settings, database and index, seconds on a loaded host): the server
announces the backup's size at once and opens it in the background; the machine's first read
waits for it and then gets the backup's exact bytes.

The backup's opening is held back for as long as the test wants by a master key file that is a
named pipe (reading it blocks until the test writes the key), so the order of events is shown
without timing anything. Before the fix, the attach itself blocked on it."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import nbd
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
)

from bootvault.config import Settings
from bootvault.pool import VolumePool
from tests.helpers import MIB, Deployment, make_image, wait_state
from tests.nbdwriter import stop_daemons

AD = "bootvault:AD-1"
WAIT_S = 60


@pytest.fixture(scope="module")
def restored(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, str, str, bytes]]:
    """(deployment, volume id, backup id, image) of a volume restored from a backup and not
    hydrated (the copy is held to 1 KiB/s), with the server stopped so only the test drives it."""
    root = tmp_path_factory.mktemp("attach-restored")
    dep = Deployment(root)
    dep.env["BOOTVAULT_HYDRATE_SPEED_BPS"] = "1024"
    dep.start()
    try:
        tenant = dep.new_tenant("attach")
        client = tenant.client()
        make_image(root / "disk.img", 8 * MIB, seed=41)
        source = dep.import_volume(tenant, root / "disk.img")
        backup = client.create_boot_volume_backup(
            CreateBootVolumeBackupDetails(boot_volume_id=source, type="FULL")
        ).data
        wait_state(client, "get_boot_volume_backup", backup.id, "AVAILABLE")
        details = CreateBootVolumeDetails(
            compartment_id=tenant.tenancy_id,
            availability_domain=AD,
            source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup.id),
        )
        volume = client.create_boot_volume(details).data
        vol = wait_state(client, "get_boot_volume", volume.id, "AVAILABLE").data
        assert not vol.is_hydrated
    finally:
        dep.stop()
    yield dep, vol.id, backup.id, (root / "disk.img").read_bytes()
    stop_daemons(dep.run_dir)


def _pool(dep: Deployment, **settings: object) -> VolumePool:
    """The deployment's pool as a worker builds it (Context.pool), with these settings for the
    backing servers it starts."""
    s = Settings(data_dir=dep.data_dir, **settings).resolved()  # type: ignore[arg-type]
    assert s.run_dir is not None
    return VolumePool(dict(s.volume_pools), s.data_dir / "volumes", s.run_dir, s.block_size, s.as_env())


def _in_thread(target, *args):  # type: ignore[no-untyped-def]
    """Run target in a thread; (thread, box) where box gets its result or exception."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["result"] = target(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


def _read(uri: str, length: int) -> bytes:
    h = nbd.NBD()
    h.connect_uri(uri)
    try:
        return bytes(h.pread(length, 0))
    finally:
        h.shutdown()


def test_attach_does_not_wait_for_the_backup_to_open(
    restored: tuple[Deployment, str, str, bytes], tmp_path: Path
) -> None:
    dep, volume_id, _, image = restored
    key = (dep.data_dir / "keys" / "master.key").read_bytes()
    fifo = tmp_path / "master.key"
    os.mkfifo(fifo, 0o600)
    volume = _pool(dep, master_key_file=fifo).volume(AD, volume_id)
    attaching, attached = _in_thread(volume.attach)
    try:
        attaching.join(WAIT_S)
        assert not attaching.is_alive(), "the attach waited for the backup to open"
        assert "error" not in attached, attached
        uri = str(attached["result"])
        h = nbd.NBD()
        h.connect_uri(uri)
        assert h.get_size() == 1 << 30  # the volume answers while its backup is not open yet
        h.shutdown()
        reading, read = _in_thread(_read, uri, MIB)
        reading.join(1.0)
        assert reading.is_alive(), f"a read was answered before the backup was open: {read}"
    finally:
        with open(fifo, "wb") as fh:  # the backing server opens the backup now
            fh.write(key)
    reading.join(WAIT_S)
    assert not reading.is_alive() and "error" not in read, read
    assert read["result"] == image[:MIB]
    volume.detach()


def test_a_backing_file_of_an_earlier_release_still_serves(
    restored: tuple[Deployment, str, str, bytes],
) -> None:
    """`<ocid>.backing` without the size (as earlier releases wrote it): the server opens the
    backup before it serves, and serves the same bytes."""
    dep, volume_id, backup_id, image = restored
    volume = _pool(dep).volume(AD, volume_id)
    written = volume.backing_file.read_text()
    assert written.split()[0] == backup_id and int(written.split()[1]) >= len(image)  # id, backup's size
    volume.backing_file.write_text(backup_id)
    try:
        uri = volume.attach()
        assert _read(uri, MIB) == image[:MIB]
        volume.detach()
    finally:
        volume.backing_file.write_text(written)
