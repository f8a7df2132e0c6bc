"""The instructor's key is filled from a real run: every cell of the sheet from the run's evidence
(recorded runs: tests/data/scenarios, and a whole lost-ack run directory in tests/data/runs), the
answers after each question; a directory of another scenario's run is refused in one line."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import UsageError
from lab.sheetkey import KeyRun, render_key
from lab.sheets import CELL, Sheet
from scenarios import catalog

from .records import evidence

REPO = Path(__file__).resolve().parents[2]
RUN = REPO / "tests" / "data" / "runs" / "lost-ack"
INVOKE = str(Path(sys.executable).parent / "invoke")

# recorded run -> (scenario, the cells it cannot show: a variant the table asks about in other runs)
RECORDS = {
    "five-tuple": ("five-tuple", set()),
    "five-tuple-tw-reuse-1": ("five-tuple", set()),
    "five-tuple-no-timestamps": ("five-tuple", {"old_fin_seq", "new_syn_seq", "isn_difference"}),
    "lossy-link": ("lossy-link", set()),
    "restart-reuseaddr": ("restart-reuseaddr", set()),
    "retransmitted-fin-orphan-retries-4": ("retransmitted-fin", {f"n{n}_observed" for n in (1, 2, 3, 5, 6)}),
    "time-wait-duration": ("time-wait-duration", set()),
    "tw-assassination": ("tw-assassination", set()),
    "tw-assassination-rfc1337": ("tw-assassination", set()),
    "tw-buckets": ("tw-buckets", set()),
    "tw-reopen": ("tw-reopen", set()),
    "tw-reopen-no-timestamps": ("tw-reopen", set()),
    "wandering-duplicates": ("wandering-duplicates", set()),
    "wandering-duplicates-no-timestamps": ("wandering-duplicates", set()),
    "who-closes-first": ("who-closes-first", set()),
}


@pytest.fixture
def run_dir(tmp_path) -> Path:
    """The recorded lost-ack run as `invoke run --artifacts DIR` leaves it."""
    out = tmp_path / "lost-ack"
    shutil.copytree(RUN, out)
    with gzip.open(out / "report.json.gz", "rb") as src, open(out / "report.json", "wb") as dst:
        shutil.copyfileobj(src, dst)
    (out / "report.json.gz").unlink()
    return out


def keyed(record: str) -> dict:
    name, _ = RECORDS[record]
    sc = catalog()[name]
    return sc.key(KeyRun.from_evidence(evidence(record), sc))


def test_every_scenario_has_a_recorded_run_to_key():
    assert {name for name, _ in RECORDS.values()} | {"lost-ack"} == set(catalog())


@pytest.mark.parametrize("record", sorted(RECORDS))
def test_a_recorded_run_fills_every_cell_it_shows(record):
    name, unseen = RECORDS[record]
    cells = keyed(record)
    assert set(cells) == set(Sheet.load(name).cells())
    assert {n for n, c in cells.items() if c.value is None} == unseen
    assert all(c.source for c in cells.values())


def test_the_numbers_are_the_runs():
    buckets = keyed("tw-buckets")
    assert (buckets["overflow"].text, buckets["tw_at_end"].text, buckets["c3_answer"].text) == ("2", "3", "RST")
    assert buckets["server_rsts"].text == "2 (ports 54282, 54290)"
    twd = keyed("time-wait-duration")
    assert (twd["hz"].text, twd["a_granule_s"].text, twd["a_bounds_s"].text) == ("250", "2.048", "61.012, 61.043")
    fin = keyed("retransmitted-fin-orphan-retries-4")
    assert (fin["n4_predicted"].text, fin["n4_observed"].text, fin["n1_predicted"].text) == ("4", "4", "2")
    assert fin["fin_2_kind"].text == "probe" and fin["fin_3_kind"].text == "RTO"
    assert keyed("five-tuple")["isn_difference"].text == "65538"
    assert keyed("lossy-link")["reacks"].text == "26, 2, 0"
    assert keyed("wandering-duplicates-no-timestamps")["b_read"].text == "1000, 3000 (of 4000)"


def test_the_key_of_a_saved_run_comes_from_its_report_and_pcaps(run_dir):
    sc = catalog()["lost-ack"]
    run = KeyRun.from_dir(run_dir, sc)
    cells = sc.key(run)
    assert not [n for n, c in cells.items() if c.value is None]
    assert cells["fin_count"].text == "5" and cells["acks_dropped"].text == "4"
    assert cells["fin_2_kind"].text == "tail-loss probe" and cells["fin_5_kind"].text == "RTO"
    assert cells["ack_5_arrived"].text == "yes" and cells["ack_4_arrived"].text.startswith("no")
    fins = [s for s in run.ev.segments("server", src="server", flag="FIN")]
    assert cells["fin_5_t"].text == f"{fins[4].t - fins[0].t:.3f}".rstrip("0")
    assert b"hello" in [s.payload for s in run.ev.packets["client"]]      # read from client.pcap
    (run_dir / "client.pcap").unlink()             # without it, report.json's copy (no payloads)
    assert b"hello" not in [s.payload for s in KeyRun.from_dir(run_dir, sc).ev.packets["client"]]


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_the_key_has_every_table_filled_and_every_question_answered(run_dir, lang):
    sc = catalog()["lost-ack"]
    text = render_key("lost-ack", KeyRun.from_dir(run_dir, sc), lang, where=str(run_dir))
    assert not CELL.search(text) and "| ? |" not in text
    answer = "**Answer.**" if lang == "en" else "**答案：**"
    assert text.count(answer) == len(Sheet.load("lost-ack", lang).questions())
    cells = sc.key(KeyRun.from_dir(run_dir, sc))
    assert f"| 5 | {cells['fin_5_t'].text} | {cells['fin_5_gap'].text} |" in text
    assert "6.18.44" in text and "PASS (7/7 checks passed)" in text
    assert "✕ lost" in text                        # the run's ladder


def test_a_run_of_another_scenario_is_refused(run_dir):
    with pytest.raises(UsageError, match=r"holds a run of 'lost-ack', not of tw-buckets"):
        KeyRun.from_dir(run_dir, catalog()["tw-buckets"])
    with pytest.raises(UsageError, match="has no report.json"):
        KeyRun.from_dir(run_dir.parent, catalog()["lost-ack"])
    (run_dir / "report.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot read"):
        KeyRun.from_dir(run_dir, catalog()["lost-ack"])


def test_the_task_refuses_another_scenarios_run_in_one_line(run_dir):
    done = subprocess.run([INVOKE, "sheet", "tw-buckets", "--key", str(run_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("twlab: ")
    assert "not of tw-buckets" in done.stderr


def test_the_task_prints_the_sheet_and_writes_the_key(run_dir, tmp_path):
    done = subprocess.run([INVOKE, "sheet", "lost-ack", "--lang", "zh"], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("# 实验单：lost-ack")
    assert "{{" not in done.stdout
    out = tmp_path / "key.md"
    done = subprocess.run([INVOKE, "sheet", "lost-ack", "--key", str(run_dir), "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("# Instructor's key")
    bad = subprocess.run([INVOKE, "sheet", "lost-ack", "--lang", "fr"], cwd=REPO, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("twlab: no lab sheets in 'fr'")
