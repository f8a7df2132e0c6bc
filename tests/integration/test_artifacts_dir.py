"""Where a run writes: a full filesystem and a symlinked --artifacts. One `twlab:` line, exit 2,
nothing written where it should not be and nothing left (no 0-byte report.json, no empty dir)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from pathlib import Path

import pytest

from lab.errors import EnvError
from lab.runner import run_scenario

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")


def invoke(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SUDO_UID"}     # the user is root here
    return subprocess.run([INVOKE, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)


def one_line(done: subprocess.CompletedProcess, *mentions: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("twlab: "), done.stderr[-1500:]
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    return lines[0]


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "2m"):
    """A tmpfs of *size* mounted at *where* for the block (unmounted after, whatever happens)."""
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "twlab-test", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(fs: Path) -> None:
    subprocess.run(["dd", "if=/dev/zero", f"of={fs}/fill", "bs=4k"], capture_output=True)


def test_a_full_filesystem_is_refused_up_front(tmp_path, lab_leftovers):
    with small_filesystem(tmp_path / "fs") as fs:
        fill(fs)
        done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(fs / "a"))
        one_line(done, f"artifacts directory {fs / 'a'}: its filesystem is full", "--artifacts")
        assert "lab " not in done.stdout                   # refused before bring-up
        assert sorted(p.name for p in fs.iterdir()) == ["fill"]
    assert lab_leftovers() == []


def test_a_filesystem_that_fills_during_the_run(tmp_path, lab_leftovers):
    """The disk fills once the lab is up: report.json cannot be written. An environment error, and
    the run's stubs (0-byte pcaps, a 0-byte report.json) go with it."""
    with small_filesystem(tmp_path / "fs") as fs:
        def progress(line: str) -> None:
            if line.startswith("running lost-ack"):
                fill(fs)

        with pytest.raises(EnvError) as info:
            run_scenario("lost-ack", backend="netns", artifacts=fs / "a", progress=progress)
        assert f"cannot write {fs / 'a' / 'report.json'} (No space left on device)" in str(info.value)
        assert sorted(p.name for p in fs.iterdir()) == ["fill"], list(fs.rglob("*"))
    assert lab_leftovers() == []


def test_artifacts_through_a_symlink_to_someone_elses_directory(tmp_path, lab_leftovers):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 4242, 4242)
    link = tmp_path / "link"
    link.symlink_to(theirs)
    for path in (link, link / "sub"):
        done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(path))
        one_line(done, f"{link} is a symlink to {theirs}", "owned by uid 4242, not by you (uid 0)")
        assert "lab " not in done.stdout
        assert list(theirs.iterdir()) == [], "the run wrote through the link"
    assert lab_leftovers() == []


def test_artifacts_through_a_symlink_to_your_own_directory(tmp_path, lab_leftovers):
    mine = tmp_path / "mine"
    mine.mkdir()
    (tmp_path / "link").symlink_to(mine)
    done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(tmp_path / "link" / "run"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert (mine / "run" / "report.json").stat().st_size > 0
    assert lab_leftovers() == []
