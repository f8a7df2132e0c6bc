"""`invoke up` stopped while it brings its lab up, and two of them at once.

An interrupted `up` (SIGTERM, Ctrl-C, SIGHUP) removes what it made, says so and exits 130; a killed
one (SIGKILL) leaves a claim that `invoke clean` or `invoke down` clears with its half-made lab.
Two `up` at once: one lab, the other refuses in one line - never a second lab nothing knows of.
These use the registry directory every user has (RUN_DIR): there is one `up` lab per directory.
"""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from lab.cleanup import clean, find

from .procs import RUN_DIR, Run, assert_clean_leaves_nothing_of, assert_interrupted, invoke, up_claim

pytestmark = pytest.mark.integration

NAMED = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}
# how long after "backend: ..." the signal comes: docker's bring-up takes seconds (the report's
# 0.5 s lands in it), the netns one some 30 ms (at once lands in it)
DELAY_S = {"docker": 0.5, "netns": 0.0}


@pytest.fixture
def ups():
    """The `invoke up` runs a test starts; whatever they leave is removed afterwards (so a test
    that fails - on code without the fix - leaves no lab up)."""
    if (RUN_DIR / "up.state").exists():
        pytest.skip(f"a lab is already up here ({RUN_DIR}/up.state): someone else's `invoke up`")
    runs: list[Run] = []
    yield runs
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
    pids = {run.proc.pid for run in runs}
    for path in RUN_DIR.glob("*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("pid") in pids:
            clean(rec["lab_id"])
    try:
        state = json.loads((RUN_DIR / "up.state").read_text())
    except (OSError, ValueError):
        state = None
    if state and (state.get("pid") in pids or any(f"lab {state['lab_id']} is up" in r.out for r in runs)):
        clean(state["lab_id"])
        (RUN_DIR / "up.state").unlink(missing_ok=True)


def _made(lab_id: str, backend: str) -> bool:
    """Wait (60 s at most) until the lab's first object exists."""
    from lab.backends.netns import lab_namespaces

    look = (lambda: lab_namespaces(lab_id)) if backend == "netns" else (lambda: find(lab_id))
    deadline = time.monotonic() + 60
    while not look():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001 if backend == "netns" else 0.05)
    return True


def _up(ups: list, backend: str) -> Run:
    run = Run("up", "--backend", backend)
    ups.append(run)
    return run


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=["SIGTERM", "SIGINT", "SIGHUP"])
def test_interrupted_up_removes_what_it_made(backend, sig, ups):
    run = _up(ups, backend)
    run.wait_for("backend:")
    lab_id = up_claim()["lab_id"]          # claimed before anything is made
    time.sleep(DELAY_S[backend])
    run.group(sig)
    code, out = run.finish()
    assert_interrupted(code, out, NAMED[sig])
    assert "is up on" not in out, out
    assert not find(lab_id), find(lab_id).lines()
    assert not (RUN_DIR / "up.state").exists(), "the interrupted up left its claim"
    down = invoke("down")
    assert down.returncode == 2 and "no lab is up" in down.stderr, down.stdout + down.stderr
    assert_clean_leaves_nothing_of(lab_id)


@pytest.mark.parametrize("then", ["clean", "down"])
def test_killed_up_is_cleared_by(backend, then, ups):
    """SIGKILL cannot be handled: what the `up` made stays, marked as its; `invoke clean` (or
    `invoke down`) recognises the dead claim and removes it all, and the next `up` works."""
    for _attempt in range(5):
        run = _up(ups, backend)
        run.wait_for("backend:")
        made = _made(up_claim()["lab_id"], backend)
        run.group(signal.SIGSTOP)          # frozen where it is: still bringing the lab up?
        claim = up_claim()
        assert made, f"the `up` made nothing within 60 s: {run.out}"
        run.group(signal.SIGKILL)
        run.finish(timeout_s=30)
        if not claim.get("ready"):
            break
        assert invoke("down").returncode == 0     # it was done already: once more
    else:
        pytest.fail("the `up` was done each time before it could be stopped")
    lab_id = claim["lab_id"]
    done = invoke(then)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not find(lab_id), f"after `invoke {then}`: {find(lab_id).lines()}"
    assert not (RUN_DIR / "up.state").exists(), f"`invoke {then}` left the dead up's claim"
    assert_clean_leaves_nothing_of(lab_id)
    down = invoke("down")
    assert down.returncode == 2 and "no lab is up" in down.stderr, down.stdout + down.stderr
    again = _up(ups, backend)
    code, out = again.finish()
    assert code == 0 and "is up on" in out, out
    assert invoke("down").returncode == 0


def test_two_ups_at_once_make_one_lab(backend, ups):
    first, second = _up(ups, backend), _up(ups, backend)
    done = [first.finish(), second.finish()]
    assert sorted(code for code, _ in done) == [0, 2], done
    (_, made), (_, refused) = sorted(done)
    lines = refused.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("twlab: ") and "invoke down" in lines[0], refused
    assert "Traceback" not in refused
    lab_id = re.search(r"lab ([0-9a-f]{6,}) is up on", made).group(1)
    assert find(lab_id), made
    down = invoke("down")
    assert down.returncode == 0 and lab_id in down.stdout, down.stdout + down.stderr
    assert not find(lab_id)
    again = invoke("down")
    assert again.returncode == 2 and "no lab is up" in again.stderr, again.stdout + again.stderr
    assert_clean_leaves_nothing_of(lab_id)
