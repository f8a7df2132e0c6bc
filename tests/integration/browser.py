"""A page loaded in headless Chromium (Debian's package) with the network off: its DOM, a
screenshot, and the requests the page itself made (Chromium's net log; the browser's own
background requests - its component updater - are told apart by their initiator)."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]


def chromium() -> str | None:
    return shutil.which("chromium")


@dataclass
class Loaded:
    dom: str
    png: Path
    requests: list[str]           # URLs the page asked for (none may be fetched: the network is off)


def load(page: Path, work: Path, height: int = 2400) -> Loaded:
    """*page* in a fresh profile, inside a network namespace of its own (only lo, down)."""
    work.mkdir(parents=True, exist_ok=True)
    png, netlog = work / "page.png", work / "netlog.json"
    argv = ["unshare", "--net", "--", chromium(), *FLAGS, f"--user-data-dir={work / 'profile'}",
            f"--window-size=1100,{height}", f"--log-net-log={netlog}", f"--screenshot={png}", "--dump-dom",
            page.resolve().as_uri()]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return Loaded(done.stdout, png, page_requests(netlog))


def page_requests(netlog: Path) -> list[str]:
    """The URL requests a page made: those with an origin as initiator ("null" for a file://
    page); the browser's own carry "not an origin"."""
    doc = json.loads(netlog.read_text())
    start = doc["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in doc["events"] if e["type"] == start and "url" in e.get("params", {})
            and e["params"].get("initiator") != "not an origin"]


def blank(png: Path) -> bool:
    """A screenshot with (almost) nothing drawn: under 1 % of its pixels not white."""
    from PIL import Image

    with Image.open(png) as im:
        grey = im.convert("L")
        hist = grey.histogram()
    return sum(hist[:250]) < 0.01 * sum(hist)


@dataclass
class Dom(HTMLParser):
    """What the tests count in a page: the ladder's arrows, the figures and their text
    alternatives, the elements that would fetch something."""

    segs: list[dict] = field(default_factory=list)
    figures: list[dict] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)       # id -> its text
    fetching: list[str] = field(default_factory=list)
    _stack: list[tuple[str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        HTMLParser.__init__(self)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "g" and "seg" in (a.get("class") or "").split():
            self.segs.append(a)
        if tag == "figure":
            self.figures.append({"svg": None, "caption": ""})
        inside = [t for t, _ in self._stack]
        if tag == "svg" and self.figures and self.figures[-1]["svg"] is None and "figure" in inside:
            self.figures[-1]["svg"] = a
        external = any(str(v).startswith(("http:", "https:", "//")) for k, v in a.items()
                       if k.endswith("href") or k == "src")
        if tag in ("script", "iframe", "object", "embed", "link") or (tag != "a" and external):
            self.fetching.append(f"<{tag} {a}>")
        if tag not in ("meta", "br", "path", "rect", "line", "circle", "polyline", "use", "stop"):
            self._stack.append((tag, a.get("id")))

    def handle_endtag(self, tag):
        while self._stack:
            t, _ = self._stack.pop()
            if t == tag:
                break

    def handle_data(self, data):
        for _tag, ident in self._stack:
            if ident:
                self.texts[ident] = self.texts.get(ident, "") + data
        if any(t == "figcaption" for t, _ in self._stack) and self.figures:
            self.figures[-1]["caption"] += data


def parse(html: str) -> Dom:
    dom = Dom()
    dom.feed(html)
    return dom
