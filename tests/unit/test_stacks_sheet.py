"""The two-stacks sheet's key is filled from a real matrix (tests/data/runs/two-stacks: the whole
catalog on Linux, client=gvisor, server=gvisor and gvisor, run on this machine with `invoke matrix
--backend netns --stack linux --stack client=gvisor --stack server=gvisor --stack gvisor`; its
retransmitted-fin x gvisor cell is a rerun's, after a fix to that run's probe of a gVisor client):
each cell from the column that shows it, every question answered; a directory without that matrix
is refused in one line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.sheets import CELL, Sheet
from lab.stacks_sheet import stacks_cells, stacks_key

REPO = Path(__file__).resolve().parents[2]
MATRIX = REPO / "tests" / "data" / "runs" / "two-stacks"
INVOKE = str(Path(sys.executable).parent / "invoke")


def recorded() -> dict:
    return json.loads((MATRIX / "matrix.json").read_text())


def test_each_cell_comes_from_the_column_that_shows_it():
    m = recorded()
    cells, columns = stacks_cells(m)
    got = {k: c.value for k, c in cells.items()}
    lost_ack = m["cells"]["lost-ack"]
    assert got["linux_tw_armed_ms"] == lost_ack[columns["linux"]]["values"]["TIME-WAIT armed (ms)"]
    # Linux's TIME-WAIT on the wire: the column whose client is Linux and whose prober runs
    assert got["linux_tw_wire_s"] == lost_ack[columns["sgv"]]["values"][
        "TIME-WAIT on the wire, gone by (s after the last ACK)"]
    assert got["gvisor_tw_wire_s"] == lost_ack[columns["cgv"]]["values"][
        "TIME-WAIT on the wire, gone by (s after the last ACK)"]
    assert got["gvisor_fin_gaps"] == lost_ack[columns["sgv"]]["values"]["FIN intervals (s)"]
    assert got["cgv_na"] == "time-wait-armed-for-60s"
    assert "client TcpOutRsts +1" in got["sgv_counters"]
    # Table 4: the RST killed Linux's TIME-WAIT and left gVisor's (tw-assassination's cells)
    twa = m["cells"]["tw-assassination"]
    assert got["linux_twa_after"] == twa[columns["linux"]]["values"]["TIME-WAIT after the RST"] == "gone (killed)"
    assert got["gvisor_twa_after"] == twa[columns["cgv"]]["values"]["TIME-WAIT after the RST"] == "TIME_WAIT"
    assert got["linux_twa_rfc1337"] == 0 and got["linux_twa_killed_ms"] > 0
    assert got["gvisor_twa_killed_ms"] is None and "not killed" in cells["gvisor_twa_killed_ms"].source
    assert all(v is not None for k, v in got.items() if k != "gvisor_twa_killed_ms")
    # Table 5: where the catalog found the two choosing differently, each from its column
    assert (got["linux_fw2_s"], got["gvisor_fw2_s"]) == (5.008, 60.102)
    assert (got["linux_tw_end"], got["gvisor_tw_kept"]) == (3, 5)
    assert (got["linux_b_same"], got["gvisor_b_same"]) == ("ok", "EADDRINUSE")
    assert (got["linux_syn_behind"], got["gvisor_syn_behind"]) == (True, False)
    assert (got["linux_old_bytes"], got["gvisor_old_bytes"]) == (0, 250)
    assert cells["gvisor_old_bytes"].source.endswith("server=gvisor: old bytes delivered")


def test_a_matrix_without_tw_assassination_leaves_table_4_unfilled_saying_why():
    m = recorded()
    del m["cells"]["tw-assassination"]
    cells = stacks_cells(m)[0]
    assert cells["gvisor_twa_after"].value is None and "tw-assassination not run" in cells["gvisor_twa_after"].source
    assert cells["linux_tw_armed_ms"].value is not None          # the lost-ack tables are unaffected


def test_a_matrix_of_lost_ack_alone_leaves_table_5_unfilled_saying_why():
    m = recorded()
    m["cells"] = {k: v for k, v in m["cells"].items() if k in ("lost-ack", "tw-assassination")}
    cells = stacks_cells(m)[0]
    assert cells["gvisor_tw_kept"].value is None and "drop --scenario" in cells["gvisor_tw_kept"].source
    assert cells["linux_tw_armed_ms"].value is not None


def test_a_column_without_a_value_says_so():
    m = recorded()
    del m["cells"]["lost-ack"]["host/client=gvisor"]["values"]["TIME-WAIT on the wire, gone by (s after the last ACK)"]
    cell = stacks_cells(m)[0]["gvisor_tw_wire_s"]
    assert cell.value is None and "not in this run" in cell.source and cell.text == "—"


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_key_has_every_table_filled_and_every_question_answered(lang):
    text = stacks_key(MATRIX, lang)
    assert not CELL.search(text) and "| ? |" not in text
    answer = "**Answer.**" if lang == "en" else "**答案：**"
    assert text.count(answer) == len(Sheet.load("two-stacks", lang).questions())
    assert "| gVisor | 5 | 0.2, 0.201, 0.401, 0.801 |" in text
    assert "6.18.44" in text


def test_a_directory_without_the_matrix_is_refused(tmp_path):
    with pytest.raises(UsageError, match=r"cannot read .*matrix\.json .*invoke matrix --backend netns"):
        stacks_key(tmp_path)
    m = recorded()
    del m["cells"]["lost-ack"]["host/server=gvisor"]
    (tmp_path / "matrix.json").write_text(json.dumps(m))
    with pytest.raises(UsageError, match="no lost-ack run in the column.s. server=gvisor"):
        stacks_key(tmp_path)


def test_the_task_prints_the_sheet_and_the_key(tmp_path):
    done = subprocess.run([INVOKE, "sheet", "two-stacks"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("# Lab sheet: two-stacks")
    assert "{{" not in done.stdout
    shutil.copytree(MATRIX, tmp_path / "m")
    done = subprocess.run([INVOKE, "sheet", "two-stacks", "--key", str(tmp_path / "m"), "--lang", "zh"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("# 教师答案：two-stacks")
    bad = subprocess.run([INVOKE, "sheet", "two-stacks", "--key", str(tmp_path)], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stdout == "" and bad.stderr.count("\n") == 1
