"""Verification of OCI API-key request signatures (draft-cavage HTTP signatures, as the `oci` SDK signs).

Pure logic: no web framework and no database. The HTTP layer turns AuthError into 401 NotAuthenticated.
"""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.request import parse_http_list

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from bootvault.domain.apikeys import fingerprint, public_der

__all__ = [
    "AuthError",
    "KeyId",
    "SignedRequest",
    "TrustedKey",
    "WireHeaders",
    "check_body",
    "check_signature",
    "prepare_request",
    "VerifiedRequest",
    "parse_authorization",
    "verify_request",
]

SUPPORTED_ALGORITHM = "rsa-sha256"
GENERIC_HEADERS = ("(request-target)", "host")
BODY_METHODS = frozenset({"post", "put", "patch"})
BODY_HEADERS = ("content-length", "content-type", "x-content-sha256")
_FINGERPRINT_RE = re.compile(r"^([0-9a-f]{2}:){15}[0-9a-f]{2}$")
_MAX_AUTH_LEN = 16384
# The SDK's shape: name="value" pairs, no quotes or backslashes in values. Such a header is split
# at its quotes and each name checked by these (_simple_params), with the result urllib's
# parse_http_list (a Python character loop, about 0.2 ms for a signature) would give; anything
# else still goes through parse_http_list.
_FIRST_NAME = re.compile(r'\s*([^\s=,"]+)\s*=\s*')
_NEXT_NAME = re.compile(r'\s*,\s*([^\s=,"]+)\s*=\s*')
_VERIFIED_MAX = 4096  # entries of the verified-signature cache (32-byte keys)


class AuthError(Exception):
    """The request is not (validly) authenticated; the message says why (for logs only)."""


@dataclass(frozen=True)
class KeyId:
    tenancy_id: str
    user_id: str
    fingerprint: str


@dataclass(frozen=True)
class VerifiedRequest:
    key: KeyId


@dataclass(frozen=True)
class SignedRequest:
    """A request whose headers passed every check but the signature itself (prepare_request)."""

    key: KeyId
    message: bytes  # the signing string
    signature: bytes


@dataclass(frozen=True)
class TrustedKey:
    """A registered public key with what verification derives from it, computed once."""

    public_key: RSAPublicKey
    fingerprint: str
    digest: bytes = field(repr=False)  # SHA-256 of the DER: names the key in the verified cache

    @classmethod
    def of(cls, public_key: RSAPublicKey) -> TrustedKey:
        der = public_der(public_key)
        return cls(public_key, fingerprint(der), hashlib.sha256(der).digest())


