"""Probes on the API port, Prometheus metrics on a listener of their own (never the API port),
and workers that wake when a job is queued instead of waiting for their next poll."""

from __future__ import annotations

import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci.core.models import CreateBootVolumeBackupDetails

from bootvault.store import doorbell
from tests.helpers import BIN, MIB, Deployment, free_port, log_entries, make_image, wait_state


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, int]]:
    dep = Deployment(tmp_path_factory.mktemp("metrics"))
    metrics_port = free_port()
    # A slow poll: a backup that starts quickly was woken, not polled.
    dep.env.update({"BOOTVAULT_METRICS_PORT": str(metrics_port), "BOOTVAULT_POLL_SECONDS": "30"})
    dep.start()
    yield dep, metrics_port
    dep.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_health_and_readiness(observed: tuple[Deployment, int]) -> None:
    dep, _ = observed
    assert _get(dep.endpoint + "/healthz") == (200, '{"status":"ok"}')
    status, body = _get(dep.endpoint + "/readyz")
    assert status == 200 and "ready" in body


def test_every_request_has_an_access_line_with_its_request_id(observed: tuple[Deployment, int]) -> None:
    dep, _ = observed
    rid = f"probe-{time.time_ns()}"
    url = dep.endpoint + "/20160918/bootVolumeBackups/ocid1.bootvolumebackup.oc1..unknown"
    req = urllib.request.Request(url, headers={"opc-request-id": rid})  # unsigned: 401
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    answered = refused.value.headers["opc-request-id"]  # the client's id, then the server's
    assert refused.value.code == 401 and answered.startswith(rid + "/")
    deadline = time.monotonic() + 5  # access lines are flushed within 0.2 s
    while True:
        lines = [e for e in log_entries(dep.root / "server.log") if e.get("opcRequestId") == answered]
        if lines or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    access = [e for e in lines if e.get("operation") == "GetBootVolumeBackup"]
    assert len(access) == 1, lines
    assert access[0]["status"] == 401 and access[0]["level"] == "INFO" and access[0]["ms"] >= 0
    assert access[0]["message"] == f"GET {url.removeprefix(dep.endpoint)} -> 401"


def test_metrics_only_on_their_own_listener(observed: tuple[Deployment, int], tmp_path: Path) -> None:
    dep, metrics_port = observed
    tenant = dep.new_tenant("metrics")
    image = tmp_path / "disk.img"
    make_image(image, 4 * MIB, seed=31)
    volume_id = dep.import_volume(tenant, image)
    client = tenant.client()
    started = time.monotonic()
    backup = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id))
    wait_state(client, "get_boot_volume_backup", backup.data.id, "AVAILABLE", timeout=25)
    assert time.monotonic() - started < 25  # with a 30 s poll, only the wake-up can explain this
    status, _ = _get(dep.endpoint + "/metrics")
    assert status == 404  # not on the public API port
    status, text = _get(f"http://127.0.0.1:{metrics_port}/metrics")
    assert status == 200
    assert 'bootvault_requests_total{operation="CreateBootVolumeBackup",status="200"}' in text
    assert 'bootvault_request_seconds_bucket{le="0.001",operation="GetBootVolumeBackup"}' in text
    assert 'bootvault_jobs_total{kind="BACKUP",outcome="succeeded"}' in text
    assert 'bootvault_backup_bytes_total{kind="read"}' in text
    assert 'bootvault_jobs_current{kind="BACKUP",state="SUCCEEDED"}' in text


def _wait_first_polls_done(log: Path) -> None:
    """Until the worker has run the GC and verify jobs its first round queued (a fresh database
    owes both): it has then found nothing more to do and waits for its next poll."""
    deadline = time.monotonic() + 30
    while True:
        entries = log_entries(log)
        claimed = {e["resource"]: e.get("job") for e in entries if e.get("resource") in ("gc", "verify")}
        finished = {e.get("message") for e in entries}
        if len(claimed) == 2 and all(f"job {job} finished" in finished for job in claimed.values()):
            return
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.05)


def test_a_worker_in_another_process_wakes_on_sqlite(tmp_path: Path) -> None:
    """The API alone in one process, a worker in another, one SQLite file and a 30 s poll: the
    backup starts at once because the commit rings the worker's doorbell socket."""
    dep = Deployment(tmp_path / "d", workers=0)
    dep.env["BOOTVAULT_POLL_SECONDS"] = "30"
    dep.start()
    with open(tmp_path / "worker.log", "ab") as out:
        worker = subprocess.Popen([str(BIN / "bootvault"), "worker"], env=dep.env, stdout=out, stderr=out)
    try:
        bells = dep.data_dir / "bootvault.db.wake"
        deadline = time.monotonic() + 30
        while not list(bells.glob("*.sock")):  # the worker has bound its socket
            assert time.monotonic() < deadline and worker.poll() is None, (
                tmp_path / "worker.log"
            ).read_text()
            time.sleep(0.1)
        assert stat.S_IMODE(bells.stat().st_mode) == 0o700
        tenant = dep.new_tenant("bell")
        image = tmp_path / "disk.img"
        make_image(image, 4 * MIB, seed=32)
        volume_id = dep.import_volume(tenant, image)
        _wait_first_polls_done(tmp_path / "worker.log")  # the next poll is 30 s away
        client = tenant.client()
        started = time.monotonic()
        backup = client.create_boot_volume_backup(CreateBootVolumeBackupDetails(boot_volume_id=volume_id))
        wait_state(client, "get_boot_volume_backup", backup.data.id, "AVAILABLE", timeout=20)
        assert time.monotonic() - started < 20  # a poll would come 30 s after the last one
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
        dep.stop()
    doorbell.ring(bells)  # a socket its process left behind refuses the ring and is removed
    assert not list(bells.glob("*.sock"))
