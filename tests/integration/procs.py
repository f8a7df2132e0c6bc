"""Starting twlab as a terminal starts a job, signalling it, and reading what it says: shared by
the signal tests.

A terminal starts a job in a process group of its own with SIGINT at its default disposition, and
Ctrl-C sends SIGINT to that whole group. A background job of a non-interactive shell inherits
SIGINT *ignored* instead (and Python keeps it ignored), so a test started from such a shell would
pass without ever being interrupted: `Run` resets the disposition and checks it took.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")
RUN_DIR = Path(os.environ.get("TWLAB_RUN_DIR", "/run/twlab"))


def _as_a_terminal_job() -> None:
    for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_DFL)


def ignored_signals(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))


class Run:
    """`invoke ARGS...` as a terminal job: its own process group, SIGINT at its default."""

    def __init__(self, *args: str, env: dict | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen([INVOKE, *args], cwd=REPO, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_as_a_terminal_job, env=env)
        self.seen = b""
        assert not ignored_signals(self.proc.pid) & (1 << (signal.SIGINT - 1)), \
            "the run was started with SIGINT ignored: Ctrl-C would not reach it"

    @property
    def out(self) -> str:
        return self.seen.decode(errors="replace")

    def wait_for(self, needle: str, timeout_s: float = 180, after: int = 0, end_ok: bool = False,
                 timeout_ok: bool = False) -> str:
        """Read the output until *needle* appears (after the first *after* bytes); return
        everything read so far. The run ending first fails (with *end_ok*: returns ''), and so
        does the time running out (with *timeout_ok*: returns '')."""
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        while needle.encode() not in self.seen[after:]:
            left = deadline - time.monotonic()
            if left <= 0 and timeout_ok:
                return ""
            assert left > 0, f"no {needle!r} in the output of {self.args}: {self.out}"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk and end_ok:
                    return ""
                assert chunk, f"{self.args} ended before {needle!r}: {self.out}"
                self.seen += chunk
        return self.out

    def group(self, sig: int) -> None:
        """What the terminal does on Ctrl-C (SIGINT) or a hang-up: signal the whole job. (A run
        that had already ended shows in its exit code, which the tests check.)"""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self, sig: int) -> None:
        """What `kill PID` does: signal only the process itself."""
        self.proc.send_signal(sig)

    def finish(self, timeout_s: float = 180) -> tuple[int, str]:
        rest, _ = self.proc.communicate(timeout=timeout_s)
        self.seen += rest
        return self.proc.returncode, self.out


def invoke(*args: str, env: dict | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([INVOKE, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                          env=env)


def lab_id_of(out: str) -> str | None:
    """The lab a run made: from "lab ID up on ...", or from "...; the lab was removed (lab ID)"."""
    m = re.search(r"^lab ([0-9a-f]{6,}) up on |the lab was removed \(lab ([0-9a-f]{6,})\)", out, re.MULTILINE)
    return (m.group(1) or m.group(2)) if m else None


def up_claim(timeout_s: float = 30) -> dict:
    """The lab an `invoke up` in progress has claimed (RUN_DIR/up.state): it holds the id before
    anything is made."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return json.loads((RUN_DIR / "up.state").read_text())
        except (OSError, ValueError):
            assert time.monotonic() < deadline, f"no {RUN_DIR}/up.state"
            time.sleep(0.01)


def assert_interrupted(code: int, out: str, what: str, made: bool | None = None) -> None:
    """Exit 130, the line naming the signal (*what*) and saying the lab was removed (or, when
    the signal came first, that none had been made); no traceback, no tear-down cut short.
    *made*: whether the run is known to have made its lab (None: not known)."""
    assert code == 130, f"exit {code}, not 130:\n{out}"
    # (the signal may cut a progress line short: the message then follows it on the same line)
    line = next((ln[ln.index("twlab: interrupted"):] for ln in out.splitlines() if "twlab: interrupted" in ln),
                None)
    assert line, f"no 'twlab: interrupted ...' line:\n{out}"
    assert what in line, f"{what!r} not named in {line!r}"
    if made is None:
        made = "before any lab was made" not in line
    if made:
        assert "the lab was removed" in line or " labs were removed" in line, line
    else:
        assert "before any lab was made" in line, line
    assert "()" not in line, line
    assert "Traceback" not in out, out
    assert "while tearing down" not in out, out


def assert_clean_leaves_nothing_of(lab_id: str, env: dict | None = None) -> str:
    """`invoke clean` afterwards: exit 0 and nothing of that lab to remove (other people's dead
    leftovers on a shared machine may still be named)."""
    done = invoke("clean", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert lab_id not in done.stdout, f"`invoke clean` still found lab {lab_id}:\n{done.stdout}"
    return done.stdout
