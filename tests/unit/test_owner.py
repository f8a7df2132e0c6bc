"""lab.owner: a lab's objects name their owner by pid and start time, so a reused pid is not
mistaken for the owner; lab.cleanup keeps a lab whose owner runs whatever registry it reads."""

from __future__ import annotations

import json
import os
import subprocess

from lab import cleanup, owner
from lab.owner import Mark


def test_this_process_is_alive_and_a_reused_pid_is_not():
    me = owner.token()
    assert owner.alive(me)
    pid, start = me.split(".")
    assert not owner.alive(f"{pid}.{int(start) + 1}"), "same pid, another start time: another process"
    assert not owner.alive("garbage") and not owner.alive(None)


def test_an_ended_process_is_not_alive():
    proc = subprocess.Popen(["sleep", "30"])
    tok = owner.token(proc.pid)
    assert owner.alive(tok)
    proc.kill()
    proc.wait()
    assert not owner.alive(tok)


def test_marks_read_back():
    assert owner.parse_alias(owner.alias("12.34", up=True)) == Mark("12.34", True)
    assert owner.parse_alias(owner.alias("12.34")) == Mark("12.34", False)
    assert owner.parse_alias(None) == Mark() and owner.parse_alias("some alias") == Mark()
    assert owner.from_labels(owner.labels("5.6", up=True)) == Mark("5.6", True)
    assert owner.from_labels({"org.twlab.lab": "abc"}) == Mark()


def _setup(monkeypatch, tmp_path, marks: dict, records: list[dict]):
    monkeypatch.setattr(cleanup, "RUN_DIR", tmp_path)
    monkeypatch.setattr(cleanup, "marks", lambda lab_id=None: marks)
    for rec in records:
        (tmp_path / f"{rec['lab_id']}.json").write_text(json.dumps(rec))


def test_a_live_owner_keeps_its_lab_without_any_registry(monkeypatch, tmp_path):
    dead = subprocess.Popen(["true"])
    dead.wait()
    _setup(monkeypatch, tmp_path, {
        "aaaaaa": [Mark(owner.token())],                     # a running lab (this process)
        "bbbbbb": [Mark(f"{dead.pid}.1")],                    # its owner is gone
        "cccccc": [Mark()],                                   # no marks: made by hand / older twlab
        "dddddd": [Mark(f"{dead.pid}.1", up=True)],           # an `invoke up` lab
    }, [])
    assert cleanup.live_labs() == {"aaaaaa", "dddddd"}
    assert cleanup.live_labs(include_persistent=False) == {"aaaaaa"}
    assert cleanup.dead_labs() == {"bbbbbb"}, "only a lab whose every mark names a dead owner is dead"


def test_the_registry_tells_a_killed_ups_half_made_lab(monkeypatch, tmp_path):
    gone = f"{os.getpid()}.1"                                 # this pid, another start: a dead owner
    _setup(monkeypatch, tmp_path, {"eeeeee": [Mark(gone, up=True)], "ffffff": [Mark(gone, up=True)]}, [
        {"lab_id": "eeeeee", "pid": os.getpid(), "owner": gone, "persistent": True, "ready": False},
        {"lab_id": "ffffff", "pid": os.getpid(), "owner": gone, "persistent": True, "ready": True},
    ])
    assert cleanup.live_labs() == {"ffffff"}
    assert cleanup.dead_labs() == {"eeeeee"}


def test_after_interrupt_says_what_was_checked(monkeypatch):
    from lab.interrupts import Interrupted

    left = {"aaaaaa": cleanup.Leftovers(), "bbbbbb": cleanup.Leftovers(containers=["twlab-bbbbbb-client"])}
    monkeypatch.setattr(cleanup, "find", lambda lab_id=None: left[lab_id])
    monkeypatch.setattr(cleanup, "_MADE", set())
    assert cleanup.after_interrupt(Interrupted(15)) == "interrupted by SIGTERM before any lab was made"
    cleanup._MADE.add("aaaaaa")
    assert cleanup.after_interrupt(KeyboardInterrupt()) == \
        "interrupted by Ctrl-C (SIGINT); the lab was removed (lab aaaaaa)"
    cleanup._MADE.add("bbbbbb")
    msg = cleanup.after_interrupt(Interrupted(1))
    assert msg.startswith("interrupted by SIGHUP; left behind: container twlab-bbbbbb-client;"), msg
    assert "invoke clean" in msg and "removed" not in msg.split(";")[1]
