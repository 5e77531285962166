"""The link between two regions cut during a cross-region copy (a TCP relay that drops every
connection and refuses new ones; tests/copyfaults.py): for CUT seconds, twice the source's
longest wait between retries, so that several retries fail and the copy goes on from where it
stopped; and for longer than the source's patience, which fails the copy with its reason while
the destination ends it FAULTY by its stall watchdog. Never AVAILABLE with data missing: a
finished copy is restored and compared by hash.

Until the suite had to be quicker the cut lasted 60 s against a patience of 75 s and a stall
limit of 90 s; CUT, PATIENCE and STALL keep their order (see tests/copyfaults.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.copyfaults import PATIENCE, RETRY_CAP, STALL, World, copy_in_a_fresh_scope, copy_world, restores_to
from tests.helpers import wait_state
from tests.regions import client_in, work_requests_in

pytestmark = pytest.mark.slow(2.5)
CUT = 2 * RETRY_CAP  # seconds the link is cut: the retries at 0.5, 1.5, 3.5, 7.5 and 15.5 s fail


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with copy_world(tmp_path_factory) as w:
        yield w


def test_link_cut_past_several_retries_then_the_copy_completes(world: World) -> None:
    alpha, beta, link, tenant, backup_id, image = world
    copy_id, wr_id, _ = copy_in_a_fresh_scope(tenant, alpha, beta, backup_id)
    link.cut()
    time.sleep(CUT)  # the cut's length is what is tested: the source waits it out
    link.restore()
    done = wait_state(client_in(tenant, beta), "get_boot_volume_backup", copy_id, "AVAILABLE", timeout=180)
    assert done.data.lifecycle_state == "AVAILABLE"
    assert work_requests_in(tenant, alpha).get_work_request(wr_id).data.status == "SUCCEEDED"
    restores_to(beta, tenant, copy_id, image)


def test_link_cut_longer_than_the_patience_fails_the_copy_with_its_reason(world: World) -> None:
    alpha, beta, link, tenant, backup_id, _ = world
    copy_id, wr_id, _ = copy_in_a_fresh_scope(tenant, alpha, beta, backup_id)
    link.cut()
    try:
        # the source gives up after PATIENCE s: its work request FAILED with the reason
        deadline = time.monotonic() + PATIENCE + 60
        wrs = work_requests_in(tenant, alpha)
        while wrs.get_work_request(wr_id).data.status != "FAILED":
            assert time.monotonic() < deadline
            time.sleep(0.5)
        errors = wrs.list_work_request_errors(wr_id).data
        assert errors and "did not answer" in errors[0].message, errors
        # the destination, which the source could not tell, ends the copy itself (stall watchdog)
        dst = client_in(tenant, beta)
        faulty = wait_state(dst, "get_boot_volume_backup", copy_id, "FAULTY", timeout=STALL).data
        assert "sent nothing" in (faulty.system_tags or {}).get("bootvault", {}).get("lifecycleDetails", "")
        assert work_requests_in(tenant, beta).get_work_request(wr_id).data.status == "FAILED"
    finally:
        link.restore()
    # the source's later calls (none: its job has ended) could not revive it; it stays FAULTY
    time.sleep(3)
    assert client_in(tenant, beta).get_boot_volume_backup(copy_id).data.lifecycle_state == "FAULTY"
