"""Volumes in use: a machine (tests/nbdwriter.py, a separate process with libnbd) writes to an
attached volume without pause while backups are taken through the oci SDK. Each backup restores
to exactly the disk after a prefix of the writes, cut at its timeCreated; incrementals read only
what changed; a killed daemon or worker loses no acknowledged write and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import oci
import pytest
from oci.core.models import (
    BootVolumeSourceFromBootVolumeBackupDetails,
    CreateBootVolumeBackupDetails,
    CreateBootVolumeDetails,
    UpdateBootVolumeDetails,
)

from bootvault.pool.daemon import Runtime
from tests.helpers import BIN, MIB, Deployment, Tenant, make_image, raw_request, wait_state
from tests.nbdwriter import (
    BLOCK,
    Write,
    Writer,
    assert_zero_from,
    slot_of,
    slots_in,
    state_after,
    stop_daemons,
)

pytestmark = pytest.mark.slow(4.5)

AD = "bootvault:AD-1"
REGION = 16 * MIB  # the writer's slots: [REGION, REGION + SLOTS * 4 KiB)
SLOTS = 2048
REGION_END = REGION + SLOTS * BLOCK
AMBIGUOUS_NS = 1_000_000  # timeCreated has millisecond precision on the wire
GIB = 1 << 30
RANDOM_SIZE = 128 * MIB  # incompressible: a FULL reads it for long enough to be interrupted


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    d = Deployment(tmp_path_factory.mktemp("live"))
    d.start()
    yield d
    d.stop()
    stop_daemons(d.run_dir)


# -- small helpers ----------------------------------------------------------------------------------


def _pool_dir(d: Deployment) -> Path:
    return d.data_dir / "volumes" / AD.replace(":", "_")


def _runtime(d: Deployment, volume_id: str) -> Runtime:
    return Runtime(d.run_dir, volume_id)


def _attach(d: Deployment, volume_id: str) -> str:
    return d.cli("volume", "attach", volume_id).stdout.strip().splitlines()[-1]


def _backup(client: oci.core.BlockstorageClient, volume_id: str, kind: str) -> str:
    details = CreateBootVolumeBackupDetails(boot_volume_id=volume_id, type=kind, display_name=kind.lower())
    return client.create_boot_volume_backup(details).data.id


def _wait_backup(client: oci.core.BlockstorageClient, backup_id: str, states: set[str], timeout: float = 120):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = client.get_boot_volume_backup(backup_id).data
        if b.lifecycle_state in states:
            return b
        time.sleep(0.05)
    raise AssertionError(f"backup {backup_id} never reached {states}")


def _restore(client: oci.core.BlockstorageClient, tenant: Tenant, backup_id: str) -> str:
    details = CreateBootVolumeDetails(
        compartment_id=tenant.tenancy_id,
        availability_domain=AD,
        source_details=BootVolumeSourceFromBootVolumeBackupDetails(id=backup_id),
    )
    return client.create_boot_volume(details).data.id


def _restored(client: oci.core.BlockstorageClient, tenant: Tenant, backup_ids: list[str]) -> list[str]:
    """Restore each backup (all at once) and wait until every new volume is AVAILABLE and
    hydrated (an instant restore is AVAILABLE at once and reads its backup lazily meanwhile)."""
    ids = [_restore(client, tenant, b) for b in backup_ids]
    for i in ids:
        _wait_hydrated(client, i)
    return ids


def _wait_hydrated(client: oci.core.BlockstorageClient, volume_id: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while True:
        vol = client.get_boot_volume(volume_id).data
        if vol.lifecycle_state == "AVAILABLE" and vol.is_hydrated:
            return
        assert vol.lifecycle_state in ("RESTORING", "AVAILABLE"), (vol.lifecycle_state, vol.system_tags)
        assert time.monotonic() < deadline, f"boot volume {volume_id} was not hydrated in {timeout} s"
        time.sleep(0.1)


def _export(d: Deployment, volume_id: str, dest: Path) -> Path:
    out = d.cli("volume", "export", volume_id, str(dest), check=False)
    assert out.returncode == 0, out.stderr
    assert dest.stat().st_size == GIB
    return dest


def _ns(ts: datetime) -> int:
    return (ts - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1) * 1000


def _read_log(d: Deployment, backup_id: str, *logs: Path) -> tuple[int, str]:
    """(bytes_read, what) the worker logged for the backup: what is "changed since parent" or
    "allocated"."""
    found = None
    for log in (d.root / "server.log", *logs):
        for line in log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            message = entry.get("message", "")
            if message.startswith(f"backup {backup_id} read "):
                assert message.startswith(f"backup {backup_id} read {entry['bytes_read']} bytes (")
                found = (int(entry["bytes_read"]), message.split("(", 1)[1].rstrip(")"))
    assert found is not None, f"no 'backup {backup_id} read' line in the logs"
    return found


def _image(tmp: Path, size: int, seed: int) -> tuple[Path, bytes]:
    image = tmp / "original.img"
    make_image(image, size, seed=seed)
    return image, image.read_bytes()


def _check_outside_region(path: Path, original: bytes) -> bytes:
    """The restored/exported image equals the original outside the writer's region (and is
    zero beyond the original's end); returns the original bytes of the region."""
    with open(path, "rb") as fh:
        data = fh.read(len(original))
    assert data[:REGION] == original[:REGION], "data before the writer's region changed"
    assert data[REGION_END:] == original[REGION_END:], "data after the writer's region changed"
    assert_zero_from(path, len(original))
    return original[REGION:REGION_END]


