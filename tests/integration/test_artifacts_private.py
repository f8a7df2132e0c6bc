"""Every file a run writes is 0600 in 0700 directories (packet captures are nobody else's), and
through sudo every one of them belongs to the user who typed sudo: run (with --repeat: the
summary too), check (check.json, JUnit XML, --json-out) and matrix (matrix.json, matrix.md)."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(REPO / ".venv" / "bin" / "invoke")
NOBODY = 65534                     # stands for the user who typed `sudo invoke ...`


def invoke(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SUDO_UID": str(NOBODY), "SUDO_GID": str(NOBODY)}
    old = os.umask(0o022)          # the usual umask: without the lab's care, 0644 and 0755
    try:
        return subprocess.run([INVOKE, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    finally:
        os.umask(old)


def assert_private(top: Path, expect: set[str]) -> None:
    """*top* and everything under it: directories 0700, files 0600, all the invoking user's;
    and the files named in *expect* (relative paths) are among them."""
    seen = set()
    for path in [top, *sorted(top.rglob("*"))]:
        st = os.lstat(path)
        want = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        assert stat.S_IMODE(st.st_mode) == want, (str(path), oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY), (str(path), st.st_uid, st.st_gid)
        seen.add(str(path.relative_to(top)))
    assert expect <= seen, expect - seen


def test_run_artifacts_are_private(tmp_path):
    top = tmp_path / "new"                      # made by the run, like ./artifacts/ is
    done = invoke("run", "lost-ack", "--backend", "netns", "--repeat", "2", "--parallel", "2",
                  "--artifacts", str(top / "runs"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert_private(top, {"runs/summary.json", "runs/index.html"} | {
        f"runs/run-00{i}/{f}" for i in (1, 2)
        for f in ("report.json", "report.html", "client.pcap", "server.pcap", "router-client.pcap",
                  "router-server.pcap", "faults.pcap")})


def test_check_and_matrix_outputs_are_private(tmp_path):
    top = tmp_path / "new"
    done = invoke("check", "--backend", "netns", "--artifacts", str(top / "check"),
                  "--junit", str(top / "ci" / "junit.xml"), "--json-out", str(top / "ci" / "summary.json"),
                  "lost-ack")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    done = invoke("matrix", "--kernel", "host", "--backend", "netns", "--out", str(top / "matrix"), "lost-ack")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert_private(top, {"check/check.json", "check/lost-ack/report.json", "check/lost-ack/client.pcap",
                         "check/index.html", "check/lost-ack/report.html",
                         "ci/junit.xml", "ci/summary.json", "matrix/matrix.json", "matrix/matrix.md",
                         "matrix/index.html", "matrix/host/lost-ack/report.html",
                         "matrix/host/lost-ack/report.json", "matrix/host/lost-ack/faults.pcap"})
