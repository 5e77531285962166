"""Atomic and private file helpers: the one place that knows how a file appears whole or not at all.

A new file is written as `.tmp-<random>-<name>` in its destination directory, fsynced, renamed
into place and the directory fsynced, so a crash leaves either the old state or the whole new
file, never a half-written one under the final name.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new file in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_path(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tmp_name(dst: str | os.PathLike[str]) -> Path:
    """A unique temporary name beside dst (same directory, so the rename is atomic)."""
    dst = Path(os.path.abspath(dst))
    return dst.with_name(f"{TMP_PREFIX}{secrets.token_hex(8)}-{dst.name[:100]}")


def tmp_pattern(dst: str | os.PathLike[str]) -> str:
    """The glob of every tmp_name(dst), for removing those a killed writer left (the name is cut
    as tmp_name cuts it: a volume's OCID and suffix can pass 100 characters)."""
    return f"{TMP_PREFIX}*-{Path(dst).name[:100]}"


@contextlib.contextmanager
def atomic_path(dst: str | os.PathLike[str], *, replace: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside dst for the caller (or a tool) to fill; on success fsync it
    and rename it onto dst, on failure remove it. With replace=False an existing dst is kept and
    the rename fails with FileExistsError (checked and linked atomically, never clobbered)."""
    dst = Path(os.path.abspath(dst))
    tmp = tmp_name(dst)
    try:
        yield tmp
        fsync_path(tmp)
        if replace:
            os.rename(tmp, dst)
        else:
            os.link(tmp, dst)  # fails if dst exists, whatever it is (file, link, device)
            os.unlink(tmp)
        fsync_dir(dst.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_private(path: str | os.PathLike[str], data: bytes, *, exclusive: bool = True) -> None:
    """Create path readable by the owner only. Never follows a link and, when exclusive, never
    replaces an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    flags |= os.O_EXCL if exclusive else os.O_TRUNC
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def make_private_dir(path: str | os.PathLike[str]) -> Path:
    """mkdir -p with mode 0700 for the last component, whatever the umask."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def is_block_device(path: str | os.PathLike[str]) -> bool:
    try:
        return stat.S_ISBLK(os.stat(path).st_mode)
    except FileNotFoundError:
        return False
