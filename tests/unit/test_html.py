"""report.html's parts without a browser: the time axis, the state lanes (what is known of each
change, nothing invented), the ladder rows' fault marks and replays, the citations' links, the
sampler's "since", the pages of recorded runs, `invoke show` and `invoke report`, the index pages."""

from __future__ import annotations

import json
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from rich.console import Console

from lab.html.axis import IDLE_PX, MIN_QUIET_PX, ROW_PX, TimeAxis
from lab.html.cite import linked
from lab.html.index import write_index
from lab.html.lanes import lanes
from lab.ladder import LOST, Row, ladder_rows
from lab.observe import Sampler
from lab.records import SocketInfo
from lab.report import ladder
from lab.saved import load_run
from lab.timeline import Timeline

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data" / "scenarios"
RECORDED = sorted(DATA.glob("*.json*"))
C, S = "10.77.1.10", "10.77.2.10"


# -- the time axis ---------------------------------------------------------------------------------

def test_the_axis_keeps_time_order_and_marks_its_pieces():
    rows = [0.0, 0.00005, 0.0001, 0.2051, 0.20515, 0.6151, 0.61515, 60.7, 60.70005]
    axis = TimeAxis.fit(rows, rows)
    ys = [axis.y(t) for t in rows]
    assert ys == sorted(ys) and len(set(ys)) == len(ys)
    kinds = [p.kind for p in axis.pieces]
    assert kinds == ["burst", "quiet", "burst", "quiet", "burst", "idle", "burst"]
    assert ys[1] - ys[0] >= ROW_PX - 0.01                   # rows 50 us apart stand a row apart
    quiet = [p for p in axis.pieces if p.kind == "quiet"]
    assert quiet[1].y1 - quiet[1].y0 == pytest.approx(2 * (quiet[0].y1 - quiet[0].y0), rel=0.01)  # 0.41 s vs 0.205 s
    idle = next(p for p in axis.pieces if p.kind == "idle")
    assert idle.y1 - idle.y0 == IDLE_PX and idle.t1 - idle.t0 > 60


def test_a_short_quiet_stretch_keeps_room_for_its_label():
    rows = [0.0, 0.0001, 0.010, 0.0101, 1.0]
    axis = TimeAxis.fit(rows, rows)
    assert all(p.y1 - p.y0 >= MIN_QUIET_PX for p in axis.pieces if p.kind == "quiet")


# -- the lanes: what sock_diag saw, each change over the interval that bounds it ---------------------

def state(t, st, previous, since, port=47000):
    sock = {"state": st, "src": C, "sport": port, "dst": S, "dport": 5000}
    return Row(t, "state", st, "client", True, segment=sock, since=since, previous=previous)


def test_a_socket_first_found_in_fin_wait1_is_not_drawn_established():
    rows = [state(0.050, "FIN_WAIT1", None, 0.001), state(0.060, "FIN_WAIT2", "FIN_WAIT1", 0.055),
            state(0.070, "GONE", "FIN_WAIT2", 0.065)]
    (lane,) = lanes(rows, "client")
    assert [s.state for s in lane.spans] == ["FIN_WAIT1", "FIN_WAIT2"]
    first, change, gone = lane.changes
    assert (first.before, first.after, first.t0, first.t1) == (None, "FIN_WAIT1", 0.001, 0.050)
    assert (change.t0, change.t1) == (0.055, 0.060)        # known to lie between the two samples
    assert lane.spans[0].t1 == 0.055                        # FIN_WAIT1 certain until the sample before
    assert gone.after == "GONE" and lane.spans[-1].t1 == 0.065


def test_a_4_tuple_used_again_starts_a_fresh_lane_history():
    rows = [state(0.01, "TIME_WAIT", None, 0.0), state(0.02, "GONE", "TIME_WAIT", 0.015),
            state(0.03, "SYN_SENT", None, 0.025)]
    (lane,) = lanes(rows, "client")
    assert lane.changes[-1].before is None and lane.spans[-1].state == "SYN_SENT"


