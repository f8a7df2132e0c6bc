"""lab.vm.guest: a matrix column runs in the guest without Invoke or site, for exactly the
arguments lab.vm.column passes; anything else goes through Invoke."""

from __future__ import annotations

import sys

import pytest

from lab.vm import guest

COLUMN = ["matrix", "--kernel", "host", "--backend", "netns", "--out", "/tmp/m", "--json", "--family", "both",
          "--scenario", "lost-ack", "--scenario", "tw-reopen"]


def test_a_column_starts_python_without_site_and_finds_the_venv_by_hand():
    argv = guest.command("/r/.venv/bin/python", COLUMN)
    assert argv[:3] == ["/r/.venv/bin/python", "-S", "-c"] and argv[4:] == COLUMN
    assert "site-packages" in argv[3] and "from lab.vm.guest import main" in argv[3]


def test_a_column_with_its_stacks_runs_without_invoke_too(monkeypatch):
    from lab import matrix, quickexit

    got = {}
    monkeypatch.setattr(matrix, "run_matrix", lambda *a, **k: got.update(k) or {"cells": {}})
    monkeypatch.setattr(quickexit, "leave", _leave)
    args = [*COLUMN, "--stack", "client=gvisor;server=gvisor"]
    assert guest.command("/r/p", args) is not None
    with pytest.raises(SystemExit):
        guest.main(args)
    assert got["stacks"] == ["client=gvisor;server=gvisor"]


@pytest.mark.parametrize("args", [
    ["run", "lost-ack", "--backend", "netns"],                                  # not a column
    ["check", "--backend", "netns", "--artifacts", "/tmp/c"],
    ["matrix", "--kernel", "debian-12", "--backend", "netns", "--out", "/o", "--scenario", "x"],
    [*COLUMN, "--shard", "1/2"],                                                 # a flag it does not take
    ["matrix", "--kernel", "host", "--backend", "auto", "--out", "/o", "--scenario", "x"],
    ["matrix", "--kernel", "host", "--out", "/o", "--scenario", "x"],           # no backend
])
def test_anything_else_goes_through_invoke(args):
    assert guest.command("/r/p", args) is None


def _leave(code=0, message=None):
    """lab.quickexit.leave ends the process; here it ends the test's call with what it was given."""
    raise SystemExit((code, message))


def test_the_column_runs_the_matrix_as_invoke_matrix_does(monkeypatch, capsys):
    from lab import matrix, quickexit

    calls = []

    def fake_run_matrix(kernels, names, out, backend, progress, families, stacks):
        calls.append((kernels, names, str(out), backend, families, stacks))
        progress("lost-ack on host: pass")
        return {"cells": {"lost-ack": {"host": {"verdict": "pass"}}, "tw-reopen": {"host": {"verdict": "fail"}}}}

    monkeypatch.setattr(matrix, "run_matrix", fake_run_matrix)
    monkeypatch.setattr(quickexit, "leave", _leave)
    monkeypatch.setattr(sys, "argv", ["-c", *COLUMN])
    with pytest.raises(SystemExit) as ended:
        guest.main()
    assert ended.value.code == (1, None)                           # a failed cell: exit 1, as invoke's
    assert calls == [(["host"], ["lost-ack", "tw-reopen"], "/tmp/m", ["netns"], (4, 6), None)]
    out, err = capsys.readouterr()
    assert '"verdict": "fail"' in out and "lost-ack on host: pass" in err


def test_a_lab_error_is_one_line_and_its_exit_code(monkeypatch):
    from lab import matrix, quickexit
    from lab.errors import EnvError

    def broken(*a, **k):
        raise EnvError("tcpdump is not installed; run scripts/setup")

    monkeypatch.setattr(matrix, "run_matrix", broken)
    monkeypatch.setattr(quickexit, "leave", _leave)
    with pytest.raises(SystemExit) as ended:
        guest.main(COLUMN)
    assert ended.value.code == (2, "twlab: tcpdump is not installed; run scripts/setup")


def test_inside_a_vm_no_page_is_drawn_and_no_pcap_read(tmp_path, monkeypatch):
    """The host draws the guest's pages after the VM (lab.vm.commands, lab.matrix.finish there);
    the guest does not even read the runs for them."""
    from lab import saved

    run = tmp_path / "host" / "lost-ack"
    run.mkdir(parents=True)
    (run / "report.json").write_text("{}")
    monkeypatch.setattr(saved, "html_for_dir", lambda *a, **k: pytest.fail("read a run for a page"))
    monkeypatch.setenv("TWLAB_IN_VM", "1")
    assert saved.pages_for(tmp_path) == [] and not (run / "report.html").exists()

