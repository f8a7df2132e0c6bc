"""`invoke matrix --shard I/N` and `--merge`, for real on this machine's kernel (netns, three quick
scenarios): three shards, each its own `invoke matrix`, merged, hold the same cells as one
unsharded run - the same verdicts, and no key value differing beyond the matrix's own tolerance
(the two runs' columns compared as the matrix compares kernels)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab.matrix import rows

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
NAMES = "who-closes-first,five-tuple,restart-reuseaddr"


def matrix(*args: str) -> dict:
    done = subprocess.run([str(REPO / ".venv" / "bin" / "invoke"), "matrix", "--backend", "netns", *args, "--json"],
                          cwd=REPO, capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


def test_three_shards_merged_are_the_unsharded_matrix(tmp_path):
    whole = matrix("--scenario", NAMES, "--out", str(tmp_path / "whole"))
    shards = [matrix("--scenario", NAMES, "--shard", f"{i}/3", "--out", str(tmp_path / f"s{i}")) for i in (1, 2, 3)]
    assert [len(s["shard"]["cells"]) for s in shards] == [1, 1, 1]
    merged = matrix("--merge", str(tmp_path / "s1"), "--merge", str(tmp_path / "s2"), "--merge",
                    str(tmp_path / "s3"), "--out", str(tmp_path / "merged"))
    assert merged["scenarios"] == whole["scenarios"] and merged["columns"] == whole["columns"] == ["host"]
    assert {n: c["host"]["verdict"] for n, c in merged["cells"].items()} == \
        {n: c["host"]["verdict"] for n, c in whole["cells"].items()}
    assert [(r["scenario"], r["what"]) for r in merged["rows"]] == [(r["scenario"], r["what"]) for r in whole["rows"]]
    side = {"scenarios": whole["scenarios"], "columns": ["whole", "merged"],
            "cells": {n: {"whole": whole["cells"][n]["host"], "merged": merged["cells"][n]["host"]}
                      for n in whole["scenarios"]}}
    # the counters are not compared across the two runs: a tail-loss probe fires or not with the
    # machine's load (who-closes-first once counted TCPLossProbes +1 in one run and not the other)
    assert [f"{r['scenario']}: {r['what']}" for r in rows(side) if r["differs"] and r["what"] != "counters"] == []
    # what merging must keep exactly: every cell as the shard that ran it wrote it
    for s in shards:
        for name, per in s["cells"].items():
            if per:
                assert merged["cells"][name] == per, name
    assert (tmp_path / "merged" / "matrix.md").read_text().count("\n") == \
        (tmp_path / "whole" / "matrix.md").read_text().count("\n")