# -- the sampler names the sample before each change -------------------------------------------------

class FakeView:
    def __init__(self):
        self.now: list[SocketInfo] = []

    def sockets(self, port=None, states=None):
        return list(self.now)

    def lookup(self, key):
        return next((s for s in self.now if s.key == key), None)


def sock(st):
    return SocketInfo(st, C, 47000, S, 5000, "off", 0, 0, 1)


def test_the_sampler_records_the_sample_before_each_change():
    view, tl = FakeView(), Timeline()
    sampler = Sampler({"client": view}, 5000, tl)
    sampler.poll(discover=True)                           # nothing there yet
    sampler.poll(discover=False)                          # (nothing known: no lookup)
    view.now = [sock("FIN_WAIT1")]
    sampler.poll(discover=False)                          # a lookup round cannot find a new socket
    sampler.poll(discover=True)                           # the next dump does
    sampler.poll(discover=False)
    view.now = [sock("FIN_WAIT2")]
    sampler.poll(discover=False)
    first, second = tl.events(kind="state")
    assert first.data["previous"] is None and second.data["previous"] == "FIN_WAIT1"
    # the first: the dump before the one that found it (not the lookup round between them)
    assert first.data["since"] < first.data["asked"] and second.data["since"] < second.data["asked"]
    assert second.data["since"] > first.data["asked"]     # the round just before, not the first sighting
    assert len(tl.events()) == 2


def test_a_socket_one_lookup_missed_mid_change_is_not_called_gone():
    """Linux 6.18 answered one exact lookup with nothing for a connection moving from FIN_WAIT1 to
    TIME-WAIT; the next poll found the TIME-WAIT. A socket is gone only when two polls in a row
    miss it, and then as of the first of them."""
    view, tl = FakeView(), Timeline()
    sampler = Sampler({"client": view}, 5000, tl)
    view.now = [sock("FIN_WAIT1")]
    sampler.poll(discover=True)
    view.now = []
    sampler.poll(discover=False)                          # missed once: mid-change
    view.now = [sock("TIME_WAIT")]
    sampler.poll(discover=False)
    assert [(e.data["previous"], e.state) for e in tl.events(kind="state")] == [
        (None, "FIN_WAIT1"), ("FIN_WAIT1", "TIME_WAIT")]
    # FIN_WAIT1 was last seen by the round before the miss: the change lies after that one
    found, changed = tl.events(kind="state")
    assert changed.data["since"] == found.data["asked"]
    view.now = []
    sampler.poll(discover=False)
    first_miss = sampler.cadence.last
    sampler.poll(discover=False)
    gone = tl.events(kind="state")[-1]
    assert gone.state == "GONE" and gone.data["previous"] == "TIME_WAIT"
    assert first_miss <= gone.data["asked"] <= gone.t < gone.data["confirmed"]     # as of the first miss


def test_a_socket_the_last_look_missed_is_gone():
    view, tl = FakeView(), Timeline()
    sampler = Sampler({"client": view}, 5000, tl)
    view.now = [sock("TIME_WAIT")]
    sampler.poll(discover=True)
    view.now = []
    sampler.poll(discover=True)
    assert [e.state for e in tl.events(kind="state")] == ["TIME_WAIT"]
    sampler.finish()
    gone = tl.events(kind="state")[-1]
    assert gone.state == "GONE" and gone.data["confirmed"] is None


# -- the ladder's rows: faults, holds, copies, replays ----------------------------------------------

def seg(t, src, sport, dst, dport, flags, seq, ack, tsval, length=0):
    return {"t": t, "src": src, "sport": sport, "dst": dst, "dport": dport, "flags": flags, "seq": seq,
            "ack": ack, "length": length, "tsval": tsval, "tsecr": 1}


def event(t, kind, **data):
    text = {"drop": "dropped x", "copy": "copied x", "fault": "injected 1"}[kind]
    return {"t": t, "host": "router", "kind": kind, "text": text, "data": data}


