"""The controller image (`invoke image --controller`): with nothing of twlab on the host's PATH,
`docker run ... twlab/twlab run lost-ack` passes on both backends (containers on the same engine,
or namespaces in the engine's kernel), writes the artifacts into the mounted directory for the
user who owns it, and leaves nothing behind - no lab object, no controller container, no process
of it; `docker stop` and Ctrl-C at the terminal (`docker run -it`) remove the lab first.

The image is built once for the code under test (its tag hashes the code: lab.controller_image)
and reused by later sessions. On an engine that cannot grant --privileged (one running in a
container whose own capability set lacks some: this machine's dockerd lacks CAP_SYS_RESOURCE) the
tests give the controller every capability the engine can grant, unconfined, instead.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from lab.controller_image import controller_tag

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
HOST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"   # no .venv, no pyenv
HOST_ENV = {"PATH": HOST_PATH, "HOME": os.environ.get("HOME", "/root"), "LANG": "C.UTF-8"}
USER = 4321                     # the user whose directory is mounted at /artifacts
ALMOST_PRIVILEGED = ["--cap-add=ALL", "--cap-drop=SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
                     "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined"]


@pytest.fixture(scope="module")
def controller() -> str:
    """The controller image of this code: built now unless it already is."""
    from lab.backends.docker import client
    from lab.errors import EnvError

    try:
        client().close()
    except EnvError as exc:
        pytest.skip(str(exc))
    tag = controller_tag()
    present = subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0
    if not present:
        done = subprocess.run([str(REPO / ".venv" / "bin" / "invoke"), "image", "--controller"], cwd=REPO,
                              capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return tag


@pytest.fixture(scope="module")
def privileged(controller) -> list[str]:
    """--privileged where the engine grants it, else the nearest this engine can do."""
    done = subprocess.run(["docker", "run", "--rm", "--privileged", "--entrypoint", "true", controller],
                          capture_output=True, text=True, env=HOST_ENV)
    if done.returncode == 0:
        return ["--privileged"]
    assert "apply caps" in done.stderr, done.stderr        # anything else is a failure of ours
    return ALMOST_PRIVILEGED


def _user_dir(tmp_path: Path) -> Path:
    out = tmp_path / "artifacts"
    out.mkdir()
    os.chown(out, USER, USER)
    return out


def _argv(image: str, privileged: list[str], artifacts: Path, name: str, *args: str, tty: bool = False) -> list[str]:
    """The README's command, with a name to find the container by."""
    return ["docker", "run", "--rm", *(["-it"] if tty else []), *privileged, "--pid=host",
            "-v", "/var/run/docker.sock:/var/run/docker.sock", "-v", f"{artifacts}:/artifacts",
            "--name", name, image, *args]


def _lab_id(out: str) -> str:
    m = re.search(r"lab ([0-9a-f]{6}) up on (docker|netns)", out)
    assert m, out[-3000:]
    return m.group(1)


def _assert_nothing_left(name: str, lab_id: str, lab_leftovers) -> None:
    """No controller container, no object of its lab (namespaces here, containers, networks) and
    no process left of the controller on this machine."""
    def gone() -> bool:
        ps = subprocess.run(["docker", "ps", "-a", "-q", "--filter", f"name=^{name}$"],
                            capture_output=True, text=True, check=True).stdout.strip()
        ours = [x for x in lab_leftovers() if lab_id in x]
        return not ps and not ours
    deadline = time.monotonic() + 30
    while not gone() and time.monotonic() < deadline:
        time.sleep(0.25)
    assert gone(), (name, lab_id, lab_leftovers())
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"twlab-{lab_id}-" not in netns
    left = [p for p in os.listdir("/proc") if p.isdigit() and _cgroup_has(p, name)]
    assert not left, f"processes of the controller still run: {left}"


def _cgroup_has(pid: str, needle: str) -> bool:
    try:
        return needle in Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return False


def test_nothing_of_twlab_is_on_the_hosts_path():
    """The premise of the tests below: the host has Docker, and no twlab command or Python."""
    assert shutil.which("docker", path=HOST_PATH)
    assert shutil.which("twlab", path=HOST_PATH) is None and shutil.which("invoke", path=HOST_PATH) is None
    py = shutil.which("python3", path=HOST_PATH)
    if py:
        done = subprocess.run([py, "-c", "import lab, invoke"], cwd="/", env=HOST_ENV, capture_output=True)
        assert done.returncode != 0


