"""`invoke matrix --shard I/N` and `--merge DIR...`: every cell in exactly one shard, and the shards
merged are the unsharded matrix cell by cell (verdicts and key values), its rows, what differs and
matrix.md. The cells come from a recorded lost-ack run (tests/data/runs/lost-ack) and reports
made per kernel, through a stand-in for lab.vm that answers as the guest's matrix does."""

from __future__ import annotations

import copy
import gzip
import json
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.family import label, parse_family
from lab.matrix import cell_from_report, run_matrix
from lab.matrix_shard import merge, parse_shard, plan, select

DATA = Path(__file__).resolve().parents[1] / "data" / "runs" / "lost-ack" / "report.json.gz"
RELEASES = {"debian-12": "6.1.0-57-amd64", "debian-13": "6.12.57+deb13-amd64"}
NAMES = ["lost-ack", "time-wait-duration", "tw-buckets", "who-closes-first", "five-tuple"]


def recorded(name: str, kernel: str, family: int) -> dict:
    """The recorded lost-ack report (its FIN timings nudged on 6.12, so a row differs), or a made
    report for the other scenarios: a pass on 6.1, a failed check on 6.12 for tw-buckets."""
    if name == "lost-ack":
        r = json.loads(gzip.decompress(DATA.read_bytes()))
        if kernel == "debian-13":
            for c in r["checks"]:
                if "intervals_s" in c.get("values", {}):
                    c["values"]["intervals_s"] = [round(v * 1.5, 3) for v in c["values"]["intervals_s"]]
    else:
        bad = name == "tw-buckets" and kernel == "debian-13"
        r = {"scenario": name, "verdict": "fail" if bad else "pass", "error": None, "counters": {},
             "artifacts": {"dir": "x"}, "checks": [{"name": "c", "passed": not bad, "expected": "", "observed": "",
                                                     "citation": "", "values": {}}]}
    return {**r, "kernel": RELEASES[kernel], "family": family, "backend": "netns"}


class GuestMatrix:
    """Stands in for lab.vm: a column's boot leaves the matrix.json the guest's `invoke matrix
    --kernel host --family F --scenario ...` would."""

    def __init__(self) -> None:
        self.boots: list[tuple[str, list[str]]] = []

    def run(self, kernel, args, artifacts, progress, docker=False, accel="auto", timeout_s=900, env=None):
        names = [args[i + 1] for i, a in enumerate(args) if a == "--scenario"]
        self.boots.append((kernel, names))
        cells = {label(n, f): {"host": cell_from_report(recorded(n, kernel, f))}
                 for n in names for f in parse_family(args[args.index("--family") + 1])}
        (Path(artifacts) / "matrix.json").write_text(json.dumps({"cells": cells,
                                                                 "releases": {"host": RELEASES[kernel]}}))
        return 0, ""


def comparable(m: dict) -> dict:
    """What an unsharded and a merged matrix must share (not where or how long they ran)."""
    keep = ("kernels", "backends", "columns", "releases", "scenarios", "families", "cells", "rows", "differs")
    return copy.deepcopy({k: m[k] for k in keep})


@pytest.mark.parametrize("families", [(4,), (4, 6)], ids=["v4", "both"])
def test_three_shards_merged_are_the_unsharded_matrix(tmp_path, families):
    kernels = ["debian-12", "debian-13"]
    whole_vm = GuestMatrix()
    whole = run_matrix(kernels, NAMES, out=tmp_path / "whole", vm=whole_vm, families=families)
    assert whole["differs"] and any(c["verdict"] == "fail" for per in whole["cells"].values() for c in per.values())
    shard_vm = GuestMatrix()
    dirs = []
    for i in (1, 2, 3):
        m = run_matrix(kernels, NAMES, out=tmp_path / f"shard-{i}", vm=shard_vm, families=families, shard=(i, 3))
        assert m["shard"]["index"] == i and m["shard"]["of"] == 3
        dirs.append(tmp_path / f"shard-{i}")
    # each shard boots a kernel once for the cells it has of it; together, each cell ran once
    ran = [(k, n) for k, names in shard_vm.boots for n in names]
    assert sorted(ran) == sorted((k, n) for k, names in whole_vm.boots for n in names)
    assert len(shard_vm.boots) <= len(whole_vm.boots) + 2
    merged = merge(dirs, tmp_path / "merged")
    assert comparable(merged) == comparable(whole)
    assert (tmp_path / "merged" / "matrix.md").read_text() == (tmp_path / "whole" / "matrix.md").read_text()
    on_disk = json.loads((tmp_path / "merged" / "matrix.json").read_text())
    assert comparable(on_disk) == comparable(json.loads((tmp_path / "whole" / "matrix.json").read_text()))


def test_shards_are_contiguous_near_equal_and_cover_every_cell_once():
    cells = plan([("a", "a", "netns"), ("b", "b", "netns")], NAMES)
    for n in (1, 2, 3, 4, 10, 11):
        parts = [select(cells, (i, n)) for i in range(1, n + 1)]
        assert [c for p in parts for c in p] == cells
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert select(cells, None) == cells


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0"])
def test_a_bad_shard_is_a_usage_error(text):
    with pytest.raises(UsageError, match="--shard"):
        parse_shard(text)
    assert parse_shard(" 2 / 3 ") == (2, 3) and parse_shard(None) is None


def test_merging_needs_every_shard_of_one_matrix(tmp_path):
    vm = GuestMatrix()
    for i in (1, 2, 3):
        run_matrix(["debian-12"], NAMES, out=tmp_path / f"s{i}", vm=vm, shard=(i, 3))
    run_matrix(["debian-13"], NAMES, out=tmp_path / "other", vm=vm, shard=(3, 3))
    with pytest.raises(UsageError, match=r"expected shards 1\.\.N"):
        merge([tmp_path / "s1", tmp_path / "s2"], tmp_path / "m")
    with pytest.raises(UsageError, match="different matrices"):
        merge([tmp_path / "s1", tmp_path / "s2", tmp_path / "other"], tmp_path / "m")
    with pytest.raises(UsageError, match="no readable matrix.json"):
        merge([tmp_path / "nowhere"], tmp_path / "m")
    assert not (tmp_path / "m").exists()
