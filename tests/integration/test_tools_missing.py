"""A machine without the programs the lab runs: a run names every missing one in one `twlab:`
line and exits 2 before it makes anything (no lab object, no artifacts directory), on both
backends - not a traceback at the first `ip` it cannot start."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _run(backend: str, path: Path, artifacts: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": str(path)}
    return subprocess.run([sys.executable, "-m", "lab", "run", "lost-ack", "--backend", backend,
                           "--artifacts", str(artifacts)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("present, named", [
    ((), "ip, nft, tcpdump, nsenter, setpriv, unshare"),
    (("ip", "nsenter", "setpriv", "unshare", "docker"), "nft, tcpdump"),
])
def test_the_missing_programs_are_named_in_one_line(backend, tmp_path, present, named):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in present:
        os.symlink(shutil.which(tool), bin_dir / tool)
    done = _run(backend, bin_dir, tmp_path / "out")
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stdout + done.stderr, done.stderr
    missing = named + (", docker" if backend == "docker" and "docker" not in present else "")
    assert lines[0].startswith(f"twlab: this machine lacks {missing}, which the lab runs: install "), lines[0]
    assert not (tmp_path / "out").exists()