def test_the_image_runs_lost_ack_for_the_user_and_leaves_nothing(backend, controller, privileged, tmp_path,
                                                                 lab_leftovers):
    artifacts, name = _user_dir(tmp_path), f"twlab-test-ctl-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(_argv(controller, privileged, artifacts, name, "run", "lost-ack", "--backend", backend),
                          capture_output=True, text=True, env=HOST_ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verdict: PASS" in done.stdout
    lab_id = _lab_id(done.stdout)
    runs = list(artifacts.iterdir())
    assert len(runs) == 1 and runs[0].name.endswith("-lost-ack"), runs
    files = {p.name: p.stat() for p in runs[0].iterdir()}
    assert {"report.json", "report.html", "client.pcap", "server.pcap", "router-client.pcap", "router-server.pcap",
            "faults.pcap"} <= set(files)
    for fname, st in [(runs[0].name, runs[0].stat()), *files.items()]:
        assert (st.st_uid, st.st_gid) == (USER, USER), fname          # the user's, not root's
    report = json.loads((runs[0] / "report.json").read_text())
    assert report["backend"] == backend and report["verdict"] == "pass"
    _assert_nothing_left(name, lab_id, lab_leftovers)


def test_twlab_owner_names_the_user_when_the_directory_is_roots(controller, privileged, tmp_path, lab_leftovers):
    artifacts, name = tmp_path / "artifacts", f"twlab-test-ctl-{uuid.uuid4().hex[:8]}"
    artifacts.mkdir()                                       # root's, as Docker makes a missing one
    argv = _argv(controller, privileged, artifacts, name, "run", "lost-ack", "--backend", "netns")
    argv[argv.index("--name"):argv.index("--name")] = ["-e", f"TWLAB_OWNER={USER}:{USER + 1}"]
    done = subprocess.run(argv, capture_output=True, text=True, env=HOST_ENV, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = artifacts.iterdir()
    for path in [run, *run.iterdir()]:
        assert (path.stat().st_uid, path.stat().st_gid) == (USER, USER + 1), path
    _assert_nothing_left(name, _lab_id(done.stdout), lab_leftovers)


def _read_until(fd: int, needle: bytes, seen: bytearray, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in {seen.decode(errors='replace')[-3000:]}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:                 # the pty's other side has gone
                chunk = b""
            assert chunk, f"ended before {needle!r}: {seen.decode(errors='replace')[-3000:]}"
            seen += chunk


def _drain(fd: int, seen: bytearray) -> None:
    while select.select([fd], [], [], 5)[0]:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            return
        if not chunk:
            return
        seen += chunk


@pytest.mark.parametrize("how", ["docker stop", "Ctrl-C"])
def test_interrupting_the_controller_removes_the_lab(backend, controller, privileged, tmp_path, lab_leftovers,
                                                     how):
    """Mid-scenario (after "running lost-ack"): `docker stop` (SIGTERM to the container's first
    process, which tini hands on) or Ctrl-C typed at the terminal of `docker run -it`. The run
    must exit 130 saying its lab was removed: it cannot pass by finishing first."""
    artifacts, name = _user_dir(tmp_path), f"twlab-test-ctl-{uuid.uuid4().hex[:8]}"
    master, slave = pty.openpty()
    proc = subprocess.Popen(_argv(controller, privileged, artifacts, name, "run", "lost-ack", "--backend", backend,
                                  tty=True), stdin=slave, stdout=slave, stderr=slave, env=HOST_ENV,
                            start_new_session=True)
    os.close(slave)
    seen = bytearray()
    try:
        _read_until(master, b"running lost-ack", seen)
        if how == "docker stop":
            subprocess.run(["docker", "stop", name], check=True, capture_output=True, timeout=60)
        else:
            os.write(master, b"\x03")
        proc.wait(timeout=120)
        _drain(master, seen)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    out = seen.decode(errors="replace")
    assert proc.returncode == 130, (proc.returncode, out[-3000:])
    lab_id = _lab_id(out)
    assert f"the lab was removed (lab {lab_id})" in out, out[-2000:]
    _assert_nothing_left(name, lab_id, lab_leftovers)
