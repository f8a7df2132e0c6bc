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
