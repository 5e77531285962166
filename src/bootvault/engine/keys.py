"""Local key provider: master and customer keys kept as 32-byte files in one directory.

Per-(tenancy, key) data keys are derived with HKDF-SHA256, so block ids, ciphertexts and
object-name scopes never collide across tenancies or keys (no cross-tenant dedup).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
MASTER_FILE = "master.key"
_SALT = b"bootvault-data-keys-v1"


class KeyNotFound(Exception):
    """The requested key (or the master key) does not exist in the key directory."""


class KeyExists(Exception):
    """create_key was called for a key id that already has key material."""


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


def _create_exclusive(path: Path, data: bytes) -> bool:
    """Atomically create path with data (mode 0600); False if it already exists."""
    tmp = path.with_name(f".tmp-{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.link(tmp, path)  # fails if path exists: never overwrites key material
        except FileExistsError:
            return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
    return True


class LocalKeyProvider:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)

    def _key_path(self, key_id: str) -> Path:
        return self.directory / (hashlib.sha256(key_id.encode()).hexdigest() + ".key")

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)

    def ensure_master(self) -> None:
        """Create master.key (32 random bytes, mode 0600) if it does not exist."""
        self._ensure_dir()
        _create_exclusive(self.directory / MASTER_FILE, secrets.token_bytes(KEY_BYTES))

    def create_key(self, key_id: str) -> None:
        """Create new key material for key_id; KeyExists if it already has some."""
        if not key_id:
            raise ValueError("key_id must be non-empty")
        self._ensure_dir()
        if not _create_exclusive(self._key_path(key_id), secrets.token_bytes(KEY_BYTES)):
            raise KeyExists(f"key {key_id} already exists")

    def has_key(self, key_id: str) -> bool:
        return bool(key_id) and self._key_path(key_id).is_file()

    def _read(self, path: Path, label: str) -> bytes:
        try:
            material = path.read_bytes()
        except FileNotFoundError:
            raise KeyNotFound(f"key {label} not found") from None
        if len(material) != KEY_BYTES:
            raise ValueError(f"key file for {label} is corrupt ({len(material)} bytes)")
        return material

    def data_keys(self, tenancy_id: str, kms_key_id: str | None) -> DataKeys:
        """Derive the data keys of a tenancy under kms_key_id (None = the master key)."""
        if kms_key_id is None:
            label, ikm = "master", self._read(self.directory / MASTER_FILE, "master")
        else:
            label, ikm = "kms:" + kms_key_id, self._read(self._key_path(kms_key_id), kms_key_id)
        return DataKeys(
            id_key=_derive(ikm, KEY_BYTES, _info("block-id", label, tenancy_id)),
            enc_key=_derive(ikm, KEY_BYTES, _info("encrypt", label, tenancy_id)),
            scope=_derive(ikm, 8, _info("scope", label, tenancy_id)).hex(),
        )
