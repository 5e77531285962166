"""The AES-256-GCM envelope of every small sealed object: `magic | nonce (12) | ciphertext+tag`,
authenticated with `magic + binding`, where the binding names what the object is (a manifest's
object name, a pack id, a key id, a page token's query). An envelope moved to another name, or
sealed under another key, does not open. (Blocks use the same construction in codec.py, sealed
in place into the pack buffer to save a copy.)"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bootvault.engine.errors import EngineError

NONCE = 12
TAG = 16


class InvalidEnvelope(EngineError):
    """The envelope has another magic, is truncated, or fails authentication."""


def seal(key: bytes, magic: bytes, binding: bytes, plaintext: bytes) -> bytes:
    nonce = os.urandom(NONCE)
    return magic + nonce + AESGCM(key).encrypt(nonce, plaintext, magic + binding)


def open_sealed(key: bytes, magic: bytes, binding: bytes, blob: bytes) -> bytes:
    if blob[: len(magic)] != magic or len(blob) < len(magic) + NONCE + TAG:
        raise InvalidEnvelope("bad header")
    nonce = blob[len(magic) : len(magic) + NONCE]
    try:
        return AESGCM(key).decrypt(nonce, blob[len(magic) + NONCE :], magic + binding)
    except InvalidTag:
        raise InvalidEnvelope("failed authentication (corrupted, moved, or another key)") from None
