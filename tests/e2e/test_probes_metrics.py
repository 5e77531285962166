"""Probes on the API port, Prometheus metrics on a listener of their own (never the API port),
and workers that wake when a job is queued instead of waiting for their next poll."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from oci.core.models import CreateBootVolumeBackupDetails

from tests.helpers import MIB, Deployment, free_port, make_image, wait_state


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
