"""`invoke clean` never removes a lab whose owner runs - whichever registry directory it reads.

The owner is named by the lab's own objects (lab.owner: container and network labels, the alias
of each namespace's loopback), so a clean pointed at an empty registry (TWLAB_RUN_DIR) still
recognises a live run's lab and an `invoke up` lab, and removes only what is truly left over.
"""

from __future__ import annotations

import os
import re
import signal

import pytest

from lab.backends.docker import client
from lab.backends.netns import lab_namespaces
from lab.cleanup import find

from .procs import Run, assert_interrupted, invoke, lab_id_of

pytestmark = pytest.mark.integration


def _unmarked_others(mine: str) -> list[str]:
    """Labs of others that carry no owner mark (made by a twlab before the marks): a clean with
    an empty registry cannot tell them from leftovers, so this test must not run beside them."""
    out = []
    for name in lab_namespaces():
        if name.split("-")[1] != mine:
            got = os.popen(f"ip -n {name} -o link show lo 2>/dev/null").read()
            if "alias twlab owner=" not in got:
                out.append(f"namespace {name}")
    try:
        dc = client()
    except Exception:          # noqa: BLE001 - no daemon: no containers to worry about
        return out
    try:
        for ctr in dc.containers.list(all=True, filters={"label": "org.twlab.lab"}, ignore_removed=True):
            if ctr.labels.get("org.twlab.lab") != mine and "org.twlab.owner" not in ctr.labels:
                out.append(f"container {ctr.name}")
    finally:
        dc.close()
    return out


@pytest.mark.parametrize("flags", [[], ["--all"]], ids=["clean", "clean-all"])
def test_clean_with_an_empty_registry_keeps_a_live_lab(backend, flags, tmp_path):
    run = Run("run", "time-wait-duration", "--backend", backend, "--artifacts", str(tmp_path / "art"))
    try:
        lab_id = lab_id_of(run.wait_for("running time-wait-duration"))
        others = _unmarked_others(lab_id)
        if others:
            pytest.skip(f"labs without owner marks run beside this test ({', '.join(others[:3])}): "
                        "a clean with an empty registry would remove them")
        before = find(lab_id)
        assert before, f"lab {lab_id} is not there: {run.out}"
        empty = tmp_path / "empty-registry"
        empty.mkdir()
        done = invoke("clean", *flags, env={**os.environ, "TWLAB_RUN_DIR": str(empty)})
        assert done.returncode == 0, done.stdout + done.stderr
        assert lab_id not in done.stdout, f"`invoke clean {' '.join(flags)}` removed the live lab:\n{done.stdout}"
        assert find(lab_id) == before, f"the live lab lost objects: {before.lines()} -> {find(lab_id).lines()}"
        assert run.proc.poll() is None, f"the run did not survive the clean: {run.finish()[1]}"
    finally:
        run.group(signal.SIGINT)
        code, out = run.finish()
    assert_interrupted(code, out, "Ctrl-C (SIGINT)", made=True)
    assert not find(lab_id)


def test_clean_with_another_registry_keeps_an_up_lab_but_not_a_dead_runs(backend, tmp_path):
    """An `invoke up` lab is kept by a clean that reads another registry (only --all removes it),
    and a killed run's lab, whose marks name a dead owner, is removed by the next run's start
    even when no registry knows it."""
    mine = {**os.environ, "TWLAB_RUN_DIR": str(tmp_path / "mine")}
    other = {**os.environ, "TWLAB_RUN_DIR": str(tmp_path / "other")}
    up = invoke("up", "--backend", backend, env=mine)
    assert up.returncode == 0, up.stdout + up.stderr
    up_id = re.search(r"lab ([0-9a-f]{6,}) is up on", up.stdout).group(1)
    try:
        others = _unmarked_others(up_id)
        if others:
            pytest.skip(f"labs without owner marks run beside this test ({', '.join(others[:3])})")
        before = find(up_id)
        done = invoke("clean", env=other)
        assert done.returncode == 0 and up_id not in done.stdout, done.stdout + done.stderr
        assert find(up_id) == before
        killed = Run("run", "lost-ack", "--backend", backend, "--artifacts", str(tmp_path / "art"),
                     env=other)
        dead_id = lab_id_of(killed.wait_for("running lost-ack"))
        killed.group(signal.SIGKILL)
        killed.finish(timeout_s=30)
        (tmp_path / "other" / f"{dead_id}.json").unlink(missing_ok=True)     # no registry knows it
        assert find(dead_id), "a SIGKILLed run should have left its lab"
        nxt = invoke("run", "lost-ack", "--backend", backend, "--artifacts", str(tmp_path / "art2"), env=mine)
        assert nxt.returncode == 0, nxt.stdout + nxt.stderr
        assert "removed leftovers of killed runs" in nxt.stdout and dead_id in nxt.stdout, nxt.stdout
        assert not find(dead_id)
        assert find(up_id) == before, "the next run's start removed the `invoke up` lab"
    finally:
        down = invoke("down", env=mine)
    assert down.returncode == 0 and up_id in down.stdout, down.stdout + down.stderr
    assert not find(up_id)
