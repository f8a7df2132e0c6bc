"""lab.artifacts: what a run writes is the running user's alone (0600 files, 0700 directories),
whatever the umask; through sudo, it is handed to the user who typed sudo."""

from __future__ import annotations

import os
import stat

import pytest

from lab import artifacts
from lab.artifacts import listing, make_dir, open_file, seal, write_text


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)          # the usual one: 0644 files, 0755 directories
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def no_sudo(monkeypatch):
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)


def test_directories_made_are_0700_and_existing_ones_keep_their_mode(tmp_path, loose_umask, no_sudo):
    tmp_path.chmod(0o755)
    got = make_dir(tmp_path / "a" / "b" / "c")
    assert got == tmp_path / "a" / "b" / "c" and got.is_dir()
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    assert mode(tmp_path) == 0o755                 # not ours: left as it was
    make_dir(tmp_path / "a" / "b")                 # already there: fine
    assert mode(tmp_path / "a" / "b") == 0o700


def test_make_dir_over_a_file_is_an_oserror_with_a_reason(tmp_path, no_sudo):
    (tmp_path / "f").write_text("")
    with pytest.raises(OSError) as info:
        make_dir(tmp_path / "f")
    assert info.value.strerror


def test_files_are_0600_even_over_a_0644_one(tmp_path, loose_umask, no_sudo):
    write_text(tmp_path / "report.json", "{}\n")
    assert mode(tmp_path / "report.json") == 0o600
    old = tmp_path / "client.pcap"
    old.write_bytes(b"old")
    old.chmod(0o644)
    with open_file(old) as f:
        f.write(b"new")
    assert mode(old) == 0o600 and old.read_bytes() == b"new"


def test_seal_touches_only_what_was_added(tmp_path, loose_umask, no_sudo):
    (tmp_path / "mine.txt").write_text("")
    (tmp_path / "mine.txt").chmod(0o644)
    before = listing(tmp_path)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "report.json").write_text("")
    seal(tmp_path, before)
    assert mode(tmp_path / "run") == 0o700 and mode(tmp_path / "run" / "report.json") == 0o600
    assert mode(tmp_path / "mine.txt") == 0o644


def test_the_invoking_user_only_through_sudo_as_root(monkeypatch):
    monkeypatch.setenv("SUDO_UID", "1234")
    monkeypatch.setenv("SUDO_GID", "5678")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert artifacts.invoking_user() == (1234, 5678)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)     # not root: nothing to hand over, no chown
    assert artifacts.invoking_user() is None
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", "x")
    assert artifacts.invoking_user() is None
    monkeypatch.delenv("SUDO_UID")
    assert artifacts.invoking_user() is None


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_through_sudo_everything_made_is_the_users(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_UID", "65534")
    monkeypatch.setenv("SUDO_GID", "65534")
    make_dir(tmp_path / "a" / "b")
    write_text(tmp_path / "a" / "b" / "report.json", "{}")
    for p in ("a", "a/b", "a/b/report.json"):
        st = os.lstat(tmp_path / p)
        assert (st.st_uid, st.st_gid) == (65534, 65534), p
    assert os.lstat(tmp_path).st_uid == 0          # the directory that was there stays whose it was
