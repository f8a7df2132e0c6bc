"""Every scenario's report.html, as a browser shows it: headless Chromium (Debian's package) loads
each page with the network off (a network namespace of its own) and the test checks that the
screenshot is not blank, that the ladder holds one arrow per segment of the focused connection -
counted here from the pcaps, with dpkt - with the lost ones marked, that the page asked for
nothing (Chromium's net log; a control page that does ask proves the log would show it), and that
every figure has a text alternative. The scenarios run once, as `invoke run all` runs them;
lossy-link, which needs netem, is rendered from its recorded evidence (tests/data: its packets
decoded there, no pcap)."""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path

import dpkt
import pytest

from lab.report import focus
from scenarios import names

sys.path.insert(0, str(Path(__file__).parent))
import browser  # noqa: E402

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(browser.chromium() is None, reason="chromium is not installed: run scripts/setup")]

REPO = Path(__file__).resolve().parents[2]
RECORDED = REPO / "tests" / "data" / "scenarios" / "lossy-link.json.gz"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("all") / "runs"
    done = subprocess.run([str(REPO / ".venv" / "bin" / "invoke"), "run", "all", "--backend", "netns",
                           "--artifacts", str(base)], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stdout[-3000:] + done.stderr[-3000:]
    return base


def wire(s: dict) -> tuple:
    return (s["src"], s["sport"], s["dst"], s["dport"], s["flags"], s["seq"], s["ack"], s["len"], s["tsval"])


def read(pcap: Path) -> list[dict]:
    """The TCP segments of an Ethernet pcap, read here with dpkt alone (not lab.packets)."""
    out = []
    with open(pcap, "rb") as f:
        for _t, buf in dpkt.pcap.Reader(f):
            ip = dpkt.ethernet.Ethernet(buf).data
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp, tsval = ip.data, None
            for kind, data in dpkt.tcp.parse_opts(tcp.opts):
                if kind == dpkt.tcp.TCP_OPT_TIMESTAMP and len(data) == 8:
                    tsval = struct.unpack(">I", data[:4])[0]
            out.append({"src": socket.inet_ntoa(ip.src), "sport": tcp.sport, "dst": socket.inet_ntoa(ip.dst),
                        "dport": tcp.dport, "flags": tcp.flags, "seq": tcp.seq, "ack": tcp.ack,
                        "len": ip.len - ip.hl * 4 - tcp.off * 4, "tsval": tsval})
    return out


def expected(at: dict[str, list[dict]], addr: dict[str, str], port: int | None) -> dict[str, int]:
    """What the ladder must draw: every segment each end's capture shows it sending (on the
    focused connection), those its peer's capture lacks (lost), and the copies a peer received
    beyond what was sent (replayed by the router)."""
    mine = lambda h: [s for s in at[h] if s["src"] == addr[h] and (port is None or port in (s["sport"], s["dport"]))]
    sent = {h: mine(h) for h in ("client", "server")}
    tuples = {wire(s)[:4] for h in sent for s in sent[h]}
    lost = replayed = 0
    for me, peer in (("client", "server"), ("server", "client")):
        out = Counter(wire(s) for s in sent[me])
        got = Counter(wire(s) for s in at[peer] if s["src"] == addr[me] and wire(s)[:4] in tuples)
        lost += sum((out - got).values())
        replayed += sum((got - out).values())
    return {"sent": len(sent["client"]) + len(sent["server"]), "lost": lost, "replayed": replayed}


def check_page(page: Path, want: dict[str, int], work: Path) -> None:
    html = page.read_text()
    assert "<script" not in html and "@import" not in html and "url(http" not in html
    loaded = browser.load(page, work, height=1600)
    assert not browser.blank(loaded.png), f"{page}: the screenshot is blank"
    assert loaded.requests == [], f"{page} asked for {loaded.requests}"
    dom = browser.parse(loaded.dom)
    assert dom.fetching == []
    from_ends = [s for s in dom.segs if s.get("data-sender") in ("client", "server")]
    assert len(from_ends) == want["sent"], (len(from_ends), want)
    assert sum(s.get("data-fate") == "lost" for s in dom.segs) == want["lost"]
    assert all("lost" in s["class"].split() for s in dom.segs if s.get("data-fate") == "lost")
    assert sum(s.get("data-sender") == "router" for s in dom.segs) == want["replayed"]
    assert dom.figures, "no figure"
    for fig in dom.figures:
        svg = fig["svg"]
        assert svg is not None and svg.get("role") == "img", fig
        title, desc = svg["aria-labelledby"].split()
        assert dom.texts.get(title, "").strip() and dom.texts.get(desc, "").strip(), svg
        assert fig["caption"].strip(), f"a figure of {page} has no caption"


def test_a_page_that_fetches_is_caught(tmp_path):
    """The checks can fail: a page that loads an image and a stylesheet from elsewhere is seen doing so."""
    page = tmp_path / "control.html"
    page.write_text('<!DOCTYPE html><p>x</p><img src="http://198.51.100.7/x.png">'
                    '<link rel="stylesheet" href="https://example.invalid/a.css">')
    loaded = browser.load(page, tmp_path / "b")
    assert sorted(loaded.requests) == ["http://198.51.100.7/x.png", "https://example.invalid/a.css"]
    assert len(browser.parse(loaded.dom).fetching) == 2


@pytest.mark.parametrize("name", [n for n in names() if n != "lossy-link"])
def test_report_html_of_each_scenario(catalog, name, tmp_path):
    run = catalog / name
    report = json.loads((run / "report.json").read_text())
    addr = {h: next(iter(v["addresses"].values())) for h, v in report["hosts"].items()}
    port, _ = focus(report)
    want = expected({h: read(run / f"{h}.pcap") for h in ("client", "server")}, addr, port)
    assert want["sent"] > 0
    check_page(run / "report.html", want, tmp_path)


def test_report_html_of_lossy_link_from_its_record(tmp_path):
    """lossy-link needs netem (absent here): its recorded run, its packets as the record holds them."""
    import gzip

    page = tmp_path / "lossy-link.html"
    done = subprocess.run([str(REPO / ".venv" / "bin" / "invoke"), "report", str(RECORDED), "--out", str(page)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with gzip.open(RECORDED, "rt") as f:
        doc = json.load(f)
    from lab.saved import from_record

    port, _ = focus(from_record(doc, RECORDED))
    assert port is not None
    at = {h: [{**s, "len": s["length"], "flags": _bits(s["flags"])} for s in doc["packets"][h]]
          for h in ("client", "server")}
    check_page(page, expected(at, doc["addresses"], port), tmp_path / "b")
    assert 'id="distribution-plot"' in page.read_text()


def _bits(flags: str) -> int:
    names_ = {"FIN": 1, "SYN": 2, "RST": 4, "PSH": 8, "ACK": 16, "URG": 32}
    return sum(names_[f] for f in flags.split(",") if f)
