"""Keys: one master key per deployment, customer keys stored wrapped under it.

Every host of a deployment is configured with the same master key (a file or an environment
variable). Customer (kmsKeyId) key material is random, wrapped with AES-256-GCM under the master
key, and kept wherever the caller likes (bootvault keeps it in the database, so every host can
use it). Per-(tenancy, key) data keys are derived with HKDF-SHA256, so block ids, ciphertexts and
object-name scopes never collide across tenancies or keys (no cross-tenant dedup).
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bootvault.engine import envelope
from bootvault.engine.errors import EngineError

KEY_BYTES = 32
_SALT = b"bootvault-data-keys-v1"
_WRAP_MAGIC = b"BVWK\x01"


class KeyNotFound(EngineError):
    """The requested key does not exist (or the master key is not configured)."""


class KeyUnwrapError(EngineError):
    """Wrapped key material is corrupt or was wrapped under another master key."""


@dataclass(frozen=True)
class DataKeys:
    id_key: bytes = field(repr=False)  # blake3 key for block ids
    enc_key: bytes = field(repr=False)  # AES-256-GCM key
    scope: str  # 16 hex chars; object-name namespace of (tenancy, key)


def _info(purpose: str, key_label: str, tenancy_id: str) -> bytes:
    """Length-prefixed, unambiguous encoding of the HKDF context."""
    out = bytearray(b"bootvault/v1")
    for part in (purpose, key_label, tenancy_id):
        raw = part.encode()
        out += len(raw).to_bytes(4, "big") + raw
    return bytes(out)


def _derive(ikm: bytes, length: int, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=length, salt=_SALT, info=info).derive(ikm)


def derive_data_keys(material: bytes, label: str, tenancy_id: str) -> DataKeys:
    return DataKeys(
        id_key=_derive(material, KEY_BYTES, _info("block-id", label, tenancy_id)),
        enc_key=_derive(material, KEY_BYTES, _info("encrypt", label, tenancy_id)),
        scope=_derive(material, 8, _info("scope", label, tenancy_id)).hex(),
    )


def parse_master(text: str) -> bytes:
    """A master key given as base64 (44 characters) or hex (64 characters)."""
    text = text.strip()
    with contextlib.suppress(ValueError):
        raw = bytes.fromhex(text) if len(text) == 2 * KEY_BYTES else base64.b64decode(text, validate=True)
        if len(raw) == KEY_BYTES:
            return raw
    raise ValueError("the master key must be 32 bytes, written as base64 or hex")


def master_from_file(path: Path, *, create: bool) -> bytes:
    """Read the master key file; with create, make it (random, mode 0600) if it does not exist."""
    if create and not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{secrets.token_hex(8)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
            os.fsync(fd)
            os.close(fd)
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)  # never overwrites a key another process created first
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyNotFound(f"master key file {path} not found") from None
    if len(raw) == KEY_BYTES:
        return raw  # the raw 32 bytes that bootvault 0.1 wrote
    try:
        return parse_master(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"master key file {path}: expected 32 bytes as base64 or hex") from None


class KeyRing:
    """Derives data keys. `load_wrapped(key_id)` returns a customer key's wrapped material or None."""

    def __init__(self, master: bytes, load_wrapped: Callable[[str], bytes | None]) -> None:
        if len(master) != KEY_BYTES:
            raise ValueError("master key must be 32 bytes")
        self._master_material = master
        self._load_wrapped = load_wrapped
        self._cache: dict[tuple[str, str | None], DataKeys] = {}
        self._lock = threading.Lock()

    def new_wrapped_key(self, key_id: str) -> bytes:
        """Fresh customer key material, wrapped under the master key and bound to key_id."""
        material = secrets.token_bytes(KEY_BYTES)
        return envelope.seal(self._master_material, _WRAP_MAGIC, key_id.encode(), material)

    def _unwrap(self, key_id: str, wrapped: bytes) -> bytes:
        try:
            return envelope.open_sealed(self._master_material, _WRAP_MAGIC, key_id.encode(), wrapped)
        except envelope.InvalidEnvelope as exc:
            raise KeyUnwrapError(
                f"key {key_id} cannot be unwrapped (wrong master key or corrupt): {exc}"
            ) from None

    def derive(self, purpose: str) -> bytes:
        """A 32-byte key for a service purpose (e.g. page tokens), the same on every host."""
        return _derive(self._master_material, KEY_BYTES, b"bootvault/" + purpose.encode())

    def data_keys(self, tenancy_id: str, kms_key_id: str | None) -> DataKeys:
        """Data keys of a tenancy under kms_key_id (None = the service-managed master key)."""
        with self._lock:
            cached = self._cache.get((tenancy_id, kms_key_id))
        if cached is not None:
            return cached
        if kms_key_id is None:
            keys = derive_data_keys(self._master_material, "master", tenancy_id)
        else:
            wrapped = self._load_wrapped(kms_key_id)
            if wrapped is None:
                raise KeyNotFound(f"key {kms_key_id} not found")
            keys = derive_data_keys(self._unwrap(kms_key_id, wrapped), "kms:" + kms_key_id, tenancy_id)
        with self._lock:
            self._cache[(tenancy_id, kms_key_id)] = keys
        return keys
