from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bootvault.engine import codec
from bootvault.engine.codec import CorruptBlock, block_id, decode, encode, object_name
from bootvault.engine.keys import (
    DataKeys,
    KeyNotFound,
    KeyRing,
    KeyUnwrapError,
    master_from_file,
    parse_master,
)

TENANCY = "ocid1.tenancy.oc1..aaaatenancy"
KMS = "ocid1.key.oc1.phx.aaaa.bbbb"
MASTER = bytes(range(32))


class Vault:
    """Where the service keeps wrapped customer keys (the database); a dict here."""

    def __init__(self) -> None:
        self.wrapped: dict[str, bytes] = {}


@pytest.fixture
def vault() -> Vault:
    return Vault()


@pytest.fixture
def provider(vault: Vault) -> KeyRing:
    return KeyRing(MASTER, vault.wrapped.get)


@pytest.fixture
def keys(provider: KeyRing) -> DataKeys:
    return provider.data_keys(TENANCY, None)


def _text() -> bytes:
    return b"".join(b"line %d of a very compressible boot volume\n" % i for i in range(3000))


# ---------------------------------------------------------------- keys


def test_master_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "k" / "master.key"
    with pytest.raises(KeyNotFound):
        master_from_file(path, create=False)
    first = master_from_file(path, create=True)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert master_from_file(path, create=True) == first
    assert [f.name for f in (tmp_path / "k").iterdir()] == ["master.key"]
    assert parse_master(first.hex()) == first
    with pytest.raises(ValueError):
        parse_master("too short")


def test_data_keys_are_deterministic_and_scoped(provider: KeyRing, vault: Vault) -> None:
    a = provider.data_keys(TENANCY, None)
    assert a == KeyRing(MASTER, vault.wrapped.get).data_keys(TENANCY, None)
    assert len(a.id_key) == 32 and len(a.enc_key) == 32 and a.id_key != a.enc_key
    assert len(a.scope) == 16 and int(a.scope, 16) >= 0
    assert "id_key" not in repr(a) and a.id_key.hex() not in repr(a)
    b = provider.data_keys("ocid1.tenancy.oc1..other", None)
    assert len({a.scope, b.scope}) == 2 and a.id_key != b.id_key and a.enc_key != b.enc_key
    assert KeyRing(os.urandom(32), vault.wrapped.get).data_keys(TENANCY, None) != a


def test_customer_keys_are_wrapped_under_the_master(provider: KeyRing, vault: Vault) -> None:
    with pytest.raises(KeyNotFound):
        provider.data_keys(TENANCY, KMS)
    vault.wrapped[KMS] = provider.new_wrapped_key(KMS)
    k = provider.data_keys(TENANCY, KMS)
    m = provider.data_keys(TENANCY, None)
    assert k.scope != m.scope and k.enc_key != m.enc_key and k.id_key != m.id_key
    # Another host with the same master derives the same keys from the stored material.
    assert KeyRing(MASTER, vault.wrapped.get).data_keys(TENANCY, KMS) == k
    with pytest.raises(KeyUnwrapError, match="wrong master key"):
        KeyRing(os.urandom(32), vault.wrapped.get).data_keys(TENANCY, KMS)
    vault.wrapped["ocid1.key.oc1..moved"] = vault.wrapped[KMS]  # bound to its key id
    with pytest.raises(KeyUnwrapError):
        provider.data_keys(TENANCY, "ocid1.key.oc1..moved")


# ---------------------------------------------------------------- codec


def test_roundtrip_compressible_is_compressed(keys: DataKeys) -> None:
    data = _text()
    bid = block_id(keys, data)
    assert len(bid) == 32
    blob = encode(keys, data, bid)
    assert blob[:4] == b"BVBK" and blob[4] == 1 and blob[5] == codec.FLAG_ZSTD
    assert len(blob) < len(data) // 5
    assert data not in blob
    assert decode(keys, blob, bid) == data


def test_roundtrip_random_is_stored_raw(keys: DataKeys) -> None:
    data = bytearray(os.urandom(65536))
    view = memoryview(data)[:50000]
    bid = block_id(keys, view)
    assert bid == block_id(keys, bytes(data[:50000]))
    blob = encode(keys, view, bid)
    assert blob[5] == 0
    assert len(blob) == 6 + 12 + 50000 + 16
    assert decode(keys, blob, bid) == bytes(data[:50000])


def test_block_id_is_keyed(provider: KeyRing, keys: DataKeys) -> None:
    other = provider.data_keys("ocid1.tenancy.oc1..b", None)
    data = b"same plaintext" * 100
    assert block_id(keys, data) != block_id(other, data)
    assert object_name(keys, block_id(keys, data)).startswith(f"chunks/{keys.scope}/")
    hexid = block_id(keys, data).hex()
    assert object_name(keys, block_id(keys, data)) == f"chunks/{keys.scope}/{hexid[:2]}/{hexid}"


def _corrupt(blob: bytes, pos: int) -> bytes:
    b = bytearray(blob)
    b[pos] ^= 0x01
    return bytes(b)


def test_decode_rejects_tampering(provider: KeyRing, keys: DataKeys) -> None:
    data = _text()
    bid = block_id(keys, data)
    blob = encode(keys, data, bid)
    cases = {
        "bad header": _corrupt(blob, 0),
        "unsupported format version": _corrupt(blob, 4),
        "unknown flags": bytes(blob[:5]) + b"\x80" + blob[6:],
        "failed authentication": _corrupt(blob, len(blob) // 2),
        "truncated": blob[:20],
    }
    for reason, bad in cases.items():
        with pytest.raises(CorruptBlock, match=reason):
            decode(keys, bad, bid)
    # compressed flag cleared: header is authenticated, so this fails auth too
    with pytest.raises(CorruptBlock, match="authentication"):
        decode(keys, bytes(blob[:5]) + b"\x00" + blob[6:], bid)
    # a blob moved to another name (another id) fails authentication
    with pytest.raises(CorruptBlock, match="authentication"):
        decode(keys, blob, block_id(keys, b"other"))
    # wrong key
    with pytest.raises(CorruptBlock, match="authentication"):
        decode(provider.data_keys("ocid1.tenancy.oc1..b", None), blob, bid)


def test_decode_detects_hash_mismatch_and_bad_compression(keys: DataKeys) -> None:
    wrong = block_id(keys, b"something else")
    blob = encode(keys, b"actual content" * 50, wrong)  # authenticates under `wrong`
    with pytest.raises(CorruptBlock, match="hash mismatch"):
        decode(keys, blob, wrong)
    header = b"BVBK" + bytes((1, codec.FLAG_ZSTD))
    nonce = os.urandom(12)
    garbage = header + nonce + AESGCM(keys.enc_key).encrypt(nonce, b"not a zstd frame", header + wrong)
    with pytest.raises(CorruptBlock, match="decompress"):
        decode(keys, garbage, wrong)


def test_codec_is_thread_safe(keys: DataKeys) -> None:
    inputs = [os.urandom(1000) + bytes([i]) * 60000 for i in range(32)]

    def rt(data: bytes) -> bool:
        bid = block_id(keys, data)
        return decode(keys, encode(keys, data, bid), bid) == data

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(rt, inputs))
