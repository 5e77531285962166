"""Backup rules through the service functions the API, the worker and the CLI share, with the
jobs run inline (tests/service/conftest.py)."""

from __future__ import annotations

import pytest

from bootvault.domain.errors import EtagMismatch, IncorrectState, NotFound, RelatedNotFound, RetryTokenReused
from bootvault.domain.models import BackupState, BackupType
from bootvault.service import backups
from bootvault.service.backups import CreateBackup, UpdateBackup
from bootvault.service.context import Caller
from bootvault.store import jobs
from tests.service.conftest import House


def test_a_backup_is_received_then_made_available_by_its_job(house: House) -> None:
    volume_id = house.volume()
    made = backups.create_backup(house.ctx, house.caller, CreateBackup(volume_id, type=BackupType.FULL), None)
    assert made.lifecycle_state == BackupState.REQUEST_RECEIVED
    assert house.run_jobs() == 1
    done = backups.get_backup(house.ctx, house.caller, made.id)
    assert done.lifecycle_state == BackupState.AVAILABLE
    assert done.percent_complete == 100 and done.time_imaged is not None
    assert done.time_imaged >= made.time_request_received


def test_a_retry_token_gives_the_same_backup_and_another_body_is_refused(house: House) -> None:
    volume_id = house.volume()
    first = backups.create_backup(house.ctx, house.caller, CreateBackup(volume_id), "token-1")
    again = backups.create_backup(house.ctx, house.caller, CreateBackup(volume_id), "token-1")
    assert again.id == first.id
    with pytest.raises(RetryTokenReused):
        backups.create_backup(
            house.ctx, house.caller, CreateBackup(volume_id, display_name="other"), "token-1"
        )
    with house.ctx.db.read() as conn:
        assert len(jobs.active_for_resource(conn, first.id)) == 1  # one job, for the one backup


def test_a_backup_in_progress_cannot_be_deleted_and_a_stale_etag_changes_nothing(house: House) -> None:
    made = backups.create_backup(house.ctx, house.caller, CreateBackup(house.volume()), None)
    with pytest.raises(IncorrectState):
        backups.delete_backup(house.ctx, house.caller, made.id, None)
    house.run_jobs()
    with pytest.raises(EtagMismatch):
        backups.update_backup(house.ctx, house.caller, made.id, UpdateBackup(display_name="x"), "stale")
    assert backups.get_backup(house.ctx, house.caller, made.id).display_name == made.display_name


def test_another_tenancy_sees_nothing(house: House) -> None:
    made = backups.create_backup(house.ctx, house.caller, CreateBackup(house.volume()), None)
    stranger = Caller("ocid1.tenancy.oc1..stranger", "ocid1.user.oc1..stranger")
    with pytest.raises(NotFound):
        backups.get_backup(house.ctx, stranger, made.id)
    with pytest.raises(RelatedNotFound):
        backups.create_backup(house.ctx, stranger, CreateBackup(made.boot_volume_id), None)
