"""The index page of a batch (`run all`, `run --repeat`, `check`, `stability`, `matrix`): every
run under its directory with its verdict, linked to its report.html; the matrix as its table,
each cell linked to that run's page.

    write_index(base, "run all")                  # base/index.html
    write_index(base, "matrix", matrix=m)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..verdict import outcome_of
from .style import CSS
from .svg import el, esc

__all__ = ["write_index", "index_html"]


def write_index(base: Path | str, title: str, matrix: dict | None = None, skipped: list[dict] = ()) -> Path:
    """BASE/index.html, whole or not at all (0600). *skipped*: runs that left no report.json
    ({"run", "scenario", "verdict", "why"}), listed with their reason."""
    from ..artifacts import write_text

    base = Path(base)
    path, tmp = base / "index.html", base / ".index.html.tmp"
    try:
        write_text(tmp, index_html(base, title, matrix, list(skipped)))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def index_html(base: Path, title: str, matrix: dict | None, skipped: list[dict]) -> str:
    body = [el("h1", esc(f"twlab {title}")), el("p", esc(f"{base}"), class_="intent")]
    if matrix is not None:
        body.append(el("section", el("h2", "Scenario x kernel") + _matrix_table(base, matrix)))
    body.append(el("section", el("h2", "Runs") + _runs_table(base, skipped)))
    others = [n for n in ("summary.json", "check.json", "stability.json", "matrix.json", "matrix.md")
              if (base / n).is_file()]
    if others:
        body.append(el("p", "Also here: " + ", ".join(el("a", esc(n), href=n) for n in others)))
    head = '<meta charset="utf-8">' + el("title", esc(f"twlab {title}")) + el("style", CSS)
    return "<!DOCTYPE html>\n" + el("html", el("head", head) + el("body", "".join(body)), lang="en") + "\n"


def _runs_table(base: Path, skipped: list[dict]) -> str:
    rows = []
    for path in sorted(base.rglob("report.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rel = path.parent.relative_to(base).as_posix()
        page = path.parent / "report.html"
        link = el("a", esc(rel or "."), href=f"{rel}/report.html" if rel else "report.html") if page.is_file() \
            else el("a", esc(rel or "."), href=f"{rel}/report.json" if rel else "report.json")
        checks = report.get("checks") or []
        failed = [c["name"] for c in checks if outcome_of(c) in ("fail", "inconclusive")]
        verdict = str(report.get("verdict"))
        rows.append(el("tr", el("td", link) + el("td", esc(report.get("scenario")))
                       + el("td", esc(verdict), class_=f"outcome {_cls(verdict)}")
                       + el("td", esc(f"{sum(outcome_of(c) == 'pass' for c in checks)}/{len(checks)}"
                                      + (f" (not passed: {', '.join(failed)})" if failed else "")))
                       + el("td", esc(f"{report.get('backend')}, {report.get('kernel')}"))))
    for s in skipped:
        rows.append(el("tr", el("td", esc(s.get("run", ""))) + el("td", esc(s.get("scenario", "")))
                       + el("td", esc(s.get("verdict", "")), class_="outcome na")
                       + el("td", esc(s.get("why", "")), colspan="2")))
    if not rows:
        return el("p", "No run left a report.json here.")
    head = el("tr", "".join(el("th", h) for h in ("run", "scenario", "verdict", "checks passed", "backend, kernel")))
    return el("table", el("thead", head) + el("tbody", "".join(rows)))


def _matrix_table(base: Path, m: dict) -> str:
    """matrix.md's table: a row per scenario and observed value, a column per kernel (x backend);
    each verdict cell linked to that run's page."""
    cols = m.get("columns") or m["kernels"]
    head = el("tr", el("th", "scenario") + el("th", "observed") + "".join(
        el("th", esc(f"{c} ({m.get('releases', {}).get(c)})" if m.get("releases", {}).get(c) not in (None, c) else c))
        for c in cols) + el("th", "differs"))
    rows = []
    for r in m.get("rows", []):
        cells = []
        for c in cols:
            text = esc(r["cells"].get(c, "-"))
            page = base / c / r["scenario"] / "report.html"
            if r["what"] == "verdict" and page.is_file():
                text = el("a", text, href=f"{c}/{r['scenario']}/report.html")
            cells.append(el("td", text, class_=f"outcome {_cls(r['cells'].get(c, '').split(' ')[0])}"
                            if r["what"] == "verdict" else None))
        rows.append(el("tr", el("td", esc(r["scenario"])) + el("td", esc(r["what"])) + "".join(cells)
                       + el("td", "<b>differs</b>" if r["differs"] else "")))
    return el("table", el("thead", head) + el("tbody", "".join(rows)), class_="matrix")


def _cls(verdict: str) -> str:
    return {"pass": "pass", "fail": "fail", "error": "inconclusive", "skipped": "na",
            "skipped:": "na", "error:": "inconclusive"}.get(verdict, "")
