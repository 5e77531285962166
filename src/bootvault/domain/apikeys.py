"""API key material as OCI names it: a key's fingerprint is the colon-separated lowercase MD5 of its
DER SubjectPublicKeyInfo. Pure computation: the API checks signatures with it (api/auth.py) and
the admin side makes keys with it (service/identity.py)."""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey


def public_der(public_key: RSAPublicKey) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def fingerprint(der: bytes) -> str:
    digest = hashlib.md5(der, usedforsecurity=False).hexdigest()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def fingerprint_of(public_key: RSAPublicKey) -> str:
    """What OCI calls the key's fingerprint."""
    return fingerprint(public_der(public_key))
