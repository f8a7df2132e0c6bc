"""A saved run, read back: for `invoke show` (the terminal view again) and `invoke report` (its
report.html again), and the report.html every run writes.

A run is a directory holding report.json and its pcaps, or a report.json itself. A recorded
evidence file (tests/data/scenarios/*.json[.gz]: what a run's report.json held of its evidence,
without its checks or hosts) is read too: it is judged again by its scenario, as the unit tests
judge it, and the page says so.

    report, where = load_run("artifacts/20260101-120000-lost-ack")
    write_html(where, report)                                      # where/report.html
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import UsageError

if TYPE_CHECKING:
    from .html.writer import PageWriter

__all__ = ["load_run", "from_record", "show_saved", "rewrite", "page_for", "with_pcaps", "write_html",
           "write_html_quietly", "html_for_dir", "index_quietly", "pages_for", "pages_drawn_after"]


def load_run(path: Path | str) -> tuple[dict[str, Any], Path | None]:
    """The run's report (a recorded evidence file judged again) and the directory holding its
    captures (None for a recorded file, which keeps its packets decoded). Bad input: UsageError."""
    p = Path(path)
    file = p / "report.json" if p.is_dir() else p
    if not file.is_file():
        raise UsageError(f"{path}: no such run: give a run's artifacts directory (with report.json), a "
                         "report.json, or a recorded evidence file (.json or .json.gz)" if not p.is_dir() else
                         f"{path} has no report.json: give the artifacts directory of a finished run")
    try:
        opener = _gzip_open() if file.suffix == ".gz" else open
        with opener(file, "rt") as f:
            doc = json.load(f)
    except (OSError, ValueError, EOFError) as exc:
        raise UsageError(f"{file}: not readable as JSON ({exc})") from None
    if not isinstance(doc, dict) or "scenario" not in doc:
        raise UsageError(f"{file}: not a twlab report.json or recorded run (no scenario in it)")
    if "checks" in doc and "hosts" in doc:
        return doc, file.parent
    if {"packets", "timeline", "addresses"} <= doc.keys():
        return from_record(doc, file), None
    raise UsageError(f"{file}: not a twlab report.json or recorded run (no checks, no packets)")


def from_record(doc: dict[str, Any], source: Path | str) -> dict[str, Any]:
    """A report made from a recorded evidence file: its evidence, judged again by its scenario."""
    from scenarios import get

    from .evidence import Evidence
    from .verdict import verdict

    sc = get(doc["scenario"])
    ev = Evidence.from_record(doc)
    checks = sc.judge(ev)
    return {
        "schema": 2, "scenario": sc.name, "port": doc.get("port") or sc.port, "intent": sc.intent_in(ev.sysctls),
        "backend": doc.get("backend"), "kernel": doc.get("kernel"), "kernel_hz": doc.get("hz"),
        "hosts": {h: {"addresses": {"recorded": a}, "sysctls": ev.sysctls.get(h, {})}
                  for h, a in doc["addresses"].items()},
        "verdict": verdict(checks), "error": None, "options": doc.get("options", {}),
        "observation": {"problems": [], "sampler": doc.get("sampler")},
        "checks": [c.to_json() for c in checks], "counters": doc.get("counters", {}),
        "captures": doc.get("captures", {}), "faults": doc.get("faults", {}), "facts": doc.get("facts", {}),
        "timeline": doc["timeline"], "timer_samples": doc.get("timer_samples") or {}, "packets": doc["packets"],
        "artifacts": {"dir": str(source), "pcaps": []},
        "source_note": f"A recorded evidence file ({source}), judged again by this version of twlab: its checks "
                       "are today's, its packets, states and timers those recorded; no pcap is kept with it.",
    }


def show_saved(run: Path | str) -> None:
    """`invoke show`: the saved run in the terminal, as `invoke run` printed it."""
    from .report import show

    show(load_run(run)[0])


def rewrite(run: Path | str, out: Path | str | None = None) -> Path:
    """`invoke report`: the saved run's report.html written again, from its report.json and its
    pcaps (each capture read again where its pcap is there); *out* or page_for()'s place."""
    from .artifacts import check_output

    report, where = load_run(run)
    out = Path(out) if out else page_for(Path(run), where)
    check_output(out, "--out")
    return write_html(where, with_pcaps(report, where) if where is not None else report, out)


def page_for(run: Path, where: Path | None) -> Path:
    """Where `invoke report` writes by default: report.html in the run's directory; for a recorded
    evidence file NAME.json[.gz], NAME.html beside it."""
    if where is not None:
        return where / "report.html"
    name = run.name
    stem = name[:-len(".json.gz")] if name.endswith(".json.gz") else name.removesuffix(".json")
    return run.with_name(stem + ".html")


