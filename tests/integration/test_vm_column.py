"""A matrix column of a VM kernel in ONE boot, for real: `invoke matrix --kernel debian-12 --family
both` over two scenarios boots Debian 12's kernel once (one vm.json, one command on its console)
and its four cells (two scenarios x two families) come from the guest's runs, each with its
report.json and the accelerator that ran it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[2]


def test_a_vm_column_is_one_boot_for_all_its_cells(tmp_path):
    argv = [str(REPO / ".venv" / "bin" / "invoke"), "matrix", "--kernel", "debian-12", "--family", "both",
            "--scenario", "who-closes-first,five-tuple", "--out", str(tmp_path), "--json"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=1700, stdin=subprocess.DEVNULL)
    print(done.stderr[-3000:])
    assert done.returncode == 0, done.stderr[-3000:]
    m = json.loads(done.stdout)
    rows = ["who-closes-first", "who-closes-first/v6", "five-tuple", "five-tuple/v6"]
    assert m["scenarios"] == rows and m["columns"] == ["debian-12"]
    assert m["releases"]["debian-12"].startswith("6.1.0-")
    for row in rows:
        cell = m["cells"][row]["debian-12"]
        assert cell["verdict"] == "pass", (row, cell)
        assert cell["accel"] in ("kvm", "tcg")
    column = tmp_path / "debian-12"
    assert [p.parent for p in column.rglob("vm.json")] == [column]                # one boot
    console = (column / "vm-console.log").read_text()
    assert console.count("@@twlab-vm:start@@") == 1 and "@@twlab-vm:exit=0@@" in console
    reports = [json.loads(p.read_text()) for p in column.rglob("report.json")]
    assert sorted((r["scenario"], r["family"]) for r in reports) == sorted(
        [("who-closes-first", 4), ("who-closes-first", 6), ("five-tuple", 4), ("five-tuple", 6)])
    assert all(r["kernel"] == m["releases"]["debian-12"] for r in reports)
    assert done.stderr.count("(one VM boot)") == 1