def test_rows_mark_dropped_held_copied_and_replayed_segments():
    syn = seg(1.0, C, 47000, S, 5000, "SYN", 100, 0, 10)
    synack = seg(1.0001, S, 5000, C, 47000, "SYN,ACK", 900, 101, 20)
    lost = seg(1.1, C, 47000, S, 5000, "ACK", 101, 901, 11)
    held = seg(1.2, C, 47000, S, 5000, "PSH,ACK", 101, 901, 12, 5)
    copied = seg(1.3, S, 5000, C, 47000, "PSH,ACK", 901, 106, 21, 7)
    report = {
        "hosts": {"client": {"addresses": {"l": C}}, "server": {"addresses": {"r": S}}},
        "packets": {"client": [syn, {**synack, "t": 1.00015}, lost, held, copied | {"t": 1.3001},
                               copied | {"t": 1.9}],
                    "server": [{**syn, "t": 1.00005}, synack, {**held, "t": 1.5}, copied]},
        "timeline": [event(1.1001, "drop", segment={**lost, "prefix": "x"}),
                     event(1.2001, "drop", segment={**held, "prefix": "h"}),
                     event(1.4999, "fault", segments=[held]),
                     event(1.3, "copy", segment={**copied, "prefix": "c"}),
                     event(1.8999, "fault", segments=[copied])]}
    rows = {round(r.t, 4): r for r in ladder_rows(report) if r.kind == "segment"}
    assert rows[0.1].fate == LOST and rows[0.1].marks == ("dropped by x",)
    assert rows[0.2].fate == "arrived" and rows[0.2].marks == ("held by h",) and rows[0.2].arrival == pytest.approx(0.5)
    assert rows[0.3].marks == ("copied by c",) and rows[0.3].arrival == pytest.approx(0.3001)
    replay = rows[0.8999]
    assert replay.host == "router" and replay.marks == ("replayed",) and not replay.rightward
    drawn = "\n".join(line.plain for line in ladder(report))
    assert "(replayed)" in drawn and "lost" in drawn


# -- citations --------------------------------------------------------------------------------------

def test_citations_link_to_primary_sources_and_the_reference():
    html = linked("RFC 9293 §3.10.7.4 (RFC 793 p.73); Linux tcp_timewait_state_process() in "
                  "net/ipv4/tcp_minisocks.c (reference R-TW-FIN); close() <b>")
    assert '<a href="https://www.rfc-editor.org/rfc/rfc9293#section-3.10.7.4">RFC 9293 §3.10.7.4</a>' in html
    assert 'href="https://www.rfc-editor.org/rfc/rfc793#page-73"' in html
    assert 'href="https://elixir.bootlin.com/linux/v6.18/A/ident/tcp_timewait_state_process"' in html
    assert 'href="https://elixir.bootlin.com/linux/v6.18/source/net/ipv4/tcp_minisocks.c"' in html
    assert '<a href="#R-TW-FIN">R-TW-FIN</a>' in html
    assert "close()" in html and "ident/close" not in html and "&lt;b&gt;" in html
    missing = "R-" + "NOT-IN-THE-REFERENCE"           # (spelt apart: test_reference finds every ID written out)
    assert f'href="#{missing}"' not in linked(missing)


# -- recorded runs: shown, and paged -----------------------------------------------------------------

class Segs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.segs, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        a = dict(attrs)
        if tag == "g" and "seg" in (a.get("class") or "").split():
            self.segs.append(a)


@pytest.mark.parametrize("path", RECORDED, ids=[p.name for p in RECORDED])
def test_every_recorded_run_is_shown_again(path):
    report, where = load_run(path)
    assert where is None and report["checks"]
    console = Console(record=True, width=120)
    from lab.report import show

    show(report, console)
    text = console.export_text()
    assert "verdict:" in text and ("│" in text or "no packets" in text)


