"""Request bodies the wire layer refuses, and error answers that render whatever the client sent."""

from __future__ import annotations

import json

import pytest

from bootvault.api.errors import WireError, error_response
from bootvault.api.wire import CreateBootVolumeBackupDetails, parse_body
from bootvault.domain.errors import InvalidArgument


@pytest.mark.parametrize(
    "raw",
    [
        b'{"bootVolumeId": "v", "definedTags": {"\\ud800": {"k": "v"}}}',
        b'{"bootVolumeId": "v", "freeformTags": {"\xed\xa0\x80": "v"}}',  # the same, as raw bytes
        b'{"bootVolumeId": "v", "freeformTags": {"k\\u0000": "v"}}',
    ],
)
def test_a_bad_key_is_refused_with_a_message_that_renders(raw: bytes) -> None:
    """The message names the key; a key with a lone surrogate made the error answer itself fail
    to encode (a 500)."""
    with pytest.raises(InvalidArgument) as err:
        parse_body(CreateBootVolumeBackupDetails, raw)
    response = error_response(400, "InvalidParameter", err.value.message, "rid")
    doc = json.loads(response.body)
    assert doc["code"] == "InvalidParameter" and "Tags." in doc["message"]


def test_error_answers_render_lone_surrogates_visibly() -> None:
    doc = json.loads(error_response(400, "InvalidParameter", "bad \ud800 value", "rid").body)
    assert doc["message"] == "bad \\ud800 value"


@pytest.mark.parametrize(
    "raw",
    [b"[" * 10_000 + b"]" * 10_000, b'{"a":' * 10_000 + b"1" + b"}" * 10_000, b'{"a": ' + b"9" * 4301 + b"}"],
)
def test_absurd_json_cannot_be_parsed(raw: bytes) -> None:
    with pytest.raises(WireError) as err:
        parse_body(CreateBootVolumeBackupDetails, raw)
    assert (err.value.status, err.value.code) == (400, "CannotParseRequest")
