"""report.html: a run's page, self-contained (inline SVG and CSS, no script, nothing fetched), beside
its report.json and pcaps; and the index pages of `run all`, `check`, `stability` and `matrix`.

    path = write_report_html(Path("artifacts/..."), report)       # -> .../report.html

The ladder is the project's own SVG (lab.html.ladder, from lab.ladder's rows, the terminal's);
the plots come from matplotlib's SVG backend (lab.html.plots), imported only here.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["write_report_html", "REPORT_HTML"]

REPORT_HTML = "report.html"


def write_report_html(directory: Path | str | None, report: dict, out: Path | str | None = None) -> Path:
    """Write DIRECTORY/report.html (or *out*) from *report*, whole or not at all (written beside,
    renamed into place; 0600 like every file a run writes). The files in DIRECTORY are linked
    (the pcaps, report.json) when the page is written beside them."""
    from ..artifacts import ensure_dir, write_text
    from .page import render

    path = Path(out) if out else Path(directory) / REPORT_HTML
    here = directory is not None and Path(directory).is_dir() and path.parent.resolve() == Path(directory).resolve()
    present = {p.name for p in Path(directory).iterdir() if p.is_file()} if here else set()
    tmp = ensure_dir(path.parent) / f".{path.name}.tmp"
    try:
        write_text(tmp, render(report, present))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