@pytest.mark.parametrize("name", ["tw-assassination.json", "time-wait-duration.json.gz", "lossy-link.json.gz"])
def test_a_recorded_run_gets_its_page(name, tmp_path):
    from lab.report import focus
    from lab.saved import rewrite

    page = rewrite(DATA / name, tmp_path / "page.html")
    report, _ = load_run(DATA / name)
    rows = [r for r in ladder_rows(report, port=focus(report)[0]) if r.kind == "segment"]
    parsed = Segs()
    parsed.feed(page.read_text())
    assert len(parsed.segs) == len(rows) > 0
    assert sum(s["data-fate"] == LOST for s in parsed.segs) == sum(r.fate == LOST for r in rows)
    assert "script" not in parsed.tags and parsed.tags >= {"figure", "figcaption", "svg", "table"}
    assert (page.stat().st_mode & 0o777) == 0o600


def invoke(*args, cwd=REPO):
    return subprocess.run([str(REPO / ".venv" / "bin" / "invoke"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_invoke_show_and_report_on_a_recorded_run(tmp_path):
    shown = invoke("show", str(DATA / "tw-assassination.json"))
    assert shown.returncode == 0, shown.stderr
    assert "RST seq=602" in shown.stdout and "verdict: PASS" in shown.stdout
    out = tmp_path / "x" / "tw.html"
    made = invoke("report", str(DATA / "tw-assassination.json"), "--out", str(out))
    assert made.returncode == 0, made.stderr
    assert out.is_file() and "<svg" in out.read_text()


@pytest.mark.parametrize("task", ["show", "report"])
def test_a_bad_run_is_one_line_and_exit_2(task, tmp_path):
    for bad in (tmp_path / "nothing", tmp_path):                     # missing; a directory without report.json
        done = invoke(task, str(bad))
        assert done.returncode == 2 and done.stderr.startswith("twlab: ") and done.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# -- index pages --------------------------------------------------------------------------------------

def test_the_index_links_every_run_and_the_matrix_cells(tmp_path):
    for col, verdict in (("host", "pass"), ("debian-12", "fail")):
        run = tmp_path / col / "lost-ack"
        run.mkdir(parents=True)
        (run / "report.json").write_text(json.dumps({"scenario": "lost-ack", "verdict": verdict, "checks": [
            {"name": "c", "passed": verdict == "pass", "outcome": verdict}], "backend": "netns", "kernel": "k"}))
        (run / "report.html").write_text("<!DOCTYPE html>")
    matrix = {"kernels": ["host", "debian-12"], "columns": ["host", "debian-12"], "releases": {},
              "rows": [{"scenario": "lost-ack", "what": "verdict", "differs": True,
                        "cells": {"host": "pass 1/1", "debian-12": "fail 0/1"}}]}
    page = write_index(tmp_path, "matrix", matrix=matrix, skipped=[{"run": "x", "scenario": "lossy-link",
                                                                     "verdict": "skipped", "why": "no netem"}])
    html = page.read_text()
    assert html.count('href="host/lost-ack/report.html"') == 2       # the matrix cell and the run's row
    assert html.count('href="debian-12/lost-ack/report.html"') == 2
    assert "no netem" in html and "<b>differs</b>" in html


def test_runs_made_in_a_vm_get_their_pages_on_this_side(tmp_path, monkeypatch):
    """The guest writes no report.html (TWLAB_IN_VM); pages_for() writes each missing one here."""
    from lab.saved import from_record, pages_for, write_html_quietly

    run = tmp_path / "debian-12" / "tw-assassination"
    run.mkdir(parents=True)
    report = from_record(json.loads((DATA / "tw-assassination.json").read_text()), DATA)
    (run / "report.json").write_text(json.dumps(report))
    monkeypatch.setenv("TWLAB_IN_VM", "1")
    assert write_html_quietly(run, report, print) is None and not (run / "report.html").exists()
    monkeypatch.delenv("TWLAB_IN_VM")
    assert pages_for(tmp_path) == [run / "report.html"]
    assert pages_for(tmp_path) == []                       # written once