class _VerifiedCache:
    """(key, signing string, signature) triples whose RSA check passed. The same three inputs
    always verify the same way, so a replayed request (a client retrying, a load generator) skips
    only the RSA arithmetic: every other check, the date skew included, runs on every request."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._seen: dict[bytes, None] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(key: TrustedKey, message: bytes, signature: bytes) -> bytes:
        h = hashlib.sha256(key.digest)
        h.update(len(message).to_bytes(4, "big") + message)
        h.update(signature)
        return h.digest()

    def __contains__(self, entry: bytes) -> bool:
        return entry in self._seen

    def add(self, entry: bytes) -> None:
        with self._lock:
            if len(self._seen) >= self.size:
                del self._seen[next(iter(self._seen))]  # the oldest
            self._seen[entry] = None


_verified = _VerifiedCache(_VERIFIED_MAX)


@lru_cache(maxsize=1024)  # a client sends its keyId with every request
def _parse_key_id(key_id: str) -> KeyId:
    parts = key_id.split("/")
    if len(parts) != 3 or not all(parts):
        raise AuthError("keyId must be <tenancy>/<user>/<fingerprint>")
    tenancy_id, user_id, fingerprint = parts
    fingerprint = fingerprint.lower()
    if not _FINGERPRINT_RE.match(fingerprint):
        raise AuthError("keyId fingerprint is malformed")
    return KeyId(tenancy_id=tenancy_id, user_id=user_id, fingerprint=fingerprint)


def _simple_params(rest: str) -> list[tuple[str, str]] | None:
    """The pairs of `name="value", ...` when every value is quoted and free of backslashes (what
    the SDKs send), in one pass over the quotes; None for anything else."""
    parts = rest.split('"')
    if len(parts) < 3 or len(parts) % 2 == 0 or parts[-1].strip():
        return None
    pairs = []
    for i in range(0, len(parts) - 1, 2):
        name = (_NEXT_NAME if i else _FIRST_NAME).fullmatch(parts[i])
        if name is None or "\\" in parts[i + 1]:
            return None
        pairs.append((name.group(1), parts[i + 1]))
    return pairs


def parse_authorization(header: str) -> tuple[KeyId, list[str], str, str]:
    """Parse `Signature keyId="..",algorithm="..",headers="..",signature="..",version="1"`."""
    if not isinstance(header, str) or not header.strip():
        raise AuthError("missing Authorization header")
    if len(header) > _MAX_AUTH_LEN:
        raise AuthError("Authorization header too long")
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "signature":
        raise AuthError("Authorization scheme must be Signature")
    params: dict[str, str] = {}
    pairs = _simple_params(rest)
    if pairs is None:
        pairs = []
        for item in parse_http_list(rest):
            name, sep, value = item.strip().partition("=")
            name = name.strip()
            value = value.strip()
            if not sep or not name:
                raise AuthError("malformed Authorization parameter")
            if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
                value = value[1:-1]
            pairs.append((name, value))
    for name, value in pairs:
        if name in params:
            raise AuthError(f"duplicate Authorization parameter {name}")
        params[name] = value
    for required in ("keyId", "algorithm", "headers", "signature"):
        if not params.get(required):
            raise AuthError(f"Authorization header lacks {required}")
    if params.get("version", "1") != "1":
        raise AuthError("unsupported signature version")
    headers = [h.lower() for h in params["headers"].split()]
    return _parse_key_id(params["keyId"]), headers, params["algorithm"].lower(), params["signature"]


@lru_cache(maxsize=256)  # a client's requests in one second share their date header
def _parse_date(value: str) -> datetime:
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError) as exc:
        raise AuthError("date header is not a valid RFC 7231 date") from exc
    if parsed is None:
        raise AuthError("date header is not a valid RFC 7231 date")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_policy(method: str, signed: list[str], headers: Mapping[str, str]) -> None:
    if len(set(signed)) != len(signed):
        raise AuthError("signed headers list has duplicates")
    if "date" not in signed and "x-date" not in signed:
        raise AuthError("signed headers must include date or x-date")
    required = GENERIC_HEADERS + (BODY_HEADERS if method in BODY_METHODS else ())
    for name in required:
        if name not in signed:
            raise AuthError(f"signed headers must include {name}")
    for name in signed:
        if name != "(request-target)" and name not in headers:
            raise AuthError(f"missing signed header {name}")


def _check_content(headers: Mapping[str, str], body: bytes) -> None:
    if "x-content-sha256" in headers:
        expected = base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")
        if not hmac.compare_digest(headers["x-content-sha256"].encode(), expected.encode()):
            raise AuthError("x-content-sha256 does not match body")
    if "content-length" in headers and headers["content-length"].strip() != str(len(body)):
        raise AuthError("content-length does not match body")


def _check_dates(signed: list[str], headers: Mapping[str, str], now: datetime, max_skew: timedelta) -> None:
    for name in ("date", "x-date"):
        if name in signed:
            skew = abs(_parse_date(headers[name]) - now)
            if skew > max_skew:
                raise AuthError(f"{name} header is outside the allowed clock skew")


def _signing_string(method: str, target: str, signed: list[str], headers: Mapping[str, str]) -> bytes:
    lines = [
        f"(request-target): {method} {target}" if name == "(request-target)" else f"{name}: {headers[name]}"
        for name in signed
    ]
    try:
        return "\n".join(lines).encode("ascii")
    except UnicodeEncodeError as exc:
        raise AuthError("signed headers contain non-ASCII characters") from exc


class WireHeaders(dict[str, str]):
    """Headers as the checks read them: names in lower case, values without the whitespace
    around them. A mapping of this type is taken as it is; any other is converted first."""


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    return {str(k).lower(): str(v).strip() for k, v in headers.items()}


def check_body(headers: Mapping[str, str], body: bytes) -> None:
    """The body read after a headers-only verification must be the one the signature covers."""
    _check_content(headers if isinstance(headers, WireHeaders) else _lowered(headers), bytes(body))


def prepare_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None,
    now: datetime | None = None,
    max_skew: timedelta = timedelta(minutes=5),
    repeated: frozenset[str] = frozenset(),
) -> SignedRequest:
    """Every check of verify_request that needs no key: the Authorization header, the signed
    header policy, repeated headers, the date skew, the body digest (when a body is given) and
    the signing string. check_signature then checks the signature with the caller's key."""
    if not isinstance(method, str) or not method or not isinstance(target, str) or not target:
        raise AuthError("missing method or request target")
    try:
        lower = headers if isinstance(headers, WireHeaders) else _lowered(headers)
    except Exception as exc:  # garbage mapping
        raise AuthError("unreadable headers") from exc
    if not isinstance(body, bytes | bytearray | memoryview | None):
        raise AuthError("body must be bytes")
    method = method.lower()
    key_id, signed, algorithm, signature_b64 = parse_authorization(lower.get("authorization", ""))
    if algorithm != SUPPORTED_ALGORITHM:
        raise AuthError(f"unsupported algorithm {algorithm!r}")
    _check_policy(method, signed, lower)
    twice = {name.lower() for name in repeated} & set(signed)
    if twice:
        raise AuthError(f"signed header {sorted(twice)[0]} appears more than once")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    _check_dates(signed, lower, now, max_skew)
    if body is not None:
        _check_content(lower, bytes(body))
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthError("signature is not valid base64") from exc
    if not signature:
        raise AuthError("empty signature")
    return SignedRequest(key_id, _signing_string(method, target, signed, lower), signature)


