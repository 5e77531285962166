"""The commit count shared through `<database>.commits` (store/commits.py): odd only while a
commit is under way, only growing, never evened out by a writer that finished before a later one
began, and left odd by a writer that died mid-way until the next writer moves it on."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from bootvault.store.commits import CommitCount, path_of


def test_odd_while_a_commit_is_under_way_and_growing(tmp_path: Path) -> None:
    count = CommitCount(str(tmp_path / "db"))
    first = count.now()
    assert first % 2 == 0
    odd = count.begin()
    assert odd % 2 == 1 and odd > first and count.now() == odd
    count.end(odd)
    assert count.now() == odd + 1
    assert stat.S_IMODE(os.stat(path_of(str(tmp_path / "db"))).st_mode) == 0o600


def test_an_earlier_writers_end_never_evens_a_later_writers_count(tmp_path: Path) -> None:
    one, two = CommitCount(str(tmp_path / "db")), CommitCount(str(tmp_path / "db"))  # two processes
    first = one.begin()
    second = two.begin()  # the first committed and released SQLite's lock; its end comes late
    assert second > first and second % 2 == 1
    one.end(first)
    assert two.now() == second  # still odd: the second writer's commit is under way
    two.end(second)
    assert one.now() == second + 1


def test_a_writer_killed_mid_way_leaves_it_odd_until_the_next_writer(tmp_path: Path) -> None:
    database = str(tmp_path / "db")
    code = f"import os, bootvault.store.commits as c; c.CommitCount({database!r}).begin(); os._exit(9)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 9
    count = CommitCount(database)
    left = count.now()
    assert left % 2 == 1  # nothing may be remembered
    odd = count.begin()
    assert odd == left + 2
    count.end(odd)
    assert count.now() % 2 == 0


def test_one_count_for_every_name_of_the_database_and_no_link_followed(tmp_path: Path) -> None:
    (tmp_path / "db").touch()
    (tmp_path / "alias").symlink_to(tmp_path / "db")
    real, alias = CommitCount(str(tmp_path / "db")), CommitCount(str(tmp_path / "alias"))
    real.end(real.begin())
    assert alias.now() == real.now() == 2
    os.unlink(path_of(str(tmp_path / "db")))
    (tmp_path / "elsewhere").write_bytes(b"keep")
    os.symlink(tmp_path / "elsewhere", path_of(str(tmp_path / "db")))
    with pytest.raises(OSError):
        CommitCount(str(tmp_path / "db"))
    assert (tmp_path / "elsewhere").read_bytes() == b"keep"
