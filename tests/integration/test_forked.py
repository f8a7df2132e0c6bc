"""lab.forked over a real kernel: a program forked into a throwaway network namespace (removed
afterwards) runs there, talks over its own stdin and stdout, holds none of the lab's other
descriptors (a pipe the lab closes reaches EOF), exits with its program's code, and dies with the
process that forked it (PR_SET_PDEATHSIG)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

from lab.forked import Forked

pytestmark = pytest.mark.integration

ECHO = compile(textwrap.dedent("""
    import os, sys
    print(os.readlink("/proc/self/ns/net"), sys.argv[1:], flush=True)
    for line in sys.stdin:
        print(line.strip().upper(), flush=True)
    sys.exit(3)
"""), "<echo>", "exec")


@pytest.fixture
def netns():
    name = f"twtest-forked-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        yield f"/run/netns/{name}"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_the_program_runs_in_the_namespace_on_its_own_streams(netns):
    r, w = os.pipe()                       # the lab's: the child must not keep its write end
    child = Forked(netns, ECHO, ["x", "y"])
    os.close(w)
    assert os.read(r, 10) == b""           # EOF: no copy of w lives in the child
    os.close(r)
    hello = child.stdout.readline().decode()
    assert hello.startswith(f"net:[{os.stat(netns).st_ino}]") and "['x', 'y']" in hello
    assert os.readlink("/proc/self/ns/net") != hello.split()[0]    # this process stayed where it was
    child.stdin.write(b"ping\n")
    child.stdin.flush()
    assert child.stdout.readline() == b"PING\n"
    child.stdin.close()
    assert child.wait(timeout=10) == 3


def test_the_program_dies_with_the_process_that_forked_it(netns):
    code = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {os.getcwd()!r})
        from lab.forked import Forked
        child = Forked({netns!r}, compile("import time\\nwhile True: time.sleep(1)", "<s>", "exec"), [])
        print(child.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(parent.stdout.readline())
    os.kill(pid, 0)                         # alive
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, 9)
        pytest.fail("the forked program outlived the process that forked it")
