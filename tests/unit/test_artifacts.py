"""lab.artifacts: where a run may write (no symlink to somebody else's directory), a full disk
refused up front, and nothing left when a run is refused."""

from __future__ import annotations

import os
from collections import namedtuple

import pytest

from lab import artifacts
from lab.artifacts import check_dir, drop_empty, make_dir
from lab.errors import EnvError, UsageError


def test_plain_paths_pass(tmp_path):
    assert check_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_dir("artifacts/x") == artifacts.Path("artifacts/x")


def test_a_symlink_to_your_own_directory_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    check_dir(tmp_path / "link" / "run-1")


def test_a_symlink_to_someone_elses_directory_is_refused(tmp_path, monkeypatch):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "theirs")
    owner = (tmp_path / "theirs").stat().st_uid
    monkeypatch.setattr(artifacts, "invoking_uid", lambda: owner + 4242)   # the directory is not yours
    for path in (tmp_path / "link", tmp_path / "link" / "sub" / "run"):
        with pytest.raises(UsageError) as info:
            check_dir(path)
        msg = str(info.value)
        assert msg.startswith(f"--artifacts {path}: {tmp_path / 'link'} is a symlink to {tmp_path / 'theirs'}")
        assert f"owned by uid {owner}, not by you (uid {owner + 4242})" in msg


@pytest.mark.parametrize("target", ["missing", "a-file"])
def test_a_symlink_to_no_directory_is_refused(tmp_path, target):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / target)
    with pytest.raises(UsageError, match="which is not a directory"):
        check_dir(tmp_path / "link")


def test_the_invoking_user_is_sudos(monkeypatch):
    monkeypatch.setenv("SUDO_UID", "1234")
    assert artifacts.invoking_uid() == (1234 if os.geteuid() == 0 else os.geteuid())
    monkeypatch.delenv("SUDO_UID")
    assert artifacts.invoking_uid() == os.geteuid()


def test_make_dir_returns_what_it_made_and_drop_empty_removes_it(tmp_path):
    made = make_dir(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a"]
    drop_empty(made)
    assert list(tmp_path.iterdir()) == []
    made = make_dir(tmp_path / "x" / "y")
    (tmp_path / "x" / "keep").write_text("")           # not empty: kept, and what is above it
    drop_empty(made)
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["keep", "x"]


def test_a_full_filesystem_is_refused_and_nothing_is_left(tmp_path, monkeypatch):
    Stat = namedtuple("Stat", "f_bavail f_frsize")
    monkeypatch.setattr(artifacts.os, "statvfs", lambda p: Stat(3, 4096))        # 12 KiB free
    with pytest.raises(EnvError, match=r"its filesystem is full \(12 KiB free\)"):
        make_dir(tmp_path / "a" / "b")
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_place_is_refused_and_nothing_is_left(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(UsageError, match="is not writable"):
        make_dir(tmp_path / "a-file" / "sub")
    assert [p.name for p in tmp_path.iterdir()] == ["a-file"]


@pytest.mark.parametrize("name, says", [
    ("out/deeper/j.xml", None),                          # directories made later, when it is written
    ("a-dir", "is a directory"),
    ("a-file/j.xml", "not a file this user can write"),
    ("x" * 300 + "/j.xml", "longer than"),
])
def test_an_output_file_is_checked_without_creating_anything(tmp_path, name, says):
    from lab.artifacts import check_output

    (tmp_path / "a-dir").mkdir()
    (tmp_path / "a-file").write_text("")
    before = sorted(tmp_path.rglob("*"))
    if says is None:
        check_output(tmp_path / name, "--junit")
    else:
        with pytest.raises(UsageError, match=says):
            check_output(tmp_path / name, "--junit")
    assert sorted(tmp_path.rglob("*")) == before
