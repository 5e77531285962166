"""Region link signatures, endpoint rules, copy frames and derived copy ids, without servers."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from bootvault.domain import ocid
from bootvault.domain.errors import InvalidArgument
from bootvault.engine import xrc
from bootvault.service.regionlink import check_endpoint, sign, verify

KEY = os.urandom(32)


def _signed(body: bytes = b"{}") -> dict[str, str]:
    return sign(KEY, "POST", "/bootvault/region/v1/copies?tenancyId=t", "alpha-1", "beta-1", body)


def test_a_signed_call_verifies_only_as_signed() -> None:
    path = "/bootvault/region/v1/copies?tenancyId=t"
    headers = _signed()
    assert verify(KEY, "POST", path, "beta-1", headers, b"{}")
    assert not verify(os.urandom(32), "POST", path, "beta-1", headers, b"{}")  # another pair's key
    assert not verify(KEY, "POST", path, "gamma-1", headers, b"{}")  # sent to another region
    assert not verify(KEY, "POST", path + "x", "beta-1", headers, b"{}")  # another path or query
    assert not verify(KEY, "GET", path, "beta-1", headers, b"{}")
    assert not verify(KEY, "POST", path, "beta-1", headers, b"{ }")  # another body
    assert not verify(KEY, "POST", path, "beta-1", {**headers, "x-bootvault-region": "gamma-1"}, b"{}")
    old = format_datetime(datetime.now(UTC) - timedelta(minutes=6), usegmt=True)
    assert not verify(KEY, "POST", path, "beta-1", {**headers, "date": old}, b"{}")
    assert not verify(KEY, "POST", path, "beta-1", {**headers, "authorization": "BootvaultRegion !!"}, b"{}")
    assert not verify(KEY, "POST", path, "beta-1", {}, b"{}")


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("https://bv.example.com", "https://bv.example.com"),
        ("https://10.0.0.1:8443/", "https://10.0.0.1:8443"),
        ("http://127.0.0.1:8420", "http://127.0.0.1:8420"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://[::1]:80", "http://[::1]:80"),
        ("http://10.0.0.1:8420", None),  # plain HTTP off loopback
        ("ftp://bv.example.com", None),
        ("https://bv.example.com/path", None),
        ("bv.example.com", None),
    ],
)
def test_endpoints(endpoint: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(InvalidArgument):
            check_endpoint(endpoint)
    else:
        assert check_endpoint(endpoint) == ok


def test_frames_round_trip_and_damage_is_refused() -> None:
    key = os.urandom(32)
    blocks = [os.urandom(65536), bytes(65536 - 1) + b"x", b"short"]
    body = b"".join(xrc.encode_frame(key, b) for b in blocks)
    assert [(t, b) for t, b in xrc.frames(body, 65536)] == [(xrc.transfer_id(key, b), b) for b in blocks]
    with pytest.raises(xrc.BadFrame):
        list(xrc.frames(body[:-1], 65536))  # truncated
    with pytest.raises(xrc.BadFrame):
        list(xrc.frames(xrc.encode_frame(key, os.urandom(70000)), 65536))  # larger than a block
    # a flipped byte in a compressible block: it either fails to decompress or hashes wrongly
    frame = bytearray(xrc.encode_frame(key, bytes(65536)))
    frame[-3] ^= 0xFF
    try:
        tid, block = next(xrc.frames(bytes(frame), 65536))
    except xrc.BadFrame:
        return
    assert xrc.transfer_id(key, block) != tid


def test_policy_copy_ids_are_derived_from_backup_and_region() -> None:
    from bootvault.service.copy_link import derived_ocid as _derived_ocid

    class Keys:
        def derive(self, purpose: str) -> bytes:
            return b"k" * 32

    class Ctx:
        keys = Keys()

    a = _derived_ocid(Ctx(), "bootvolumebackup", "beta-1", "b1>beta-1")  # type: ignore[arg-type]
    assert a == _derived_ocid(Ctx(), "bootvolumebackup", "beta-1", "b1>beta-1")  # type: ignore[arg-type]
    assert a != _derived_ocid(Ctx(), "bootvolumebackup", "beta-1", "b2>beta-1")  # type: ignore[arg-type]
    assert ocid.resource_type(a) == "bootvolumebackup" and a.split(".")[3] == "beta-1"
    assert len(a) == len(ocid.mint("bootvolumebackup", "beta-1"))
