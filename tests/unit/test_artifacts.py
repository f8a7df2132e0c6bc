"""lab.artifacts: where a run may write (no symlink to somebody else's directory), a full disk
refused up front, and nothing left when a run is refused; and what a run writes is the running
user's alone (0600 files, 0700 directories) whatever the umask, handed through sudo to the user
who typed sudo."""

from __future__ import annotations

import os
import stat
from collections import namedtuple

import pytest

from lab import artifacts
from lab.artifacts import check_dir, drop_empty, ensure_dir, listing, make_dir, open_file, seal, write_text
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


# -- private by default ----------------------------------------------------------------------

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


@pytest.mark.parametrize("mkdir", [make_dir, ensure_dir])
def test_directories_made_are_0700_and_existing_ones_keep_their_mode(tmp_path, loose_umask, no_sudo, mkdir):
    tmp_path.chmod(0o755)
    mkdir(tmp_path / "a" / "b" / "c")
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
    assert mode(tmp_path) == 0o755                 # not ours: left as it was
    assert ensure_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"      # already there: fine
    assert mode(tmp_path / "a" / "b") == 0o700


def test_ensure_dir_over_a_file_is_an_oserror_with_a_reason_and_leaves_nothing(tmp_path, no_sudo):
    (tmp_path / "f").write_text("")
    with pytest.raises(OSError) as info:
        ensure_dir(tmp_path / "f")
    assert info.value.strerror
    with pytest.raises(OSError):
        ensure_dir(tmp_path / "f" / "a" / "b")
    assert [p.name for p in tmp_path.iterdir()] == ["f"]


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


def test_the_user_to_hand_over_to_only_through_sudo_as_root(monkeypatch):
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


def test_twlab_owner_names_the_user_and_wins_over_sudo(monkeypatch):
    """The controller image hands the artifacts to the owner of the mounted directory this way."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("SUDO_UID", "1234")
    monkeypatch.setenv("SUDO_GID", "5678")
    monkeypatch.setenv("TWLAB_OWNER", "501:20")
    assert artifacts.invoking_user() == (501, 20)
    assert artifacts.invoking_uid() == 501
    monkeypatch.setenv("TWLAB_OWNER", "501")                 # not UID:GID: sudo's user, as before
    assert artifacts.invoking_user() == (1234, 5678)
    monkeypatch.delenv("SUDO_UID")
    monkeypatch.delenv("SUDO_GID")
    monkeypatch.setenv("TWLAB_OWNER", "501:20")
    assert artifacts.invoking_user() == (501, 20)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)         # not root: nothing to hand over
    assert artifacts.invoking_user() is None and artifacts.invoking_uid() == 1000


def test_what_a_run_makes_goes_to_twlab_owner(monkeypatch, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chown needs root")
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    monkeypatch.setenv("TWLAB_OWNER", "4321:8765")
    make_dir(tmp_path / "run")
    artifacts.write_text(tmp_path / "run" / "report.json", "{}")
    for path in (tmp_path / "run", tmp_path / "run" / "report.json"):
        st = path.stat()
        assert (st.st_uid, st.st_gid) == (4321, 8765), path
