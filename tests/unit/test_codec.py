from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bootvault.engine import codec
from bootvault.engine.codec import CorruptBlock, block_id, decode, encode, object_name
from bootvault.engine.keys import DataKeys, KeyExists, KeyNotFound, LocalKeyProvider

TENANCY = "ocid1.tenancy.oc1..aaaatenancy"
KMS = "ocid1.key.oc1.phx.aaaa.bbbb"


@pytest.fixture
def provider(tmp_path: Path) -> LocalKeyProvider:
    p = LocalKeyProvider(tmp_path / "keys")
    p.ensure_master()
    return p


@pytest.fixture
def keys(provider: LocalKeyProvider) -> DataKeys:
    return provider.data_keys(TENANCY, None)


def _text() -> bytes:
    return b"".join(b"line %d of a very compressible boot volume\n" % i for i in range(3000))


# ---------------------------------------------------------------- keys


def test_master_created_once_with_mode_0600(tmp_path: Path) -> None:
    p = LocalKeyProvider(tmp_path / "k")
    with pytest.raises(KeyNotFound):
        p.data_keys(TENANCY, None)
    p.ensure_master()
    master = tmp_path / "k" / "master.key"
    first = master.read_bytes()
    assert len(first) == 32
    assert stat.S_IMODE(master.stat().st_mode) == 0o600
    p.ensure_master()
    assert master.read_bytes() == first
    assert [f.name for f in (tmp_path / "k").iterdir()] == ["master.key"]


def test_data_keys_are_deterministic_and_scoped(provider: LocalKeyProvider, tmp_path: Path) -> None:
    a = provider.data_keys(TENANCY, None)
    assert a == LocalKeyProvider(tmp_path / "keys").data_keys(TENANCY, None)
    assert len(a.id_key) == 32 and len(a.enc_key) == 32 and a.id_key != a.enc_key
    assert len(a.scope) == 16 and int(a.scope, 16) >= 0
    assert "id_key" not in repr(a) and a.id_key.hex() not in repr(a)
    b = provider.data_keys("ocid1.tenancy.oc1..other", None)
    assert len({a.scope, b.scope}) == 2 and a.id_key != b.id_key and a.enc_key != b.enc_key


def test_customer_keys(provider: LocalKeyProvider, tmp_path: Path) -> None:
    assert not provider.has_key(KMS)
    with pytest.raises(KeyNotFound):
        provider.data_keys(TENANCY, KMS)
    provider.create_key(KMS)
    assert provider.has_key(KMS)
    with pytest.raises(KeyExists):
        provider.create_key(KMS)
    files = sorted(f.name for f in (tmp_path / "keys").iterdir())
    assert len(files) == 2 and "master.key" in files
    assert all("." not in f[:-4] for f in files)  # OCID dots are not in the file name
    k = provider.data_keys(TENANCY, KMS)
    m = provider.data_keys(TENANCY, None)
    assert k.scope != m.scope and k.enc_key != m.enc_key and k.id_key != m.id_key


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


def test_block_id_is_keyed(provider: LocalKeyProvider, keys: DataKeys) -> None:
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


def test_decode_rejects_tampering(provider: LocalKeyProvider, keys: DataKeys) -> None:
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
