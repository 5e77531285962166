"""Page tokens: what the service seals opens back; anything else, however it is made, is 400
InvalidParameter and never an exception of another kind (a 500). Forged plain tokens of the kinds
that used to reach the database or the date arithmetic are among them."""

from __future__ import annotations

import base64
import json
import os
import random
from datetime import UTC, datetime
from typing import Any

import pytest

from bootvault.domain.errors import InvalidArgument
from bootvault.service.pagetokens import PageTokens

TOKENS = PageTokens(os.urandom(32))
OP, TENANCY = "ListBootVolumeBackups", "ocid1.tenancy.oc1..t"


def _plain(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def test_sealed_tokens_open_back() -> None:
    when = datetime(2026, 11, 27, 9, 30, 1, 123456, tzinfo=UTC)
    query = {"compartmentId": "c", "displayName": "näme ✓"}
    assert TOKENS.open(TOKENS.seal(OP, TENANCY, query, (when, "ocid1.x")), OP, TENANCY) == (
        query,
        (when, "ocid1.x"),
    )


FORGED = [
    _plain(["2020-01-01T00:00:00", "x"]),  # naive: the column type raised ValueError
    _plain(["0001-01-01T00:00:00+14:00", "x"]),  # before year 1 in UTC: OverflowError
    _plain(["9999-12-31T23:59:59-14:00", "x"]),
    _plain(["2020-01-01T00:00:00+00:00", "x\x00"]),  # NUL: PostgreSQL refuses it
    _plain(["2020-01-01T00:00:00+00:00", "x\ud800"]),  # a lone surrogate cannot be encoded
    _plain({"q": {}, "p": ["t", "2020-01-01T00:00:00", "x"]}),
    base64.urlsafe_b64encode(b"[" * 50_000).decode(),
    base64.urlsafe_b64encode(b"BVPT\x01" + random.Random(7).randbytes(64)).decode(),  # same in every worker
    "%%%",
    "\ud800",
    "é" * 10,
    "=" * 10,
    "",
]


@pytest.mark.parametrize("token", FORGED)
def test_forged_tokens_are_invalid_arguments(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page"):
        TOKENS.open(token or "x", OP, TENANCY)


def test_tokens_are_bound_to_the_operation_the_tenancy_and_the_key() -> None:
    token = TOKENS.seal(OP, TENANCY, {}, ("a", "ocid1.x"))
    for opener, op, tenancy in (
        (TOKENS, "ListBootVolumes", TENANCY),
        (TOKENS, OP, "ocid1.tenancy.oc1..other"),
        (PageTokens(os.urandom(32)), OP, TENANCY),
    ):
        with pytest.raises(InvalidArgument, match="page"):
            opener.open(token, op, tenancy)
