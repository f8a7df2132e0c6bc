"""The page writer process (lab.html.writer): a page for a finished run, one answer line for a
directory it cannot draw, and nothing left running once closed."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from lab.html.writer import PageWriter

RUN = Path(__file__).resolve().parents[1] / "data" / "runs" / "lost-ack"


@pytest.fixture
def run_dir(tmp_path):
    d = tmp_path / "run"
    shutil.copytree(RUN, d)
    with gzip.open(d / "report.json.gz", "rt") as f:
        (d / "report.json").write_text(f.read())
    return d


def test_the_writer_draws_a_finished_run_and_ends_when_closed(run_dir):
    writer = PageWriter()
    proc = writer.proc
    try:
        page = writer.write(run_dir)
        assert page == run_dir / "report.html"
        html = page.read_text()
        assert html.lstrip().lower().startswith("<!doctype html") and "<svg" in html
    finally:
        writer.close()
    assert proc.returncode == 0 and writer.proc is None


def test_a_directory_without_a_run_is_one_error_and_the_writer_goes_on(tmp_path, run_dir):
    writer = PageWriter()
    try:
        with pytest.raises(RuntimeError, match="no such run"):
            writer.write(tmp_path / "nothing")
        assert writer.write(run_dir).is_file()            # still serving
    finally:
        writer.close()


def test_closing_twice_or_unused_is_harmless():
    writer = PageWriter()
    writer.close()
    writer.close()
    with pytest.raises(RuntimeError, match="not running"):
        writer.write(Path("/nonexistent"))


def test_a_relative_directory_is_the_callers(run_dir, monkeypatch):
    """The writer runs from the package's directory: a run's relative path is resolved first."""
    monkeypatch.chdir(run_dir.parent)
    writer = PageWriter()
    try:
        assert writer.write(Path(run_dir.name)) == run_dir / "report.html"
    finally:
        writer.close()


def _appears(path: Path, within_s: float = 60.0) -> bool:
    import time

    end = time.monotonic() + within_s
    while time.monotonic() < end:
        if path.is_file():
            return True
        time.sleep(0.05)
    return False


def test_a_detached_writer_draws_after_it_is_handed_the_run_and_nobody_waits(run_dir):
    """An interactive run hands its directory over and ends; the page comes after, whole."""
    writer = PageWriter(detached=True)
    proc = writer.proc
    assert not (run_dir / "report.html").exists()
    writer.hand_off(run_dir)
    assert writer.proc is None
    writer.close()                                        # nothing left to wait for
    assert _appears(run_dir / "report.html")
    assert proc.wait(timeout=30) == 0
    assert "<svg" in (run_dir / "report.html").read_text()


def test_a_detached_writer_that_cannot_draw_says_so_on_stderr(tmp_path, capfd):
    writer = PageWriter(detached=True)
    proc = writer.proc
    writer.hand_off(tmp_path / "nothing")
    assert proc.wait(timeout=60) == 0
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "could not write" in err[0] and "invoke report" in err[0], err


def test_the_page_is_detached_only_for_a_terminal(monkeypatch):
    from lab import tasks

    monkeypatch.delenv("TWLAB_PAGE", raising=False)
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert tasks._page_mode(json=False) == "detach"
    assert tasks._page_mode(json=True) == "wait"
    monkeypatch.setenv("TWLAB_PAGE", "wait")
    assert tasks._page_mode(json=False) == "wait"
    monkeypatch.delenv("TWLAB_PAGE")
    monkeypatch.setattr("sys.stdout.isatty", lambda: False)
    assert tasks._page_mode(json=False) == "wait"


def test_pages_after_a_vm_are_drawn_by_a_writer_started_before_it(tmp_path, run_dir, monkeypatch):
    """lab.saved.pages_drawn_after: the writer runs (loading matplotlib) during the block, draws
    each page missing under the base after it, and is gone; a block that fails draws nothing."""
    from lab import saved
    from lab.html import writer as writer_mod

    started = []

    class Counting(PageWriter):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            started.append(self)

    monkeypatch.setattr(writer_mod, "PageWriter", Counting)
    with saved.pages_drawn_after(run_dir.parent):
        assert started and started[0].proc.poll() is None and not (run_dir / "report.html").exists()
    assert (run_dir / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert started[0].proc is None                                   # closed
    (run_dir / "report.html").unlink()
    with pytest.raises(RuntimeError), saved.pages_drawn_after(run_dir.parent):
        raise RuntimeError("the VM did not boot")
    assert not (run_dir / "report.html").exists() and started[1].proc is None
