"""Signature verification against requests signed by the real `oci` SDK signer."""

from __future__ import annotations

import email.utils
import itertools
import json
import random
import re
import time
from collections.abc import Callable
from datetime import timedelta

import oci
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from oci._vendor import requests
from oci._vendor.httpsig_cffi.utils import get_fingerprint
from oci.signer import AbstractBaseSigner

from bootvault.api.auth import (
    AuthError,
    KeyId,
    WireHeaders,
    _simple_params,  # noqa: PLC2701 - its equivalence is the point
    parse_authorization,
    verify_request,
)
from bootvault.domain.apikeys import fingerprint_of
from bootvault.service.identity import generate_api_key

TENANCY = "ocid1.tenancy.oc1..aaaatest"
USER = "ocid1.user.oc1..aaaauser"
BASE = "http://127.0.0.1:18765/20160918"
Signed = tuple[str, str, dict[str, str], bytes]


@pytest.fixture(scope="module")
def key_a() -> tuple[bytes, bytes, str]:
    return generate_api_key()


@pytest.fixture(scope="module")
def key_b() -> tuple[bytes, bytes, str]:
    return generate_api_key()


def _pub(pem: bytes) -> RSAPublicKey:
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, RSAPublicKey)
    return key


def _sign(signer: Callable, method: str, url: str, **kw: object) -> Signed:
    prepared = requests.Request(method, url, **kw).prepare()
    signer(prepared)  # what requests does with auth=signer (oci.base_client passes auth=signer)
    body = prepared.body or b""
    if isinstance(body, str):
        body = body.encode("utf-8")
    return prepared.method, prepared.path_url, dict(prepared.headers), body


@pytest.fixture(scope="module")
def signer(key_a: tuple[bytes, bytes, str]) -> oci.signer.Signer:
    priv, _, fp = key_a
    return oci.signer.Signer(TENANCY, USER, fp, None, private_key_content=priv.decode())


def _verify(signed: Signed, key: RSAPublicKey | None, **kw: object):
    method, target, headers, body = signed
    return verify_request(method, target, headers, body, lambda _kid: key, **kw)


BODY = {"bootVolumeId": "ocid1.bootvolume.oc1.local.bv1", "displayName": "bk1", "type": "FULL"}
CASES = {
    "get_query": (
        "GET",
        BASE + "/bootVolumeBackups",
        {"params": {"compartmentId": "ocid1.compartment.oc1..c1", "limit": 1, "sortBy": "TIMECREATED"}},
    ),
    "delete": ("DELETE", BASE + "/bootVolumeBackups/ocid1.bootvolumebackup.oc1.local.aaaa1", {}),
    "post_json": (
        "POST",
        BASE + "/bootVolumeBackups",
        {"data": json.dumps(BODY), "headers": {"content-type": "application/json"}},
    ),
    "put": (
        "PUT",
        BASE + "/bootVolumeBackups/ocid1.bootvolumebackup.oc1.local.aaaa1",
        {"data": json.dumps({"displayName": "renamed"})},
    ),
    "post_empty": ("POST", BASE + "/bootVolumeBackups/ocid1.bootvolumebackup.oc1.local.aaaa1/actions/x", {}),
}


@pytest.mark.parametrize("case", CASES)
def test_sdk_signed_requests_verify(case: str, signer, key_a) -> None:
    method, url, kw = CASES[case]
    signed = _sign(signer, method, url, **kw)
    seen: list[KeyId] = []

    def lookup(kid: KeyId) -> RSAPublicKey:
        seen.append(kid)
        return _pub(key_a[1])

    result = verify_request(*signed, lookup)
    assert result.key == KeyId(TENANCY, USER, key_a[2]) == seen[0]
    assert signed[2]["host"] == "127.0.0.1:18765"  # SDK signs netloc with port
    if case == "get_query":
        assert signed[1].startswith(
            "/20160918/bootVolumeBackups?compartmentId=ocid1.compartment.oc1..c1&limit=1"
        )
    if case == "post_empty":
        assert signed[2]["x-content-sha256"] == "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        assert signed[2]["content-length"] == "0"


def test_headers_case_insensitive(signer, key_a) -> None:
    m, t, h, b = _sign(signer, *CASES["post_json"][:2], **CASES["post_json"][2])
    upper = {k.upper(): v for k, v in h.items()}
    assert verify_request(m.lower(), t, upper, b, lambda _k: _pub(key_a[1])).key.user_id == USER