def _check_point_in_time(found: list[int | None], writes: list[Write], instant_ns: int) -> int:
    """The slots hold exactly the state after a prefix of the writes, and the prefix is cut at
    the instant: every write acknowledged before it is in, none sent 1 ms after it is. Returns
    the prefix length."""
    seqs = [s for s in found if s is not None]
    prefix = max(seqs) + 1 if seqs else 0
    assert found == state_after(prefix, SLOTS), "the image is not the disk after any prefix of the writes"
    acked_before = [w.seq for w in writes if 0 <= w.acked < instant_ns]
    sent_after = [w.seq for w in writes if w.sent >= instant_ns + AMBIGUOUS_NS]
    # the writer was busy on both sides of the instant, or this proves nothing
    assert acked_before and sent_after, "the writer was not writing around the backup's instant"
    assert max(acked_before) < prefix, (
        f"write {max(acked_before)} was acknowledged before timeCreated but is missing"
    )
    assert min(sent_after) >= prefix, (
        f"write {prefix - 1} was sent after timeCreated + 1 ms but is in the backup"
    )
    return prefix


def _check_durable(found: list[int | None], writes: list[Write]) -> None:
    """Each slot holds its last acknowledged write, or a later one whose answer never came."""
    allowed: dict[int, set[int | None]] = defaultdict(lambda: {None})
    for w in writes:
        slot = slot_of(w.seq, SLOTS)
        if w.acked >= 0:
            allowed[slot] = {w.seq}
        else:
            allowed[slot].add(w.seq)
    for slot, seq in enumerate(found):
        assert seq in allowed[slot], f"slot {slot}: holds {seq}, acknowledged state is {allowed[slot]}"


def _leftovers(d: Deployment) -> list[str]:
    """Fleece overlays and temporary files in the pool, and sockets and pid files in the run
    directory of daemons that are gone."""
    found = [p.name for p in _pool_dir(d).glob(".fleece-*")] + [p.name for p in _pool_dir(d).glob(".tmp-*")]
    run = d.run_dir
    for entry in run.iterdir():
        named = entry / "volume"
        if named.exists() and Runtime(run, named.read_text().strip()).pid() is not None:
            continue  # a live daemon's sockets
        found += [str(p) for p in entry.iterdir() if p.suffix in (".sock", ".pid") or p.name == "mode"]
    return found


# -- the must-show: backups of a volume being written are points in time ---------------------------


