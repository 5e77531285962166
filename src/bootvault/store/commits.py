"""A count of the write transactions committed to one SQLite database, shared by every process of
the host that opens it (`serve --processes N`, `bootvault worker`, the admin CLI). On disk:

    <database>.commits      0600, beside the database file; 8 bytes, the count (little-endian)

A writer, holding SQLite's write lock, makes the count odd before it commits and even again after
(`Database.write`). A reader that sees the same even count before and after a statement therefore
knows no commit happened in between; one that sees it unchanged later knows what it read is still
the database's content. That is what lets results be remembered across requests (rawread) without
ever answering a read that follows a write, in any process, with what the write replaced.

The count only grows. A writer killed between its two steps leaves it odd: nothing is remembered
until the next writer, which moves it on. Begin and end take a lock on the file so that one
writer's end never evens out a count a later writer has already made odd."""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager

_COUNT = struct.Struct("<Q")
INFO_KEY = "bootvault_commits"  # in an SQLite connection's info: its database's CommitCount


def path_of(database: str) -> str:
    return os.path.realpath(database) + ".commits"  # one count for every name of the file


class CommitCount:
    def __init__(self, database: str) -> None:
        fd = os.open(path_of(database), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if os.fstat(fd).st_size < _COUNT.size:
                os.ftruncate(fd, _COUNT.size)  # zeros: an even count
            self._map = mmap.mmap(fd, _COUNT.size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def now(self) -> int:
        """The count; odd while a commit is under way (then nothing read may be remembered)."""
        count: int = _COUNT.unpack_from(self._map)[0]
        return count

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fcntl.lockf(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def begin(self) -> int:
        """Called by a writer that holds SQLite's write lock, before it commits: the count becomes
        odd and greater. Returns that odd count, for end()."""
        with self._locked():
            count = self.now()
            odd = count + 1 if count % 2 == 0 else count + 2  # odd already: a writer died mid-way
            _COUNT.pack_into(self._map, 0, odd)
        return odd

    def end(self, odd: int) -> None:
        """After the commit (or rollback): even again, unless a later writer has already begun."""
        with self._locked():
            if self.now() == odd:
                _COUNT.pack_into(self._map, 0, odd + 1)

    def close(self) -> None:
        self._map.close()
        os.close(self._fd)
