"""Garbage collection protocol on real files: condemn, protect running backups, rescue, sweep."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bootvault.blobstore import LocalBlobStore
from bootvault.engine import backup as backup_mod
from bootvault.engine import packs as packs_mod
from bootvault.engine.backup import BackupResult, run_backup
from bootvault.engine.gc import GcResult, collect_garbage
from bootvault.engine.index import ScopeIndex
from bootvault.engine.keys import DataKeys, KeyRing
from bootvault.engine.manifest import Manifest
from bootvault.engine.parts import RepoParts
from bootvault.engine.restore import RestoreError, restore_to_file
from bootvault.engine.source import FileSource

BS = 64 << 10


@pytest.fixture(autouse=True)
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backup_mod, "SEGMENT", 4 * BS)
    monkeypatch.setattr(packs_mod, "PACK_TARGET", 8 * BS)


@pytest.fixture
def keys(tmp_path: Path) -> DataKeys:
    return KeyRing(os.urandom(32), {}.get).data_keys("ocid1.tenancy.oc1..gc", None)


def _backup(path: Path, store: LocalBlobStore, keys: DataKeys, name: str, **kw: object) -> BackupResult:
    """A whole backup of a raw image file."""
    source = FileSource(path, BS)
    try:
        parts = RepoParts(store, keys, ScopeIndex(keys), block_size=BS)
        return run_backup(source, parts, name, parent=None, **kw)  # type: ignore[arg-type]
    finally:
        source.close()


def _restore(store: LocalBlobStore, keys: DataKeys, manifest: Manifest, path: Path) -> None:
    """Restore into a raw file, with a fresh index (as a new worker process would)."""
    restore_to_file(RepoParts(store, keys, ScopeIndex(keys)), manifest, path)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _packs(store: LocalBlobStore, keys: DataKeys) -> set[str]:
    return {n.rsplit("/", 1)[1] for n in store.list(f"packs/{keys.scope}/")}


class Condemned:
    """What the service keeps in its gc_condemned table."""

    def __init__(self) -> None:
        self.at: dict[str, datetime] = {}

    def apply(self, result: GcResult, when: datetime) -> None:
        for p in result.rescued | result.deleted:
            self.at.pop(p, None)
        for p in result.condemned:
            self.at[p] = when


def test_deleted_backup_space_is_freed_after_grace(tmp_path: Path, keys: DataKeys) -> None:
    store = LocalBlobStore(tmp_path / "store")
    vol, keep = tmp_path / "a.img", tmp_path / "b.img"
    vol.write_bytes(os.urandom(40 * BS))
    keep.write_bytes(os.urandom(20 * BS))
    _backup(vol, store, keys, "manifests/gone", full=True)
    kept = _backup(keep, store, keys, "manifests/kept", full=True)
    store.delete("manifests/gone")  # the backup was deleted
    book = Condemned()
    first = collect_garbage(store, keys, ["manifests/kept"], book.at, cutoff=datetime.now(UTC))
    book.apply(first, datetime.now(UTC))
    assert first.condemned and not first.deleted  # phase one only condemns
    grace_not_over = collect_garbage(
        store, keys, ["manifests/kept"], book.at, cutoff=datetime.now(UTC) - timedelta(hours=1)
    )
    assert not grace_not_over.deleted
    before = len(_packs(store, keys))
    second = collect_garbage(
        store, keys, ["manifests/kept"], book.at, cutoff=datetime.now(UTC) + timedelta(seconds=1)
    )
    book.apply(second, datetime.now(UTC))
    assert second.deleted == first.condemned and second.deleted_bytes >= 40 * BS
    assert len(_packs(store, keys)) == before - len(second.deleted)
    assert not list(store.list(f"index/{keys.scope}/{next(iter(second.deleted))}"))
    out = tmp_path / "out.img"
    _restore(store, keys, kept.manifest, out)
    assert _sha(out) == _sha(keep)


def test_sparse_packs_are_repacked(tmp_path: Path, keys: DataKeys) -> None:
    store = LocalBlobStore(tmp_path / "store")
    vol = tmp_path / "v.img"
    vol.write_bytes(os.urandom(16 * BS))
    _backup(vol, store, keys, "manifests/old", full=True)
    with open(vol, "r+b") as fh:  # rewrite 12 of 16 blocks: old packs become mostly dead
        fh.write(os.urandom(12 * BS))
    new = _backup(vol, store, keys, "manifests/new", full=True)
    store.delete("manifests/old")
    book = Condemned()
    result = collect_garbage(store, keys, ["manifests/new"], book.at, cutoff=datetime.now(UTC))
    book.apply(result, datetime.now(UTC))
    assert result.repacked_packs >= 1 and result.repacked_bytes > 0
    sweep = collect_garbage(
        store, keys, ["manifests/new"], book.at, cutoff=datetime.now(UTC) + timedelta(seconds=1)
    )
    assert sweep.deleted and not sweep.rescued
    out = tmp_path / "out.img"
    _restore(store, keys, new.manifest, out)
    assert _sha(out) == _sha(vol)


def _gc_during_backup(tmp_path: Path, keys: DataKeys, protect: bool) -> tuple[LocalBlobStore, Path, object]:
    """Backup B reuses blocks of a deleted backup A while GC runs twice in the middle of B."""
    store = LocalBlobStore(tmp_path / "store")
    vol = tmp_path / "v.img"
    vol.write_bytes(os.urandom(32 * BS))
    _backup(vol, store, keys, "manifests/A", full=True)
    store.delete("manifests/A")
    with open(vol, "r+b") as fh:
        fh.seek(30 * BS)
        fh.write(os.urandom(2 * BS))
    book = Condemned()
    started = datetime.now(UTC)
    fired = []

    def gc_mid_backup(done: int, total: int) -> None:
        if done > total // 2 and not fired:
            fired.append(done)
            first = collect_garbage(store, keys, [], book.at, cutoff=datetime.now(UTC))
            book.apply(first, datetime.now(UTC))
            # The service's cutoff: never later than the start of the oldest running job.
            cutoff = started - timedelta(minutes=5) if protect else datetime.now(UTC) + timedelta(seconds=1)
            book.apply(collect_garbage(store, keys, [], book.at, cutoff=cutoff), datetime.now(UTC))

    result = _backup(vol, store, keys, "manifests/B", full=False, progress=gc_mid_backup)
    assert fired
    after = collect_garbage(
        store, keys, ["manifests/B"], book.at, cutoff=datetime.now(UTC) + timedelta(seconds=1)
    )
    book.apply(after, datetime.now(UTC))
    if protect:
        assert after.rescued  # B needed packs that were condemned while it ran
    collect_garbage(store, keys, ["manifests/B"], book.at, cutoff=datetime.now(UTC) + timedelta(seconds=1))
    return store, vol, result


def test_gc_concurrent_with_backup_keeps_its_blocks(tmp_path: Path, keys: DataKeys) -> None:
    store, vol, result = _gc_during_backup(tmp_path, keys, protect=True)
    out = tmp_path / "out.img"
    _restore(store, keys, result.manifest, out)  # type: ignore[attr-defined]
    assert _sha(out) == _sha(vol)


def test_without_the_running_job_cutoff_data_would_be_lost(tmp_path: Path, keys: DataKeys) -> None:
    """Control: sweeping during the backup (ignoring it) destroys blocks it references."""
    store, _, result = _gc_during_backup(tmp_path, keys, protect=False)
    with pytest.raises(RestoreError, match="missing"):
        _restore(store, keys, result.manifest, tmp_path / "out.img")  # type: ignore[attr-defined]


def test_packs_of_a_locked_backup_are_never_repacked(tmp_path: Path, keys: DataKeys) -> None:
    """The same sparse packs as above, but `new` is under a retention lock: its packs stay put
    (their objects may carry an object-store retention date), and nothing is condemned."""
    store = LocalBlobStore(tmp_path / "store")
    vol = tmp_path / "v.img"
    vol.write_bytes(os.urandom(16 * BS))
    _backup(vol, store, keys, "manifests/old", full=True)
    with open(vol, "r+b") as fh:
        fh.write(os.urandom(12 * BS))
    _backup(vol, store, keys, "manifests/new", full=True)
    store.delete("manifests/old")
    before = _packs(store, keys)
    live = ["manifests/new"]
    result = collect_garbage(store, keys, live, {}, cutoff=datetime.now(UTC), pinned_manifests=live)
    assert result.repacked_packs == 0 and _packs(store, keys) == before
    assert result.condemned == _empty(store, keys, before, live)  # only packs with nothing of `new`
    control = collect_garbage(store, keys, live, {}, cutoff=datetime.now(UTC))  # not pinned: repacked
    assert control.repacked_packs >= 1


def _empty(store: LocalBlobStore, keys: DataKeys, packs: set[str], live: list[str]) -> set[str]:
    """Packs with no block of a live manifest (those may go even when a backup is locked)."""
    from bootvault.engine.manifest import load_manifest

    blocks = {bid for name in live for _, bid in load_manifest(store, keys, name).entries()}
    index = ScopeIndex(keys)
    index.refresh(store)
    return {p for p in packs if not any(e[0] in blocks for e in index.entries(p))}