def test_backups_of_a_volume_being_written_are_points_in_time(dep: Deployment, tmp_path: Path) -> None:
    tenant = dep.new_tenant("pit")
    client = tenant.client()
    image, original = _image(tmp_path, 64 * MIB, seed=21)
    volume_id = dep.import_volume(tenant, image, "live")
    uri = _attach(dep, volume_id)
    assert client.get_boot_volume(volume_id).data.system_tags["bootvault"]["attachment"] == uri

    writer = Writer(uri, tmp_path / "writes.log", offset=REGION, slots=SLOTS)
    backups: list[str] = []
    try:
        for n, kind in enumerate(("FULL", "INCREMENTAL", "INCREMENTAL")):
            writer.wait_for((n + 1) * SLOTS)  # the slots are overwritten between backups
            backups.append(_backup(client, volume_id, kind))
            _wait_backup(client, backups[-1], {"AVAILABLE", "FAULTY"})
    finally:
        writes = writer.stop()
    done = [client.get_boot_volume_backup(b).data for b in backups]
    assert [b.lifecycle_state for b in done] == ["AVAILABLE"] * 3, [b.system_tags for b in done]
    assert all(w.acked >= 0 for w in writes)
    assert len(writes) > 3 * SLOTS  # slots were overwritten over and over

    prefixes = []
    for backup, restored in zip(done, _restored(client, tenant, backups), strict=True):
        path = _export(dep, restored, tmp_path / f"{backup.id[-8:]}.raw")
        region = _check_outside_region(path, original)
        found = slots_in(path, REGION, SLOTS, region)
        prefixes.append(_check_point_in_time(found, writes, _ns(backup.time_created)))
        path.unlink()
    assert prefixes == sorted(prefixes) and len(set(prefixes)) == 3

    full_read, what = _read_log(dep, backups[0])
    assert what == "allocated" and full_read >= len(original) // 2  # make_image: about 2/3 data
    for incremental in backups[1:]:
        read, what = _read_log(dep, incremental)
        assert what == "changed since parent"
        assert 0 < read <= REGION_END - REGION  # only the writer's clusters, not 1 GiB nor 64 MiB

    dep.cli("volume", "detach", volume_id)
    assert "attachment" not in (client.get_boot_volume(volume_id).data.system_tags.get("bootvault") or {})
    assert not _leftovers(dep)


# -- crashes: a daemon, a worker --------------------------------------------------------------------


def _wait_reading(d: Deployment, tenant: Tenant, backup_id: str, timeout: float = 60) -> None:
    """Until the backup has read part of its point-in-time view: its backupProgress, which the
    worker reports as it reads, is above 0. A FULL of 128 MiB of random data reads for some 0.3 s
    more, so the view's overlay is still in the pool then."""
    deadline = time.monotonic() + timeout
    while raw_request(tenant, "GET", f"/bootVolumeBackups/{backup_id}").json()["backupProgress"] == 0:
        assert time.monotonic() < deadline, "the backup did not start reading"
        time.sleep(0.01)
    assert list(_pool_dir(d).glob(".fleece-*")), "the backup was over before it could be interrupted"


def _random_image(tmp: Path, size: int) -> tuple[Path, bytes]:
    """Incompressible data, so that a FULL takes long enough to be killed in the middle."""
    image = tmp / "random.img"
    data = os.urandom(size)
    image.write_bytes(data)
    return image, data