def with_pcaps(report: dict[str, Any], directory: Path) -> dict[str, Any]:
    """*report* with each capture's packets read again from its pcap in *directory*, where the
    pcap is there (report.json holds them decoded; the pcaps are what was captured)."""
    from .packets import read_pcap

    packets = dict(report.get("packets") or {})
    for name in list(packets) + [n for n in (report.get("capture_points") or {}) if n not in packets]:
        pcap = directory / f"{name}.pcap"
        if pcap.is_file():
            packets[name] = [s.to_json() for s in read_pcap(pcap)]
    return {**report, "packets": packets}


def write_html(directory: Path, report: dict[str, Any], out: Path | None = None) -> Path:
    """report.html for this run, in *directory* (or at *out*)."""
    from .html import write_report_html

    return write_report_html(directory, report, out)


def write_html_quietly(directory: Path, report: dict[str, Any], progress: Callable[[str], None],
                       writer: PageWriter | None = None) -> Path | None:
    """The report.html a run writes beside its report.json (by *writer*, the run's page writer
    process, when it has one: lab.html.writer). It is a view: when it cannot be written the run's
    verdict stands, and one line says why. Inside a VM the host writes it afterwards (matplotlib
    under qemu's emulation takes tens of seconds)."""
    if os.environ.get("TWLAB_IN_VM"):
        return None
    try:
        return writer.write(directory) if writer is not None else write_html(directory, report)
    except Exception as exc:            # noqa: BLE001 - the run's results are kept whatever the view does
        progress(f"twlab: could not write {directory}/report.html ({type(exc).__name__}: {exc}); "
                 "`invoke report DIR` tries again")
        return None


def pages_for(base: Path | str, progress: Callable[[str], None] = lambda s: None,
              writer: PageWriter | None = None) -> list[Path]:
    """report.html for every run under *base* that has a report.json and no page yet: the runs
    made inside a VM, whose guest leaves the page to this side (inside one: none, at once; reading
    the pcaps for a page it would not draw took 0.7 s of a column under TCG). By *writer* when
    given (pages_drawn_after)."""
    if os.environ.get("TWLAB_IN_VM"):
        return []
    made = []
    for path in sorted(Path(base).rglob("report.json")):
        if not (path.parent / "report.html").exists():
            made.append(write_html_quietly(path.parent, {}, progress, writer) if writer is not None
                        else html_for_dir(path.parent, progress))
    return [p for p in made if p is not None]


@contextlib.contextmanager
def pages_drawn_after(base: Path | str, progress: Callable[[str], None] = lambda s: None) -> Iterator[None]:
    """The pages of the runs under *base* drawn when the block ends without an exception (a VM's
    runs: lab.vm), by a page writer that loads matplotlib while the block runs: of the 0.6 s a
    page took after a VM here, 0.4 s was that import."""
    from .html.writer import PageWriter

    try:
        writer: PageWriter | None = PageWriter()
    except OSError as exc:
        progress(f"twlab: no page writer ({exc}); the pages are drawn after the VM")
        writer = None
    try:
        yield
        pages_for(base, progress, writer)
    finally:
        if writer is not None:
            writer.close()


def html_for_dir(directory: Path, progress: Callable[[str], None] = lambda s: None) -> Path | None:
    """report.html for the run in *directory*, from its report.json and pcaps."""
    try:
        report, where = load_run(directory)
    except UsageError as exc:
        progress(f"twlab: no report.html for {directory}: {exc}")
        return None
    return write_html_quietly(where or Path(directory), with_pcaps(report, where or Path(directory)), progress)


def index_quietly(base: Path | str, title: str, results: list[dict] = (), matrix: dict | None = None,
                  progress: Callable[[str], None] = lambda s: None) -> Path | None:
    """BASE/index.html of a batch (lab.html.index), listing too the *results* (Result.to_json())
    that left no report.json (skipped, errors). A view: a failure to write it is one line."""
    from .html.index import write_index

    base = Path(base)
    missing = [{"run": Path(r.get("artifacts", "")).name, "scenario": r.get("scenario"), "verdict": r.get("verdict"),
                "why": r.get("reason") or r.get("error") or ""} for r in results
               if not (Path(r.get("artifacts", "")) / "report.json").is_file()]
    try:
        return write_index(base, title, matrix=matrix, skipped=missing)
    except Exception as exc:            # noqa: BLE001 - the batch's results are kept whatever the view does
        progress(f"twlab: could not write {base}/index.html ({type(exc).__name__}: {exc})")
        return None


def _gzip_open():
    """gzip.open, imported only for a recorded run (a live run's report.json is plain)."""
    import gzip

    return gzip.open
