"""The destination's side of a copy (service/copy_dest) in process: blocks that arrive damaged
or malformed are refused as the sender's bad request, and nothing of them is stored."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from bootvault.domain import ocid
from bootvault.domain.errors import InvalidArgument
from bootvault.domain.models import BackupState
from bootvault.engine.xrc import encode_frame
from bootvault.service import copy_dest
from tests.service.conftest import House

KEY = bytes(range(32))  # the pair's transfer-id key for the tenancy


def _copy_in_progress(house: House) -> str:
    region = house.ctx.settings.region
    order = copy_dest.CopyOrder(
        work_request_id=ocid.mint("workrequest", region),
        backup_id=ocid.mint("bootvolumebackup", region),
        tenancy_id=house.caller.tenancy_id,
        compartment_id=house.caller.tenancy_id,
        boot_volume_id=ocid.mint("bootvolume", "alpha-1"),
        source_backup_id=ocid.mint("bootvolumebackup", "alpha-1"),
        source_region="alpha-1",
        type="FULL",
        size_in_gbs=1,
        image_id=None,
        display_name="copy",
        kms_key_id=None,
        freeform_tags={},
        defined_tags={},
        time_imaged=None,
    )
    made = copy_dest.create(house.ctx, order)
    assert made.lifecycle_state == BackupState.CREATING
    return made.id


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda f: f[:10], "truncated frame header"),
        (lambda f: f[:-1], "malformed frame"),
        (lambda f: f[:-1] + bytes([f[-1] ^ 1]), "damaged in transit"),
    ],
    ids=["cut-in-header", "cut-in-block", "flipped-bit"],
)
def test_damaged_blocks_are_refused_as_invalid_and_not_stored(
    house: House, damage: Callable[[bytes], bytes], reason: str
) -> None:
    backup_id = _copy_in_progress(house)
    block = random.Random(7).randbytes(16 << 10)  # incompressible: the frame carries it as it is
    good = encode_frame(KEY, block)
    with pytest.raises(InvalidArgument, match=reason):
        copy_dest.receive(house.ctx, backup_id, house.caller.tenancy_id, KEY, damage(good), 10.0)
    tid, tenancy = good[:32], house.caller.tenancy_id
    assert copy_dest.missing(house.ctx, backup_id, tenancy, [tid]) == [tid]  # nothing was kept
    assert copy_dest.receive(house.ctx, backup_id, tenancy, KEY, good, 20.0) == 1
    assert copy_dest.missing(house.ctx, backup_id, tenancy, [tid]) == []