def test_the_servers_header_map_reads_as_any_mapping(signer, key_a) -> None:
    """headers_of (lower-case names, values stripped once per request) is taken as it is; the
    same headers in any case and with whitespace around values verify the same way."""
    from starlette.requests import Request

    from bootvault.api.common import headers_of

    m, t, h, b = _sign(signer, *CASES["post_json"][:2], **CASES["post_json"][2])
    raw = [(k.title().encode(), f" {v}\t ".encode()) for k, v in h.items()]
    wire = headers_of(Request({"type": "http", "headers": raw}))
    assert isinstance(wire, WireHeaders) and wire == {k: v.strip() for k, v in h.items()}
    for headers in (wire, {k.decode(): v.decode() for k, v in raw}):
        assert verify_request(m, t, headers, b, lambda _k: _pub(key_a[1])).key.user_id == USER
    with pytest.raises(AuthError, match="x-content-sha256"):
        verify_request(m, t, wire, b + b" ", lambda _k: _pub(key_a[1]))


@pytest.mark.filterwarnings("ignore::FutureWarning")  # SDK get_fingerprint regex
def test_fingerprint_helpers(key_a) -> None:
    priv, pub, fp = key_a
    assert fp == fingerprint_of(_pub(pub)) == get_fingerprint(pub.decode())
    assert priv.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert _pub(pub).key_size == 2048


def test_parse_authorization(signer, key_a) -> None:
    _, _, h, _ = _sign(signer, "GET", BASE + "/x")
    kid, headers, alg, sig = parse_authorization(h["authorization"])
    assert kid == KeyId(TENANCY, USER, key_a[2])
    assert headers == ["date", "(request-target)", "host"] and alg == "rsa-sha256" and sig


def _expect(signed: Signed, key: RSAPublicKey | None, match: str, **kw: object) -> None:
    with pytest.raises(AuthError, match=match):
        _verify(signed, key, **kw)


def test_tampered_body(signer, key_a) -> None:
    m, t, h, b = _sign(signer, *CASES["post_json"][:2], **CASES["post_json"][2])
    _expect((m, t, h, b.replace(b"bk1", b"bk2")), _pub(key_a[1]), "x-content-sha256")
    h2 = dict(h, **{"x-content-sha256": "Z" * 43 + "="})
    _expect((m, t, h2, b), _pub(key_a[1]), "x-content-sha256")
    _expect((m, t, h, b + b" "), _pub(key_a[1]), "x-content-sha256|content-length")


def test_tampered_query(signer, key_a) -> None:
    m, t, h, b = _sign(signer, *CASES["get_query"][:2], **CASES["get_query"][2])
    _expect((m, t.replace("limit=1", "limit=2"), h, b), _pub(key_a[1]), "signature verification")
    _expect((m, t.split("?")[0], h, b), _pub(key_a[1]), "signature verification")
    _expect(("DELETE", t, h, b), _pub(key_a[1]), "signature verification")


def test_wrong_host(signer, key_a) -> None:
    m, t, h, b = _sign(signer, "GET", BASE + "/x")
    _expect((m, t, dict(h, host="127.0.0.1:18766"), b), _pub(key_a[1]), "signature verification")
    _expect((m, t, dict(h, host="127.0.0.1"), b), _pub(key_a[1]), "signature verification")


def test_wrong_key_and_fingerprint(signer, key_a, key_b) -> None:
    signed = _sign(signer, "GET", BASE + "/x")
    _expect(signed, _pub(key_b[1]), "fingerprint")  # registered key differs from keyId fingerprint
    impostor = oci.signer.Signer(TENANCY, USER, key_a[2], None, private_key_content=key_b[0].decode())
    _expect(_sign(impostor, "GET", BASE + "/x"), _pub(key_a[1]), "signature verification")
    _expect(signed, None, "unknown key")


class _CustomSigner(AbstractBaseSigner):
    def __init__(self, priv: bytes, fp: str, generic: list[str], body: list[str]) -> None:
        key = oci.signer.load_private_key(priv, None)
        self.create_signers(f"{TENANCY}/{USER}/{fp}", key, generic, body)


def test_missing_or_unsigned_headers(signer, key_a) -> None:
    pub = _pub(key_a[1])
    m, t, h, b = _sign(signer, "GET", BASE + "/x")
    _expect((m, t, {k: v for k, v in h.items() if k != "date"}, b), pub, "missing signed header date")
    m, t, h, b = _sign(signer, *CASES["post_json"][:2], **CASES["post_json"][2])
    _expect((m, t, {k: v for k, v in h.items() if k != "x-content-sha256"}, b), pub, "x-content-sha256")
    generic = ["date", "(request-target)", "host"]
    body_headers = ["content-length", "content-type", "x-content-sha256"]
    no_host = _CustomSigner(key_a[0], key_a[2], ["date", "(request-target)"], body_headers)
    _expect(_sign(no_host, "GET", BASE + "/x"), pub, "must include host")
    no_sha = _CustomSigner(key_a[0], key_a[2], generic, ["content-length", "content-type"])
    _expect(_sign(no_sha, "POST", BASE + "/x", data="{}"), pub, "must include x-content-sha256")
    no_date = _CustomSigner(key_a[0], key_a[2], ["(request-target)", "host"], body_headers)
    _expect(_sign(no_date, "GET", BASE + "/x"), pub, "date or x-date")
    # SDK's without_content_headers (object-storage style) is not accepted for body methods
    _expect(_sign(signer.without_content_headers, "PUT", BASE + "/x", data="{}"), pub, "must include content")