def test_daemon_killed_during_a_backup(dep: Deployment, tmp_path: Path) -> None:
    tenant = dep.new_tenant("qsdkill")
    client = tenant.client()
    image, original = _random_image(tmp_path, RANDOM_SIZE)
    volume_id = dep.import_volume(tenant, image, "qsd-kill")
    uri = _attach(dep, volume_id)
    runtime = _runtime(dep, volume_id)
    writer = Writer(uri, tmp_path / "writes.log", offset=REGION, slots=SLOTS, fua=True)
    try:
        killed = _backup(client, volume_id, "FULL")
        _wait_reading(dep, tenant, killed)
        pid = runtime.pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        outcome = _wait_backup(client, killed, {"AVAILABLE", "FAULTY"})
        if outcome.lifecycle_state == "FAULTY":  # a readable reason, not a traceback
            reason = outcome.system_tags["bootvault"]["lifecycleDetails"]
            assert reason.startswith("The volume pool failed: ") and "Traceback" not in reason, reason
        # the worker's reconcile serves the attached volume again; the writer reconnects
        deadline = time.monotonic() + 20
        while runtime.mode() != "attached":
            assert time.monotonic() < deadline, "the attached volume was not served again"
            time.sleep(0.1)
        assert runtime.pid() != pid
        _wait_no_leftovers(dep)  # the dead daemon's overlay file goes with the restart
        back = time.time_ns()
        deadline = time.monotonic() + 20
        while not [w for w in writer.writes() if w.acked > back]:  # it writes again, same URI
            assert time.monotonic() < deadline, "the writer did not get going again"
            time.sleep(0.1)
    finally:
        writes = writer.stop()
    assert any(w.acked < 0 for w in writes)  # the kill did cut the writer off
    assert client.get_boot_volume(volume_id).data.system_tags["bootvault"]["attachment"] == uri

    # every FUA-acknowledged write is on the volume
    now = _export(dep, volume_id, tmp_path / "volume.raw")
    region = _check_outside_region(now, original)
    _check_durable(slots_in(now, REGION, SLOTS, region), writes)

    # the next backup is right: it restores to the volume as it is (no writer now)
    after = _backup(client, volume_id, "INCREMENTAL")
    assert _wait_backup(client, after, {"AVAILABLE", "FAULTY"}).lifecycle_state == "AVAILABLE"
    assert _read_log(dep, after)[1] == "allocated"  # the bitmaps died with the daemon: read it whole
    whole = (
        f"backup {after} reads the whole volume: the dirty bitmap was left inconsistent by an unclean stop"
    )
    assert whole in (dep.root / "server.log").read_text()
    [restored] = _restored(client, tenant, [after])
    copy = _export(dep, restored, tmp_path / "restored.raw")
    assert _same_content(copy, now, len(original))
    assert not _leftovers(dep)
    dep.cli("volume", "detach", volume_id)


def _wait_no_leftovers(d: Deployment, timeout: float = 12) -> None:
    """The worker's reconcile (every 5 s) leaves nothing stale behind."""
    deadline = time.monotonic() + timeout
    while found := _leftovers(d):
        assert time.monotonic() < deadline, f"still there after {timeout} s: {found}"
        time.sleep(0.1)


def _fleece_in_daemon(runtime: Runtime) -> list[str]:
    """Jobs, exports (but the machine's) and overlay nodes of point-in-time views in a daemon."""
    with runtime.qmp() as q:
        jobs = [j["id"] for j in q.run("query-jobs")]
        exports = [e["id"] for e in q.run("query-block-exports") if e["id"] != "disk"]
        nodes = [n for n in q.node_names() if n.startswith("fleece-")]
    return jobs + exports + nodes


