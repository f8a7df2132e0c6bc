"""`invoke matrix` without a lab or a VM: the key values taken from reports, the rows that differ
between kernels, a VM runner that is missing, fails or answers, and the Markdown table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import scenarios
from lab.errors import EnvError, UsageError
from lab.matrix import cell_from_report, markdown, parse_kernels, rows, run_matrix


def report(name: str, kernel: str, checks: list[dict], counters: dict | None = None, verdict="pass") -> dict:
    return {"scenario": name, "kernel": kernel, "backend": "netns", "verdict": verdict, "error": None,
            "checks": checks, "counters": counters or {}, "artifacts": {"dir": "x"}}


def chk(name: str, passed: bool = True, **values) -> dict:
    return {"name": name, "citation": "c", "expected": "e", "observed": "o", "passed": passed, "values": values}


def lost_ack(kernel: str, times: list[float], due: list[int]) -> dict:
    return report("lost-ack", kernel, [
        chk("server-retransmits-fin", fin_count=len(times), fin_times=times,
            intervals_s=[round(b - a, 3) for a, b in zip(times, times[1:])]),
        chk("time-wait-timer-restarts", due_after_fin_ms=due),
        chk("time-wait-armed-for-60s", first_expires_ms=59996)],
        counters={"client": {"TcpExtTW": 1, "IpInReceives": 9}, "server": {"TcpRetransSegs": 4}})


def test_every_scenario_declares_what_the_matrix_shows():
    for name, sc in scenarios.catalog().items():
        assert sc.key_values, f"{name} declares no key values"
        assert len({kv.label for kv in sc.key_values}) == len(sc.key_values), name


def test_cell_takes_key_values_and_time_wait_counters():
    cell = cell_from_report(lost_ack("6.18", [100.0, 100.2, 100.41, 100.83], [60001, 60002, 60000]))
    assert cell["verdict"] == "pass" and cell["checks"] == "3/3"
    assert cell["values"]["FIN times (s from the first)"] == [0.0, 0.2, 0.41, 0.83]
    assert cell["values"]["server FINs (1 + retransmissions)"] == 4
    assert "TCPTimeWaitOverflow (no TIME-WAIT)" not in cell["values"]      # that check did not run
    assert cell["counters"] == {"client TW": 1, "server TcpRetransSegs": 4}  # IpInReceives: not ours


def test_cell_of_tw_assassination_skips_checks_without_the_value():
    r = report("tw-assassination", "6.18", [
        chk("time-wait-acks-it", ack_seq=1),
        chk("time-wait-assassinated", state_after=None, tcp_rfc1337=0, gone_after_rst_ms=10.5)])
    v = cell_from_report(r)["values"]
    assert v["TIME-WAIT after the RST"] == "gone (killed)" and v["tcp_rfc1337"] == 0


def test_rows_mark_differences_beyond_each_values_tolerance():
    m = {"kernels": ["host", "debian-12"], "scenarios": ["lost-ack"], "cells": {"lost-ack": {
        "host": cell_from_report(lost_ack("6.18", [0, 0.205, 0.415, 0.83], [60001, 60002, 60000])),
        "debian-12": cell_from_report(lost_ack("6.1", [0, 0.207, 0.42, 0.84, 1.66],
                                               [60003, 60001, 60004, 60002]))}}}
    got = {r["what"]: r for r in rows(m)}
    assert not got["verdict"]["differs"]
    assert got["server FINs (1 + retransmissions)"]["differs"]                  # 4 vs 5
    assert got["TIME-WAIT timer after each FIN (ms)"]["differs"]                # 3 vs 4 restarts
    assert not got["TIME-WAIT armed (ms)"]["differs"]
    m["cells"]["lost-ack"]["debian-12"] = cell_from_report(
        lost_ack("6.1", [0, 0.207, 0.42, 0.84], [60003, 60001, 60004]))
    got = {r["what"]: r for r in rows(m)}
    assert not got["FIN intervals (s)"]["differs"]                              # within 10 %
    assert not got["TIME-WAIT timer after each FIN (ms)"]["differs"]            # within 50 ms
    assert got["counters"]["cells"]["host"] == "client TW +1, server TcpRetransSegs +4"


def test_a_missing_vm_runner_is_an_error_column_not_a_result(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_vm(name, *a, **kw):
        if name == "lab.vm":
            raise ModuleNotFoundError("No module named 'lab.vm'")
        return real(name, *a, **kw)

    monkeypatch.setattr(builtins, "__import__", no_vm)
    m = run_matrix(["debian-12"], ["lost-ack", "time-wait-duration"], out=tmp_path)
    for name in ("lost-ack", "time-wait-duration"):
        cell = m["cells"][name]["debian-12"]
        assert cell["verdict"] == "error"
        assert "lab.vm cannot be imported" in cell["error"] and "\n" not in cell["error"]
    assert json.loads((tmp_path / "matrix.json").read_text())["cells"]["lost-ack"]["debian-12"]["verdict"] == "error"
    assert "error: no VM runner" in (tmp_path / "matrix.md").read_text()


class FakeVM:
    """Stands in for lab.vm: a whole column in one boot - writes the matrix.json the guest's
    `invoke matrix --kernel host` would leave (lost-ack passes, anything else fails), or fails."""

    def __init__(self, fail: Exception | None = None, leave: bool = True, release: str = "6.1.0-26-amd64") -> None:
        self.fail, self.leave, self.calls, self.release = fail, leave, [], release

    def run(self, kernel, twlab_args, artifacts, progress, docker=False, accel="auto", timeout_s=900, env=None):
        self.calls.append((kernel, list(twlab_args), Path(artifacts)))
        self.docker = getattr(self, "docker", []) + [docker]
        if self.fail:
            raise self.fail
        assert twlab_args[:3] == ["matrix", "--kernel", "host"]
        assert twlab_args[twlab_args.index("--out") + 1] == str(Path(artifacts).resolve())
        names = [twlab_args[i + 1] for i, a in enumerate(twlab_args) if a == "--scenario"]
        cells = {}
        for name in names:
            r = lost_ack(self.release, [0, 0.21, 0.42, 0.84, 1.68], [60001] * 4) if name == "lost-ack" \
                else report(name, self.release, [chk("x", False, v=1)], verdict="fail")
            cells[name] = {"host": cell_from_report(r)}
        if self.leave:
            (Path(artifacts) / "matrix.json").write_text(json.dumps(
                {"cells": cells, "releases": {"host": self.release}}))
            return 0, "ok"
        return 2, "twlab: something broke"


def test_vm_kernel_cells_come_from_one_boot_per_column(tmp_path):
    vm = FakeVM()
    m = run_matrix(["debian-12"], ["lost-ack", "tw-buckets"], out=tmp_path, vm=vm)
    assert [c[1] for c in vm.calls] == [["matrix", "--kernel", "host", "--backend", "netns", "--out",
                                         str(tmp_path / "debian-12"), "--json", "--family", "4",
                                         "--scenario", "lost-ack", "--scenario", "tw-buckets"]]
    assert m["cells"]["lost-ack"]["debian-12"]["verdict"] == "pass"
    assert m["cells"]["tw-buckets"]["debian-12"]["failed_checks"] == ["x"]
    assert m["releases"]["debian-12"] == "6.1.0-26-amd64"
    assert "debian-12 (6.1.0-26-amd64)" in markdown(m)


@pytest.mark.parametrize("vm, words", [(FakeVM(fail=EnvError("qemu-system-x86_64 not found")),
                                        "qemu-system-x86_64 not found"),
                                       (FakeVM(leave=False), "left no matrix.json (exit 2): twlab: something broke")])
def test_vm_failures_are_error_cells_with_the_reason(tmp_path, vm, words):
    m = run_matrix(["debian-12"], ["lost-ack"], out=tmp_path, vm=vm)
    cell = m["cells"]["lost-ack"]["debian-12"]
    assert cell["verdict"] == "error" and words in cell["error"]


def test_markdown_marks_rows_that_differ():
    m = {"kernels": ["host", "debian-12"], "releases": {"host": "6.18", "debian-12": "6.1"},
         "scenarios": ["lost-ack"], "cells": {"lost-ack": {
             "host": cell_from_report(lost_ack("6.18", [0, 0.2, 0.4, 0.8], [60001] * 3)),
             "debian-12": cell_from_report(lost_ack("6.1", [0, 0.2, 0.4, 0.8, 1.6], [60001] * 4))}}}
    m["rows"] = rows(m)
    md = markdown(m)
    assert "| scenario | observed | host (6.18) | debian-12 (6.1) | differs |" in md
    line = next(ln for ln in md.splitlines() if "server FINs" in ln)
    assert line.endswith("| **differs** |") and "**4**" in line and "**5**" in line
    assert next(ln for ln in md.splitlines() if "| verdict |" in ln).endswith("|  |")


def test_parse_kernels():
    assert parse_kernels(None) == ["host"]
    assert parse_kernels(["host", "debian-12,host"]) == ["host", "debian-12", "host"]
    for bad in ("../etc", "debian-99", "nonsense"):
        with pytest.raises(UsageError, match=f"--kernel '{bad}': .*; or host"):
            parse_kernels([bad])


def test_lossy_link_counts_differ_only_when_other_counters_move():
    def cell(counters):
        return {"verdict": "pass", "checks": "5/5", "values": {}, "counters": counters}
    m = {"kernels": ["debian-12", "debian-13"], "scenarios": ["lossy-link", "lost-ack"],
         "cells": {"lossy-link": {"debian-12": cell({"client TW": 100, "server TcpRetransSegs": 51}),
                                  "debian-13": cell({"client TW": 100, "server TcpRetransSegs": 49})},
                   "lost-ack": {"debian-12": cell({"server TcpRetransSegs": 4}),
                                "debian-13": cell({"server TcpRetransSegs": 5})}}}
    diff = {(r["scenario"], r["what"]): r["differs"] for r in rows(m)}
    assert diff[("lossy-link", "counters")] is False          # random counts of the same counters
    assert diff[("lost-ack", "counters")] is True              # a deterministic scenario: any change
    m["cells"]["lossy-link"]["debian-13"]["counters"]["client TCPTimeWaitOverflow"] = 100
    assert {(r["scenario"], r["what"]): r["differs"] for r in rows(m)}[("lossy-link", "counters")] is True


def test_backends_are_a_second_axis_one_column_per_kernel_and_backend(tmp_path):
    vm = FakeVM()
    m = run_matrix(["debian-12"], ["lost-ack"], out=tmp_path, vm=vm, backend=["netns", "docker"])
    assert m["columns"] == ["debian-12/netns", "debian-12/docker"] and m["backends"] == ["netns", "docker"]
    assert [c[1][:5] for c in vm.calls] == [["matrix", "--kernel", "host", "--backend", "netns"],
                                             ["matrix", "--kernel", "host", "--backend", "docker"]]
    assert vm.docker == [False, True]                     # the guest starts an engine only for docker
    assert [c[2] for c in vm.calls] == [tmp_path / "debian-12/netns", tmp_path / "debian-12/docker"]
    assert set(m["cells"]["lost-ack"]) == {"debian-12/netns", "debian-12/docker"}
    md = markdown(m)
    assert "| debian-12/netns (6.1.0-26-amd64) | debian-12/docker (6.1.0-26-amd64) |" in md


def test_one_backend_keeps_kernel_columns_and_auto_is_netns_in_a_vm(tmp_path):
    vm = FakeVM()
    m = run_matrix(["debian-12"], ["lost-ack"], out=tmp_path, vm=vm)
    assert m["columns"] == ["debian-12"] and vm.docker == [False]
    assert vm.calls[0][1][:5] == ["matrix", "--kernel", "host", "--backend", "netns"]


def test_an_unknown_backend_is_refused_before_any_run(tmp_path):
    from lab.matrix import parse_backends

    vm = FakeVM()
    with pytest.raises(UsageError, match="--backend 'podman': choose auto, docker or netns"):
        run_matrix(["debian-12"], ["lost-ack"], out=tmp_path, vm=vm, backend=["netns", "podman"])
    assert vm.calls == []
    assert parse_backends(["netns,docker", "netns"]) == ["netns", "docker"] and parse_backends(None) == ["auto"]


def test_a_host_cell_the_lab_rules_out_is_skipped_with_the_reason(tmp_path, monkeypatch):
    """A scenario the host's run rules out before anything runs - no netem, or sysctls its
    precondition() refuses (lab.errors.CannotShow) - is a skipped cell saying why, not an error."""
    from lab import runner
    from lab.errors import CannotShow, NetemMissing

    def ruled_out(name, **kw):
        if name == "lossy-link":
            raise NetemMissing(name, "netem is not available on this kernel")
        raise CannotShow(name, "tcp_max_tw_buckets=0 on the client: no TIME-WAIT can be made")
    monkeypatch.setattr(runner, "run_scenario", ruled_out)
    from lab import pool  # the pipeline's workers, run in this process
    monkeypatch.setattr(pool, "run_jobs", lambda fn, jobs, width, collect: [collect(j, fn(j)) for j in jobs])
    m = run_matrix(["host"], ["five-tuple", "lossy-link"], out=tmp_path, backend="netns")
    cells = {n: m["cells"][n]["host"] for n in ("five-tuple", "lossy-link")}
    assert cells["five-tuple"]["verdict"] == "skipped"
    assert cells["five-tuple"]["error"] == "tcp_max_tw_buckets=0 on the client: no TIME-WAIT can be made"
    assert cells["lossy-link"]["verdict"] == "skipped"