@pytest.mark.parametrize("offset", [-360, 360])
def test_date_skew(signer, key_a, offset: int) -> None:
    date = email.utils.formatdate(time.time() + offset, usegmt=True)
    signed = _sign(signer, "GET", BASE + "/x", headers={"date": date})
    assert signed[2]["date"] == date
    _expect(signed, _pub(key_a[1]), "clock skew")
    assert _verify(signed, _pub(key_a[1]), max_skew=timedelta(minutes=7))


def test_garbage_date(signer, key_a) -> None:
    _expect(_sign(signer, "GET", BASE + "/x", headers={"date": "yesterday"}), _pub(key_a[1]), "RFC 7231")


AUTH_VARIANTS: dict[str, Callable[[str], str]] = {
    "empty": lambda a: "",
    "garbage": lambda a: "garbage",
    "bearer": lambda a: "Bearer abc",
    "signature_only": lambda a: "Signature",
    "missing_keyid": lambda a: a.replace('keyId="', 'kid="'),
    "bad_base64": lambda a: a.replace('signature="', 'signature="!!!'),
    "truncated_sig": lambda a: a.replace('signature="', 'signature="AAAA'),
    "two_part_keyid": lambda a: a.replace(f"{TENANCY}/", ""),
    "bad_fp": lambda a: a.replace(f"{USER}/", f"{USER}/zz:"),
    "hmac": lambda a: a.replace("rsa-sha256", "hmac-sha256"),
    "version2": lambda a: a.replace('version="1"', 'version="2"'),
    "binary": lambda a: 'Signature \x00\xff"=,,,',
}


@pytest.mark.parametrize("variant", AUTH_VARIANTS)
def test_malformed_authorization(variant: str, signer, key_a) -> None:
    m, t, h, b = _sign(signer, "GET", BASE + "/x")
    h = dict(h, authorization=AUTH_VARIANTS[variant](h["authorization"]))
    with pytest.raises(AuthError):
        verify_request(m, t, h, b, lambda _k: _pub(key_a[1]))


def test_missing_version_accepted(signer, key_a) -> None:
    m, t, h, b = _sign(signer, "GET", BASE + "/x")
    h = dict(h, authorization=h["authorization"].replace(',version="1"', ""))
    assert verify_request(m, t, h, b, lambda _k: _pub(key_a[1])).key.tenancy_id == TENANCY


def test_missing_authorization(key_a) -> None:
    with pytest.raises(AuthError, match="missing Authorization"):
        verify_request("GET", "/x", {"host": "h"}, b"", lambda _k: _pub(key_a[1]))


# The fast path of parse_authorization must accept exactly what this full regex accepted, with
# the same pairs: anything else goes to the general parser.
_OLD_PARAM = r'([^\s=,"]+)\s*=\s*"([^"\\]*)"'
_OLD_SIMPLE = re.compile(rf"\s*{_OLD_PARAM}(?:\s*,\s*{_OLD_PARAM})*\s*")
_PARAM_ALPHABET = 'ab=",\\ \t\u00a0'


def _parses_as_the_regex_did(rest: str) -> None:
    old = re.compile(_OLD_PARAM).findall(rest) if _OLD_SIMPLE.fullmatch(rest) else None
    assert _simple_params(rest) == old, rest


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=_PARAM_ALPHABET, max_size=40))
def test_the_one_pass_parameter_parser_accepts_what_the_regex_did(rest: str) -> None:
    _parses_as_the_regex_did(rest)


def test_the_one_pass_parameter_parser_on_every_short_and_many_long_strings() -> None:
    """Beside hypothesis's examples (3,000 of them took seconds, nearly all in hypothesis's own
    bookkeeping; 500 now): every string of up to 5 characters of the alphabet (66,430: each
    single parameter and its damaged forms), and 20,000 seeded strings of characters and whole
    parameters, so that lists of several parameters (some 350 of them) and their near misses
    come up far more often than in uniformly random text."""
    for length in range(6):
        for chars in itertools.product(_PARAM_ALPHABET, repeat=length):
            _parses_as_the_regex_did("".join(chars))
    pieces = [*_PARAM_ALPHABET, 'a="b"', 'ab=""', ", ", ' = "', '"b"']
    rng = random.Random(20261207)
    for _ in range(20_000):
        _parses_as_the_regex_did("".join(rng.choices(pieces, k=rng.randint(2, 12))))


def test_the_one_pass_parameter_parser_on_sdk_headers() -> None:
    header = 'keyId="t/u/f",algorithm="rsa-sha256", headers="date host",signature="AB+/=",version="1"'
    assert _simple_params(header) == [
        ("keyId", "t/u/f"),
        ("algorithm", "rsa-sha256"),
        ("headers", "date host"),
        ("signature", "AB+/="),
        ("version", "1"),
    ]
