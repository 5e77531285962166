"""Filesystem-backed BlobStore.

Durability: every put writes a `.tmp-<random>` file in the object's directory, fsyncs it,
renames it over the final name and fsyncs the directory, so an object that put() returned
for survives a crash and a reader never sees a partial object. Directories created on the
way are fsynced into their parents as well.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
import secrets
import stat
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from bootvault.blobstore.base import (
    TMP_PREFIX,
    BlobStoreError,
    ObjectNotFound,
    StoreProperties,
    check_name,
    check_prefix,
    check_range,
)
from bootvault.fsutil import fsync_dir

# Two writers hide each other's fsync latency (durable writes went from ~1.2 to ~1.5 GB/s on the
# reference machine, machine-limits.md section 5); a second reader of a local disk gained nothing.
LOCAL_MAX_CONNECTIONS = 2


ALIGN = 4096  # O_DIRECT wants buffers, offsets and lengths in whole pages


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _page_aligned(view: memoryview) -> bool:
    try:
        return ctypes.addressof(ctypes.c_char.from_buffer(view)) % ALIGN == 0
    except TypeError:  # read-only (bytes): not ours to hand to the disk
        return False


def _write_direct(path: str, data: bytes | bytearray | memoryview) -> bool:
    """Write with O_DIRECT straight from the caller's buffer when it is page-aligned (the engine's
    pack buffers are): a buffered write first copies every byte into the page cache, and that
    copy was a fifth of a full backup's CPU. The last partial page goes through a page of its
    own. False, having written nothing that stays, where that cannot be done (tmpfs, bytes)."""
    view = memoryview(data).cast("B")
    body = len(view) // ALIGN * ALIGN
    if body == 0 or not _page_aligned(view):
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_DIRECT | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        pos = 0
        while pos < body:
            pos += os.pwrite(fd, view[pos:body], pos)
        if body < len(view):
            with mmap.mmap(-1, ALIGN) as tail:
                tail[: len(view) - body] = view[body:]
                os.pwrite(fd, tail, body)
        os.ftruncate(fd, len(view))
        return True
    except OSError:  # an odd device or filesystem: the caller writes it the ordinary way
        os.ftruncate(fd, 0)
        return False
    finally:
        os.close(fd)


class LocalBlobStore:
    """Objects are files below root; names are '/'-separated relative keys."""

    def __init__(self, root: str | os.PathLike[str], *, max_connections: int = LOCAL_MAX_CONNECTIONS) -> None:
        self.root = os.path.abspath(os.fspath(root))
        os.makedirs(self.root, exist_ok=True)
        self._known_dirs: set[str] = {self.root}
        self.properties = StoreProperties(max_connections=max_connections)

    def __repr__(self) -> str:
        return f"LocalBlobStore({self.root!r})"

    def _path(self, name: str) -> str:
        return os.path.join(self.root, *check_name(name))

    def _ensure_dir(self, directory: str) -> None:
        """Create directory (and parents) below root, fsyncing each new entry into its parent."""
        if directory in self._known_dirs:
            return
        parent = os.path.dirname(directory)
        self._ensure_dir(parent)
        try:
            os.mkdir(directory)
        except FileExistsError:
            pass
        else:
            fsync_dir(parent)
        self._known_dirs.add(directory)

    def _create_tmp(self, directory: str) -> tuple[str, int]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        self._ensure_dir(directory)
        tmp = os.path.join(directory, TMP_PREFIX + secrets.token_hex(8))
        try:
            return tmp, os.open(tmp, flags, 0o644)
        except FileNotFoundError:  # directory removed behind our back: forget the cache, retry once
            self._known_dirs = {self.root}
            self._ensure_dir(directory)
            return tmp, os.open(tmp, flags, 0o644)

    def put(self, name: str, data: bytes | bytearray | memoryview) -> None:
        path = self._path(name)
        directory = os.path.dirname(path)
        try:
            tmp, fd = self._create_tmp(directory)
            try:
                try:
                    if not _write_direct(tmp, data):
                        _write_all(fd, data)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            fsync_dir(directory)
        except OSError as exc:
            raise BlobStoreError(f"cannot store {name}: {exc}") from exc

    def get(self, name: str) -> bytes:
        path = self._path(name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise BlobStoreError(f"cannot read {name}: {exc}") from exc

    def get_range(self, name: str, offset: int, length: int) -> bytes:
        check_range(offset, length)
        path = self._path(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise BlobStoreError(f"cannot read {name}: {exc}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ObjectNotFound(name)
            end = min(offset + length, st.st_size)
            pieces: list[bytes] = []
            while offset < end:  # pread may return less than asked (at most ~2 GiB per call)
                piece = os.pread(fd, end - offset, offset)
                if not piece:
                    break
                pieces.append(piece)
                offset += len(piece)
            return pieces[0] if len(pieces) == 1 else b"".join(pieces)
        except OSError as exc:
            raise BlobStoreError(f"cannot read {name}: {exc}") from exc
        finally:
            os.close(fd)

    def size(self, name: str) -> int:
        try:
            st = os.stat(self._path(name))
        except (FileNotFoundError, NotADirectoryError):
            raise ObjectNotFound(name) from None
        except OSError as exc:
            raise BlobStoreError(f"cannot stat {name}: {exc}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise ObjectNotFound(name)
        return st.st_size

    def exists(self, name: str) -> bool:
        return os.path.isfile(self._path(name))

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._path(name))
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            pass
        except OSError as exc:
            raise BlobStoreError(f"cannot delete {name}: {exc}") from exc

    def retain_until(self, name: str, until: datetime) -> bool:
        """A directory has no retention dates that would bind its owner: the service's own checks
        are the only protection here."""
        return False

    def list(self, prefix: str) -> Iterator[str]:
        """Yield names starting with prefix (a plain string prefix, like S3)."""
        check_prefix(prefix)
        head = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = Path(self.root, head) if head else Path(self.root)
        yield from (n for n in self._walk(start) if n.startswith(prefix))

    def _walk(self, directory: Path) -> Iterator[str]:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name.startswith(TMP_PREFIX):
                continue
            if entry.is_dir(follow_symlinks=False):
                yield from self._walk(Path(entry.path))
            elif entry.is_file(follow_symlinks=False):
                yield os.path.relpath(entry.path, self.root).replace(os.sep, "/")
