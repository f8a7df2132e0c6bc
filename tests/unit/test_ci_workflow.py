"""The kernel-matrix workflow (.github/workflows/kernel-matrix.yml) is one actionlint accepts, and
it fans out the matrix as the README says: N shard jobs with the same flags but --shard I/N, each
keeping its directory, and a merge job that needs them all and merges every one of them."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOW = REPO / ".github" / "workflows" / "kernel-matrix.yml"


def actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent))
    assert found, "actionlint is not in the venv: run scripts/setup (it installs the dev dependencies)"
    return found


def test_actionlint_accepts_the_workflow():
    done = subprocess.run([actionlint(), "-no-color", str(WORKFLOW)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_would_catch_a_broken_one(tmp_path):
    """The check can fail: a job that needs a job that does not exist."""
    broken = tmp_path / "broken.yml"
    broken.write_text(WORKFLOW.read_text().replace("needs: shard", "needs: shards"))
    done = subprocess.run([actionlint(), "-no-color", str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "shards" in done.stdout


def test_the_shards_and_the_merge_fit_together():
    wf = yaml.safe_load(WORKFLOW.read_text())
    shards = wf["jobs"]["shard"]["strategy"]["matrix"]["shard"]
    n = int(wf["env"]["SHARDS"])
    assert shards == list(range(1, n + 1))
    run = [s["run"] for s in wf["jobs"]["shard"]["steps"] if "twlab matrix" in s.get("run", "")]
    assert run == ['./twlab matrix $MATRIX_FLAGS --shard "${{ matrix.shard }}/$SHARDS" '
                   '--out "shard-${{ matrix.shard }}"']
    uploaded = [s["with"]["path"] for s in wf["jobs"]["shard"]["steps"] if "upload-artifact" in s.get("uses", "")]
    assert uploaded == ["shard-${{ matrix.shard }}/"]
    merge = wf["jobs"]["merge"]
    assert merge["needs"] == "shard"
    merged = next(s["run"] for s in merge["steps"] if "--merge" in s.get("run", ""))
    assert re.findall(r"--merge shards/shard-(\d+)", merged) == [str(i) for i in shards]
    assert "--shard" not in wf["env"]["MATRIX_FLAGS"] and "--out" not in wf["env"]["MATRIX_FLAGS"]
