"""Faults during a cross-region copy, two regions on one machine (tests/copyfaults.py): kill -9
of the source's server (API and worker) and of the destination's. Each copy ends completed and
resumed, not restarted from zero; every finished copy is restored and compared by hash. The
link's faults (cut, and cut for longer than the source's patience) are in test_regions_link.py,
a file of its own so that the suite runs the two at once."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from oci.core.models import CopyBootVolumeBackupDetails

from tests.copyfaults import World, copy_in_a_fresh_scope, copy_world, restores_to, wait_percent
from tests.helpers import Tenant, wait_state
from tests.regions import Region, client_in, work_requests_in

pytestmark = pytest.mark.slow(2.5)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with copy_world(tmp_path_factory) as w:
        yield w


def _copy(tenant: Tenant, alpha: Region, backup_id: str) -> tuple[str, str]:
    resp = client_in(tenant, alpha).copy_boot_volume_backup(
        backup_id, CopyBootVolumeBackupDetails(destination_region="beta-1")
    )
    return resp.data.id, resp.headers["opc-work-request-id"]


def _logs(tenant: Tenant, region: Region, wr_id: str) -> list[str]:
    return [e.message for e in work_requests_in(tenant, region).list_work_request_logs(wr_id).data]


def _lacking(tenant: Tenant, region: Region, wr_id: str) -> list[tuple[int, int]]:
    """(lacked, total) of each attempt's comparison, from the work request's log."""
    out = []
    for line in _logs(tenant, region, wr_id):
        if "the destination lacks" in line:
            words = line.split("lacks ")[1].split()
            out.append((int(words[0]), int(words[2])))
    return out


def _kill9_and_restart(region: Region) -> None:
    assert region.proc is not None
    region.proc.send_signal(signal.SIGKILL)
    region.proc.wait()
    region.start()


def test_source_killed_mid_copy_resumes(world: World) -> None:
    alpha, beta, _, tenant, backup_id, image = world
    copy_id, wr_id = _copy(tenant, alpha, backup_id)
    wait_percent(tenant, alpha, wr_id, 30)
    _kill9_and_restart(alpha)  # API and worker: the job's lease runs out, a new worker resumes it
    done = wait_state(client_in(tenant, beta), "get_boot_volume_backup", copy_id, "AVAILABLE", timeout=180)
    assert done.data.lifecycle_state == "AVAILABLE"
    attempts = _lacking(tenant, alpha, wr_id)
    assert len(attempts) == 2, _logs(tenant, alpha, wr_id)
    (first, total), (second, _) = attempts
    assert first == total and 0 < second < total * 0.8, attempts  # resumed, not from zero
    assert work_requests_in(tenant, beta).get_work_request(wr_id).data.status == "SUCCEEDED"
    restores_to(beta, tenant, copy_id, image)


def test_destination_killed_mid_copy_resumes(world: World) -> None:
    alpha, beta, _, tenant, backup_id, image = world
    copy_id, wr_id, key = copy_in_a_fresh_scope(tenant, alpha, beta, backup_id)
    _kill9_and_restart(beta)  # the source keeps retrying until beta answers again
    done = wait_state(client_in(tenant, beta), "get_boot_volume_backup", copy_id, "AVAILABLE", timeout=180)
    assert done.data.kms_key_id == key
    assert work_requests_in(tenant, alpha).get_work_request(wr_id).data.status == "SUCCEEDED"
    restores_to(beta, tenant, copy_id, image)