def test_export_killed_while_copying_an_attached_volume(dep: Deployment, tmp_path: Path) -> None:
    """A `volume export` killed in the middle leaves its point-in-time view in the machine's
    daemon, copying every overwritten cluster into an overlay no one reads; the worker's
    reconcile removes it, and the volume is served and exported as before."""
    tenant = dep.new_tenant("exportkill")
    image, original = _random_image(tmp_path, RANDOM_SIZE)
    volume_id = dep.import_volume(tenant, image, "export-kill")
    uri = _attach(dep, volume_id)
    runtime = _runtime(dep, volume_id)
    export = subprocess.Popen(
        [str(BIN / "bootvault"), "volume", "export", volume_id, str(tmp_path / "killed.raw")],
        env=dep.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not [e for e in _fleece_in_daemon(runtime) if e.startswith("snap-")]:  # it is copying
        assert export.poll() is None, "the export ended before it could be killed"
        assert time.monotonic() < deadline, "the export did not start"
        time.sleep(0.01)
    os.kill(export.pid, signal.SIGKILL)
    export.wait()
    assert _fleece_in_daemon(runtime)  # the dead export's view is still in the daemon
    _wait_no_leftovers(dep)
    assert _fleece_in_daemon(runtime) == []
    written = os.urandom(BLOCK)
    _write_through(uri, REGION, written)
    now = _export(dep, volume_id, tmp_path / "after.raw")
    with open(now, "rb") as fh:
        data = fh.read(len(original))
    assert data == original[:REGION] + written + original[REGION + BLOCK :]
    dep.cli("volume", "detach", volume_id)


def _write_through(uri: str, offset: int, data: bytes) -> None:
    import nbd

    h = nbd.NBD()
    h.connect_uri(uri)
    h.pwrite(data, offset)
    h.flush()
    h.shutdown()


def _same_content(a: Path, b: Path, data_end: int) -> bool:
    """Two raw exports are equal: their first `data_end` bytes, and zeros after that."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        same = fa.read(data_end) == fb.read(data_end)
    assert_zero_from(a, data_end)
    assert_zero_from(b, data_end)
    return same


class WorkerProcess:
    def __init__(self, d: Deployment, log: Path) -> None:
        self.log = log
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(BIN / "bootvault"), "worker"], env=d.env, stdout=out, stderr=subprocess.STDOUT
            )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def kill(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


def test_worker_killed_during_a_backup_of_an_attached_volume(tmp_path: Path) -> None:
    d = Deployment(tmp_path / "d", workers=0)
    d.start()
    worker: WorkerProcess | None = None
    try:
        tenant = d.new_tenant("workerkill")
        client = tenant.client()
        image, original = _random_image(tmp_path, RANDOM_SIZE)
        volume_id = d.import_volume(tenant, image, "worker-kill")
        uri = _attach(d, volume_id)
        qsd = _runtime(d, volume_id).pid()
        writer = Writer(uri, tmp_path / "writes.log", offset=REGION, slots=SLOTS, fua=True)
        try:
            first = _backup(client, volume_id, "FULL")
            worker = WorkerProcess(d, tmp_path / "worker1.log")
            _wait_reading(d, tenant, first)
            worker.kill()
            assert client.get_boot_volume_backup(first).data.lifecycle_state == "CREATING"
            assert list(_pool_dir(d).glob(".fleece-*"))  # the dead job's view is still there
            worker = WorkerProcess(d, tmp_path / "worker2.log")  # takes the job over when the lease ends
            b1 = _wait_backup(client, first, {"AVAILABLE", "FAULTY"})
            assert b1.lifecycle_state == "AVAILABLE", b1.system_tags
            assert f"BACKUP for {first} (attempt 2)" in (tmp_path / "worker2.log").read_text()
            writer.wait_for(len(writer.writes()) + 256)
            second = _backup(client, volume_id, "INCREMENTAL")
            b2 = _wait_backup(client, second, {"AVAILABLE", "FAULTY"})
            assert b2.lifecycle_state == "AVAILABLE", b2.system_tags
        finally:
            writes = writer.stop()
        assert all(w.acked >= 0 for w in writes)
        assert _runtime(d, volume_id).pid() == qsd  # the machine's daemon was never disturbed
        logs = (tmp_path / "worker1.log", tmp_path / "worker2.log")
        read, what = _read_log(d, second, *logs)
        assert what == "changed since parent" and 0 < read <= REGION_END - REGION

        # both backups are points in time of the running writer
        for backup, restored in zip((b1, b2), _restored(client, tenant, [first, second]), strict=True):
            path = _export(d, restored, tmp_path / "restored.raw")
            region = _check_outside_region(path, original)
            _check_point_in_time(slots_in(path, REGION, SLOTS, region), writes, _ns(backup.time_created))
            path.unlink()

        # every FUA-acknowledged write is on the volume; a backup now restores to it exactly
        now = _export(d, volume_id, tmp_path / "volume.raw")
        region = _check_outside_region(now, original)
        _check_durable(slots_in(now, REGION, SLOTS, region), writes)
        third = _backup(client, volume_id, "INCREMENTAL")
        assert _wait_backup(client, third, {"AVAILABLE", "FAULTY"}).lifecycle_state == "AVAILABLE"
        [restored] = _restored(client, tenant, [third])
        assert _same_content(_export(d, restored, tmp_path / "last.raw"), now, len(original))
        assert not _leftovers(d)
        d.cli("volume", "detach", volume_id)
    finally:
        if worker is not None:
            worker.stop()
        d.stop()
        stop_daemons(d.run_dir)


# -- misuse ------------------------------------------------------------------------------------------


def test_attach_detach_misuse(dep: Deployment, tmp_path: Path) -> None:
    tenant = dep.new_tenant("misuse")
    client = tenant.client()
    image, _ = _image(tmp_path, 4 * MIB, seed=2)
    volume_id = dep.import_volume(tenant, image, "misuse")

    # images that are not raw or qcow2, or that pull in another file, are refused, creating nothing
    vmdk, base, overlay = tmp_path / "disk.vmdk", tmp_path / "base.qcow2", tmp_path / "overlay.qcow2"
    for args in (
        ["-f", "vmdk", str(vmdk), "64M"],
        ["-f", "qcow2", str(base), "64M"],
        ["-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)],
    ):
        subprocess.run(["qemu-img", "create", "-q", *args], check=True, timeout=60)
    before = sorted(p.name for p in _pool_dir(dep).iterdir())
    listed = len(client.list_boot_volumes(compartment_id=tenant.tenancy_id).data)
    for image, expected in ((vmdk, "is a vmdk image; only raw and qcow2"), (overlay, "with a backing file")):
        out = dep.cli("volume", "import", "--compartment", tenant.tenancy_id, str(image), check=False)
        assert _refused(out, expected), out.stderr
    assert sorted(p.name for p in _pool_dir(dep).iterdir()) == before
    assert len(client.list_boot_volumes(compartment_id=tenant.tenancy_id).data) == listed

    # export refuses to clobber a file, a directory, or a missing directory
    existing = tmp_path / "existing.raw"
    existing.write_bytes(b"keep")
    for dest, expected in (
        (existing, "exists (file); pass --force to overwrite it"),
        (tmp_path, "is a directory"),
        (tmp_path / "missing" / "x.raw", "is not a directory"),
    ):
        out = dep.cli("volume", "export", volume_id, str(dest), check=False)
        assert _refused(out, expected), out.stderr
    assert existing.read_bytes() == b"keep"
    dep.cli("volume", "export", "--force", "--format", "qcow2", volume_id, str(existing))
    assert (
        json.loads(
            subprocess.run(
                ["qemu-img", "info", "--output=json", str(existing)], capture_output=True, check=True
            ).stdout
        )["format"]
        == "qcow2"
    )

    unknown = "ocid1.bootvolume.oc1.local-1.doesnotexist"
    out = dep.cli("volume", "attach", unknown, check=False)
    assert _refused(out, f"Boot volume {unknown} not found")
    out = dep.cli("volume", "detach", volume_id, check=False)
    assert _refused(out, f"Boot volume {volume_id} is not attached")

    uri = _attach(dep, volume_id)
    assert uri.startswith("nbd+unix:///disk?socket=") and uri.endswith("/nbd.sock")
    pid = _runtime(dep, volume_id).pid()
    assert _attach(dep, volume_id) == uri and _runtime(dep, volume_id).pid() == pid
    vol = client.get_boot_volume(volume_id)
    assert vol.data.system_tags["bootvault"]["attachment"] == uri

    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.delete_boot_volume(volume_id)
    assert (err.value.status, err.value.code) == (409, "IncorrectState")
    assert "attached" in err.value.message and uri in err.value.message
    with pytest.raises(oci.exceptions.ServiceError) as err:
        client.update_boot_volume(volume_id, UpdateBootVolumeDetails(size_in_gbs=2))
    assert (err.value.status, err.value.code) == (409, "IncorrectState")
    assert "attached" in err.value.message
    after = client.get_boot_volume(volume_id).data
    assert (after.lifecycle_state, after.size_in_gbs) == ("AVAILABLE", 1)

    dep.cli("volume", "detach", volume_id)
    assert _runtime(dep, volume_id).pid() is None
    out = dep.cli("volume", "detach", volume_id, check=False)
    assert _refused(out, "is not attached")
    grown = client.update_boot_volume(volume_id, UpdateBootVolumeDetails(size_in_gbs=2)).data
    assert grown.size_in_gbs == 2
    wait_state(client, "get_boot_volume", volume_id, "AVAILABLE")
    client.delete_boot_volume(volume_id)
    wait_state(client, "get_boot_volume", volume_id, "TERMINATED")
    out = dep.cli("volume", "attach", volume_id, check=False)
    assert _refused(out, "TERMINATED")


def _refused(out: subprocess.CompletedProcess[str], message: str) -> bool:
    """The CLI failed and said `message` (compared without whitespace: rich wraps its error at
    80 columns when stderr is not a terminal, at spaces or inside long words)."""
    return out.returncode != 0 and "".join(message.split()) in "".join(out.stderr.split())
