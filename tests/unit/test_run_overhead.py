"""What keeps a run's own time short without changing what it does (issue: every second that is not
the protocol's): one scenario imported, not the catalog; the end's imports loaded during a
protocol's wait; the interpreter's tear-down skipped once the command is done; a sampler's
process reaped the moment it exits. The figures are `invoke bench`'s; these tests hold the behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import lab.core as core
import scenarios
from lab import aside, sampling
from lab.core import Lab
from lab.errors import UsageError

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


# -- one scenario, not the catalog ----------------------------------------------------------------

def test_a_run_imports_its_own_scenario_module_alone():
    done = _python("""
        import sys, scenarios
        sc = scenarios.get("lost-ack")
        others = sorted(m for m in sys.modules if m.startswith("scenarios.") and not m.startswith("scenarios._")
                        and m != "scenarios.lost_ack")
        print(sc.name, others)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["lost-ack", "[]"]


def test_find_is_none_for_a_name_no_module_has_and_get_still_suggests():
    assert scenarios.find("lost-akc") is None and scenarios.find("") is None
    assert scenarios.find("tw-buckets").name == "tw-buckets"
    with pytest.raises(UsageError, match="did you mean lost-ack"):
        scenarios.get("lost-akc")


# -- the end's imports, during a wait ---------------------------------------------------------------

def test_a_wait_that_lasts_loads_the_ends_imports_once_and_a_quick_one_does_not(monkeypatch):
    calls = []
    monkeypatch.setattr(core, "load_aside", lambda: calls.append(time.monotonic()))
    lab = Lab()
    assert lab.wait_for("a step's answer", lambda: True, timeout_s=5, interval_s=0.001)
    assert calls == []
    began = time.monotonic()
    ends = began + 3 * core.ASIDE_AFTER_S
    assert lab.wait_for("a timer", lambda: time.monotonic() > ends, timeout_s=5, interval_s=0.001)
    assert len(calls) == 1 and calls[0] - began >= core.ASIDE_AFTER_S


def test_load_aside_imports_in_a_thread_and_freezes_them_in_a_frozen_process():
    done = _python("""
        import gc, sys
        from lab.aside import load_aside
        gc.freeze(); before = gc.get_freeze_count()
        t = load_aside(("lab.pcap",))
        t.join(30)
        print("lab.pcap" in sys.modules, "dpkt" in sys.modules, gc.get_freeze_count() > before,
              load_aside(("lab.pcap",)) is None)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "True", "True"]


def test_load_aside_freezes_nothing_in_a_process_that_froze_nothing():
    done = _python("""
        import gc
        from lab.aside import load_aside
        load_aside(("lab.pcap",)).join(30)
        print(gc.get_freeze_count())
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"


def test_the_modules_loaded_aside_exist():
    for name in aside.AFTER_THE_RUN + aside.IN_A_VM:
        __import__(name)


def test_inside_a_vm_the_terminal_view_is_not_loaded_aside(monkeypatch):
    """A guest draws no terminal view (this machine draws it from report.json): rich stays out."""
    loaded = []
    monkeypatch.setattr(aside, "_load", lambda names: loaded.extend(names))
    monkeypatch.delitem(__import__("sys").modules, "lab.pcap", raising=False)    # as if not loaded yet
    monkeypatch.setenv("TWLAB_IN_VM", "1")
    aside.load_aside().join(5)
    assert loaded == ["lab.pcap"]
    monkeypatch.delenv("TWLAB_IN_VM")
    assert set(aside.AFTER_THE_RUN) > {"lab.pcap"} and "lab.report" in aside.AFTER_THE_RUN


# -- the command's exit ---------------------------------------------------------------------------

EXITING = """
    import atexit, sys, threading
    from lab.quickexit import leave
    atexit.register(lambda: open(sys.argv[1], "w").write("ran"))
    print("out", end="")
    {before}
    leave({code}, {message})
    print("returned")
"""


@pytest.mark.parametrize("code, message, expected, err", [
    (0, None, 0, ""), (3, "'twlab: it failed'", 3, "twlab: it failed"), (None, None, 0, ""),
    ("'text'", None, 1, ""),
])
def test_leave_runs_atexit_flushes_and_exits_with_the_code(tmp_path, code, message, expected, err):
    mark = tmp_path / "atexit"
    src = textwrap.dedent(EXITING).format(before="", code=code, message=message)
    done = subprocess.run([sys.executable, "-c", src, str(mark)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == expected, done.stderr
    assert done.stdout == "out" and done.stderr.strip() == err
    assert mark.read_text() == "ran"


def test_leave_steps_aside_while_another_thread_runs(tmp_path):
    mark = tmp_path / "atexit"
    before = "t = threading.Thread(target=__import__('time').sleep, args=(0.3,)); t.start()"
    src = textwrap.dedent(EXITING).format(before=before, code=5, message=None)
    done = subprocess.run([sys.executable, "-c", src, str(mark)], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and done.stdout == "outreturned\n"      # exited as Python does
    assert mark.read_text() == "ran"


def test_the_command_line_exits_with_its_codes_through_leave():
    """A pass, a usage error (2, its one line), and help: the same codes and lines as before."""
    invoke = [sys.executable, "-m", "lab"]
    ok = subprocess.run([*invoke, "list"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "lost-ack" in ok.stdout
    bad = subprocess.run([*invoke, "run", "no-such-scenario"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("twlab: unknown scenario 'no-such-scenario'")


# -- the sampler's hand-back ----------------------------------------------------------------------

def test_reap_returns_as_the_child_exits_and_kills_one_that_lingers():
    quick = os.fork()
    if quick == 0:
        os._exit(0)
    began = time.monotonic()
    sampling._reap(quick)
    assert time.monotonic() - began < 1.0
    with pytest.raises(ChildProcessError):
        os.waitpid(quick, os.WNOHANG)              # reaped
    stuck = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    began = time.monotonic()
    sampling._reap(stuck.pid, timeout_s=0.2)
    assert time.monotonic() - began < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(stuck.pid, os.WNOHANG)


def test_reap_without_pidfd_still_waits_for_the_child(monkeypatch, tmp_path):
    """A kernel without pidfd_open: the child is waited for, not killed at once - it lives to
    write its file."""
    def no_pidfd(pid):
        raise OSError(38, "Function not implemented")
    monkeypatch.setattr(sampling.os, "pidfd_open", no_pidfd)
    done = tmp_path / "done"
    child = subprocess.Popen([sys.executable, "-c",
                              f"import time, pathlib; time.sleep(0.2); pathlib.Path({str(done)!r}).write_text('x')"])
    sampling._reap(child.pid, timeout_s=30)
    assert done.read_text() == "x"
    with pytest.raises(ChildProcessError):
        os.waitpid(child.pid, os.WNOHANG)         # reaped