def check_signature(request: SignedRequest, key: TrustedKey | None) -> VerifiedRequest:
    """The signature of a prepared request against the registered key of its keyId (None: no
    such key)."""
    if key is None:
        raise AuthError("unknown key")
    if not isinstance(key.public_key, RSAPublicKey):
        raise AuthError("key is not an RSA public key")
    if not hmac.compare_digest(key.fingerprint, request.key.fingerprint):
        raise AuthError("keyId fingerprint does not match the registered key")
    entry = _VerifiedCache._key(key, request.message, request.signature)
    if entry not in _verified:
        try:
            key.public_key.verify(request.signature, request.message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise AuthError("signature verification failed") from exc
        except Exception as exc:  # e.g. malformed signature length
            raise AuthError("signature verification failed") from exc
        _verified.add(entry)
    return VerifiedRequest(key=request.key)


def verify_request(
    method: str,
    target: str,
    headers: Mapping[str, str],
    body: bytes | None,
    lookup_public_key: Callable[[KeyId], RSAPublicKey | None],
    now: datetime | None = None,
    max_skew: timedelta = timedelta(minutes=5),
    repeated: frozenset[str] = frozenset(),
) -> VerifiedRequest:
    """Verify an OCI API-key signed request; raise AuthError on any problem.

    `target` is the raw path plus `?query` exactly as received. Exceptions raised by
    `lookup_public_key` itself (e.g. database errors) propagate unchanged. body=None verifies the
    headers only (x-content-sha256 is signed): the caller reads the body afterwards and checks it
    with check_body, so an unauthenticated client never makes the server read a body.
    `repeated` names the headers that appeared more than once: signing one of those is refused,
    since a verifier and a handler could read different values of it.
    """
    request = prepare_request(method, target, headers, body, now, max_skew, repeated)
    public_key = lookup_public_key(request.key)
    if public_key is None:
        raise AuthError("unknown key")
    if not isinstance(public_key, RSAPublicKey):
        raise AuthError("key is not an RSA public key")
    return check_signature(request, TrustedKey.of(public_key))
