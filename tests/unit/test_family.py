"""--family 4|6|both without a lab: the values and their refusals, result names (SCENARIO/v6), the
per-instance IPv6 prefixes, the Host's addresses by family, why a host cannot carry IPv6, the
per-family counters, and the family carried end to end through jobs, results, check summaries,
JUnit, required behaviours, the matrix's rows, stability and the VM's command line."""

from __future__ import annotations

import ipaddress
import json
import random
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from lab.backends.base import Host
from lab.backends.prefixes import pick_v4, pick_v6, prefix_text, variables
from lab.errors import EnvError, NoIPv6, UsageError
from lab.family import check_family, ipv6_missing, label, one_family, parse_family, require_ipv6, split_label
from lab.pipeline import Job, Result

IP6 = ipaddress.IPv6Address


# -- the flag ----------------------------------------------------------------------------------

def test_family_values():
    assert parse_family("4") == (4,) and parse_family(6) == (6,) and parse_family("both") == (4, 6)
    assert parse_family(" 6 ") == (6,)


@pytest.mark.parametrize("bad", ["5", "v6x", "", "v6", "ipv6", "4,6", "BOTH"])
def test_a_bad_family_is_one_line_naming_the_choices(bad):
    with pytest.raises(UsageError) as info:
        parse_family(bad)
    msg = str(info.value)
    assert "\n" not in msg and f"--family {bad!r}" in msg and "choose 4" in msg and "both" in msg


def test_one_family_refuses_both_where_one_runs_at_a_time():
    assert one_family("6", "`invoke vm`", "x") == 6
    with pytest.raises(UsageError, match=r"`invoke vm` runs one address family at a time; give --family 4 or "
                                         r"--family 6 \(matrix runs both\)"):
        one_family("both", "`invoke vm`", "matrix runs both")
    with pytest.raises(UsageError, match="--family '7'"):
        one_family("7", "--repeat", "")


def test_a_run_takes_4_or_6():
    assert check_family(4) == 4 and check_family(6) == 6
    for bad in (5, "6", None):
        with pytest.raises(UsageError, match="a run uses 4"):
            check_family(bad)


def test_result_names():
    assert label("lost-ack", 4) == "lost-ack" and label("lost-ack", 6) == "lost-ack/v6"
    assert split_label("lost-ack/v6") == ("lost-ack", 6) and split_label("lost-ack") == ("lost-ack", 4)
    assert split_label("a/vx") == ("a/vx", 4)


# -- prefixes per instance ----------------------------------------------------------------------

def test_ipv6_prefixes_are_unique_local_64s_of_one_random_48():
    rng = random.Random(7)
    left, right = pick_v6(2, [], rng)
    assert left.prefixlen == right.prefixlen == 64
    assert left.subnet_of(ipaddress.IPv6Network("fd00::/8")) and right.subnet_of(ipaddress.IPv6Network("fd00::/8"))
    assert left.supernet(16) == right.supernet(16)                         # one /48 per instance
    assert int(left.network_address) >> 64 & 0xFFFF == 1 and int(right.network_address) >> 64 & 0xFFFF == 2
    draws = {pick_v6(1, [], random.Random(seed))[0].supernet(16) for seed in range(200)}
    assert len(draws) == 200                                               # 40 random bits each


def test_ipv6_prefixes_avoid_what_this_machine_uses():
    rng = random.Random(1)
    first = pick_v6(2, [], random.Random(1))[0].supernet(16)
    got = pick_v6(2, [first, ipaddress.ip_network("fd00::/64")], rng)        # the same draw taken: next one
    assert all(not g.overlaps(first) for g in got)
    with pytest.raises(EnvError, match="no free unique local /48"):
        pick_v6(1, [ipaddress.ip_network("fd00::/8")], rng, tries=3)


def test_compose_variables_of_both_families():
    env = variables(["left", "right"], [ipaddress.ip_network("10.77.0.0/17")], random.Random(3))
    assert set(env) == {"TWLAB_LEFT", "TWLAB_RIGHT", "TWLAB_LEFT6", "TWLAB_RIGHT6"}
    assert all(ipaddress.ip_network(f"{env[k]}.0/24").subnet_of(ipaddress.ip_network("10.77.128.0/17"))
               for k in ("TWLAB_LEFT", "TWLAB_RIGHT"))
    for k in ("TWLAB_LEFT6", "TWLAB_RIGHT6"):
        assert "::" not in env[k] and len(env[k].split(":")) == 4
        assert ipaddress.ip_network(f"{env[k]}::/64").prefixlen == 64
    assert prefix_text(ipaddress.ip_network("fd00:0:a::/64")) == "fd00:0:a:0"
    assert prefix_text(ipaddress.ip_network("10.77.3.0/24")) == "10.77.3"
    assert len(pick_v4(2, [], random.Random(0))) == 2


# -- Host ---------------------------------------------------------------------------------------

def host(family: int = 4) -> Host:
    return Host(name="router", spec=None, nspath="/nonexistent", exec_prefix=[], python=[],
                addresses={"left": ipaddress.IPv4Address("10.77.1.2"), "right": ipaddress.IPv4Address("10.77.2.2")},
                addresses6={"left": IP6("fd00:1::2"), "right": IP6("fd00:2::2")}, family=family)


def test_a_hosts_address_is_in_its_runs_family():
    assert str(host(4).address) == "10.77.1.2" and str(host(6).address) == "fd00:1::2"
    assert str(host(4).addr(6)) == "fd00:1::2" and str(host(6).addr(4)) == "10.77.1.2"
    assert host(6).addrs() == host(6).addresses6 and host(6).addrs(4) == host(6).addresses
    bare = Host(name="c", spec=None, nspath="/x", exec_prefix=[], python=[],
                addresses={"left": ipaddress.IPv4Address("10.0.0.1")})
    with pytest.raises(LookupError, match="c has no IPv6 address"):
        bare.addr(6)


# -- a host that cannot carry IPv6 --------------------------------------------------------------

def msg(addr: str) -> dict:
    return {"family": 10, "IFA_ADDRESS": addr}


def test_why_a_host_cannot_carry_ipv6():
    want = {"left": IP6("fd00:1::10")}
    ok = ipv6_missing("client", want, [msg("fd00:1::10"), msg("fe80::1")],
                      {"net.ipv6.conf.all.disable_ipv6": "0", "net.ipv6.conf.eth0.disable_ipv6": "0"})
    assert ok == ""
    off = ipv6_missing("client", want, [], {"net.ipv6.conf.all.disable_ipv6": "1"})
    assert off == "client has IPv6 disabled (net.ipv6.conf.all.disable_ipv6 = 1)"
    dev = ipv6_missing("client", want, [], {"net.ipv6.conf.all.disable_ipv6": "0",
                                            "net.ipv6.conf.eth0.disable_ipv6": "1"})
    assert dev == "client has IPv6 disabled (net.ipv6.conf.eth0.disable_ipv6 = 1)"
    gone = ipv6_missing("client", want, [msg("fd00:1::11")], {"net.ipv6.conf.all.disable_ipv6": "0"})
    assert gone == "client lost its IPv6 address fd00:1::10 (left)"


def test_no_ipv6_before_bring_up_is_a_skip_naming_why():
    require_ipv6("lost-ack/v6", True, "")
    with pytest.raises(NoIPv6) as info:
        require_ipv6("lost-ack/v6", False, "")
    assert "this kernel has no IPv6" in str(info.value) and info.value.exit_code == 2
    assert str(info.value).startswith("lost-ack/v6 cannot run over IPv6: ")
    assert str(info.value).endswith("; run it with --family 4")
    with pytest.raises(NoIPv6, match="has no IPv6 subnet"):
        require_ipv6("lost-ack/v6", True, "network 'left' of x has no IPv6 subnet (ipam.config)")


# -- per-family counters ------------------------------------------------------------------------

def test_snmp6_and_sockstat6_are_read_per_family():
    from lab.nsops import _parse_lines, _parse_sockstat

    snmp6 = "Ip6InReceives                   \t12\nIcmp6OutMsgs       \t3\nIp6InOctets\t-1\nbad line here\n"
    assert _parse_lines(snmp6) == {"Ip6InReceives": 12, "Icmp6OutMsgs": 3, "Ip6InOctets": -1}
    assert _parse_sockstat("TCP6: inuse 2\nUDP6: inuse 0\n", "TCP6:", "SockstatTcp6") == {"SockstatTcp6Inuse": 2}
    assert _parse_sockstat("TCP: inuse 1 orphan 0 tw 3 alloc 4 mem 1\n", "TCP:", "SockstatTcp")["SockstatTcpTw"] == 3


# -- jobs, results, summaries -------------------------------------------------------------------

def test_jobs_run_each_scenario_once_per_family(tmp_path):
    from lab.runner import jobs_for

    jobs = jobs_for(["lost-ack", "tw-buckets"], tmp_path, families=(4, 6))
    assert [(j.scenario, j.family, j.name) for j in jobs] == [
        ("lost-ack", 4, "lost-ack"), ("lost-ack", 6, "lost-ack/v6"),
        ("tw-buckets", 4, "tw-buckets"), ("tw-buckets", 6, "tw-buckets/v6")]
    assert [j.artifacts.name for j in jobs] == ["lost-ack", "lost-ack-v6", "tw-buckets", "tw-buckets-v6"]
    assert [j.run for j in jobs] == [1, 2, 3, 4]
    with pytest.raises(UsageError, match="--repeat runs one address family"):
        jobs_for(["lost-ack"], tmp_path, repeat=3, families=(4, 6))
    with pytest.raises(UsageError, match="a run uses 4"):
        jobs_for(["lost-ack"], tmp_path, families=(5,))
    assert jobs_for(["lost-ack"], tmp_path)[0].family == 4                 # the default


def test_a_result_is_named_by_its_family():
    r = Result(run=1, scenario="lost-ack", verdict="pass", exit_code=0, artifacts="a", family=6)
    assert r.name == "lost-ack/v6"
    d = r.to_json()
    assert d["name"] == "lost-ack/v6" and d["family"] == 6 and d["scenario"] == "lost-ack"
    assert Result(run=1, scenario="lost-ack", verdict="pass", exit_code=0, artifacts="a").to_json()["family"] == 4


def test_run_job_passes_the_family_and_a_skip_keeps_it(monkeypatch, tmp_path):
    from lab import runner
    from lab.pipeline import run_job

    seen = {}

    def fake(name, **kw):
        seen.update(kw)
        raise NoIPv6(name, "client has IPv6 disabled (net.ipv6.conf.all.disable_ipv6 = 1)")
    monkeypatch.setattr(runner, "run_scenario", fake)
    res = run_job(Job(run=1, scenario="lost-ack", artifacts=tmp_path, family=6))
    assert seen["family"] == 6
    assert (res.verdict, res.exit_code, res.name) == ("skipped", 2, "lost-ack/v6")
    assert res.skip["kind"] == "NoIPv6" and "IPv6 disabled" in res.skip["why"]
    again = runner.skipped(res)
    assert isinstance(again, NoIPv6) and str(again).startswith("lost-ack/v6 cannot run over IPv6")


def fake_report(job: Job) -> dict:
    return {"scenario": job.scenario, "family": job.family, "verdict": "pass", "error": None, "kernel": "k",
            "backend": "netns", "duration_s": 1.0, "hosts": {},
            "checks": [{"name": "c1", "passed": True, "outcome": "pass", "expected": "e", "observed": "o",
                        "citation": "r", "values": {"v": job.family}}]}


def test_check_runs_both_families_and_junit_names_the_v6_run(tmp_path):
    from lab.ci import run_check
    from lab.junit import junit_xml
    from lab.profile import parse_profile

    def fake(job):
        Path(job.artifacts).mkdir(parents=True)
        (Path(job.artifacts) / "report.json").write_text(json.dumps(fake_report(job)))
        return Result(run=job.run, scenario=job.scenario, verdict="pass", exit_code=0,
                      artifacts=str(job.artifacts), family=job.family)

    prof = parse_profile('[[require]]\nscenario = "lost-ack"\ncheck = "c1"\nvalue = "v"\nequals = 4\n',
                         "p.toml", ("client", "router", "server"))
    lines = []
    s = run_check(["lost-ack"], profile=prof, artifacts=tmp_path / "a", runner=fake, families=(4, 6),
                  progress=lines.append)
    assert [(r["name"], r["family"]) for r in s["scenarios"]] == [("lost-ack", 4), ("lost-ack/v6", 6)]
    assert s["families"] == [4, 6] and any(ln.startswith("lost-ack/v6") for ln in lines)
    # the requirement is held against each family's run: v4 shows 4, v6 shows 6 (so it fails there)
    reqs = s["requirements"]
    assert [(q["family"], q["passed"]) for q in reqs] == [(4, True), (6, False)]
    assert reqs[1]["name"].endswith("(v6)") and reqs[1]["run"] == "lost-ack/v6"
    root = ET.fromstring(junit_xml(s))
    suites = [el.get("name") for el in root.iter("testsuite")]
    assert suites == ["lost-ack", "lost-ack/v6", "required behaviours"]
    cases = [(tc.get("classname"), tc.get("name")) for tc in root.iter("testcase")]
    assert ("lost-ack", "c1") in cases and ("lost-ack/v6", "c1") in cases
    assert ("required.lost-ack/v6", reqs[1]["name"]) in cases
    props = {p.get("name"): p.get("value") for p in root.find("testsuite[@name='lost-ack/v6']").iter("property")}
    assert props["family"] == "6"


def test_a_skipped_v6_run_is_listed_with_its_reason(tmp_path):
    from lab.ci import run_check
    from lab.junit import junit_xml

    def fake(job):
        if job.family == 6:
            exc = NoIPv6(job.name, "this kernel has no IPv6")
            return Result(run=job.run, scenario=job.scenario, verdict="skipped", exit_code=2,
                          artifacts=str(job.artifacts), reason=str(exc), family=6,
                          skip={"why": exc.why, "hint": exc.hint, "kind": "NoIPv6"})
        Path(job.artifacts).mkdir(parents=True)
        (Path(job.artifacts) / "report.json").write_text(json.dumps(fake_report(job)))
        return Result(run=job.run, scenario=job.scenario, verdict="pass", exit_code=0, artifacts=str(job.artifacts))

    s = run_check(["lost-ack"], artifacts=tmp_path / "a", runner=fake, families=(4, 6))
    assert s["exit_code"] == 0 and s["counts"]["skipped"] == 1
    v6 = s["scenarios"][1]
    assert v6["verdict"] == "skipped" and "this kernel has no IPv6; run it with --family 4" == v6["reason"]
    skipped = ET.fromstring(junit_xml(s)).find("testsuite[@name='lost-ack/v6']/testcase/skipped")
    assert "no IPv6" in skipped.get("message")


def test_catalog_table_and_repeat_lines_name_the_v6_run(capsys):
    from lab.runner import catalog_summary
    from lab.views import catalog_table, repeat_lines

    s = catalog_summary([Result(run=2, scenario="lost-ack", verdict="pass", exit_code=0, artifacts="b", family=6),
                         Result(run=1, scenario="lost-ack", verdict="pass", exit_code=0, artifacts="a")], 1.0)
    assert [r["name"] for r in s["scenarios"]] == ["lost-ack", "lost-ack/v6"]
    catalog_table(s)
    assert "lost-ack/v6" in capsys.readouterr().out
    line = repeat_lines({"scenario": "lost-ack", "name": "lost-ack/v6", "passed": 2, "repeat": 2, "failed": 0,
                         "errors": 0, "parallel": 1, "wall_s": 1, "check_pass_rate": {}, "artifacts": "x"})[0]
    assert line.startswith("lost-ack/v6: 2/2 passed")


# -- the matrix: a row per scenario and family ----------------------------------------------------

class FamilyVM:
    """Stands in for lab.vm: the guest's `invoke matrix --kernel host --family F` leaves a
    matrix.json with a row per scenario and family."""

    def __init__(self) -> None:
        self.calls = []

    def run(self, kernel, args, artifacts, progress, docker=False, accel="auto", timeout_s=900, env=None):
        from lab.family import label, parse_family
        from lab.matrix import cell_from_report

        self.calls.append(list(args))
        families = parse_family(args[args.index("--family") + 1])
        names = [args[i + 1] for i, a in enumerate(args) if a == "--scenario"]
        cells = {}
        for n in names:
            for family in families:
                report = {"scenario": n, "family": family, "kernel": "6.1", "backend": "netns", "verdict": "pass",
                          "error": None, "counters": {}, "artifacts": {"dir": str(artifacts)},
                          "checks": [{"name": "c", "passed": True, "expected": "", "observed": "", "citation": "",
                                      "values": {}}]}
                cells[label(n, family)] = {"host": cell_from_report(report)}
        (Path(artifacts) / "matrix.json").write_text(json.dumps({"cells": cells, "releases": {"host": "6.1"}}))
        return 0, ""


def test_matrix_rows_per_family_and_the_guest_gets_the_family(tmp_path):
    from lab.matrix import markdown, run_matrix

    vm = FamilyVM()
    m = run_matrix(["debian-12"], ["lost-ack"], out=tmp_path, vm=vm, families=(4, 6))
    assert [c[c.index("--family") + 1] for c in vm.calls] == ["both"]          # one boot, both families
    assert m["scenarios"] == ["lost-ack", "lost-ack/v6"] and m["families"] == [4, 6]
    assert m["cells"]["lost-ack/v6"]["debian-12"]["verdict"] == "pass"
    assert "| lost-ack/v6 | verdict |" in markdown(m)
    assert {r["scenario"] for r in m["rows"]} == {"lost-ack", "lost-ack/v6"}


def test_matrix_takes_only_the_report_of_its_family(tmp_path):
    from lab.matrix import _find_report

    (tmp_path / "report.json").write_text(json.dumps({"scenario": "lost-ack", "family": 4}))
    assert _find_report(tmp_path, "lost-ack", None, 6) is None
    assert _find_report(tmp_path, "lost-ack", None, 4)["family"] == 4


# -- stability and the VM ------------------------------------------------------------------------

def test_stability_runs_each_family_and_names_its_rows(tmp_path, monkeypatch):
    from lab import stability

    calls = []

    def fake_many(name, runs, parallel, backend, artifacts, progress, family):
        calls.append((name, backend, family, Path(artifacts).name))
        return {"passed": runs, "failed": 0, "errors": 0, "check_pass_rate": {}, "wall_s": 1.0, "family": family}
    monkeypatch.setattr(stability, "run_many", fake_many)
    results, base = stability.run_stability(["lost-ack"], ["netns"], 2, tmp_path / "s", families=(4, 6))
    assert calls == [("lost-ack", "netns", 4, "lost-ack"), ("lost-ack", "netns", 6, "lost-ack-v6")]
    assert set(results) == {"lost-ack/netns", "lost-ack/v6/netns"}
    assert json.loads((base / "stability.json").read_text())["lost-ack/v6/netns"]["family"] == 6


def test_stability_skips_a_scenario_this_machine_cannot_show_and_goes_on(tmp_path, monkeypatch, capsys):
    """lossy-link without netem used to end the whole stability run (exit 2, no stability.json):
    it is a skipped row, with its reason, as in `run all`; the exit follows the rows that ran."""
    from lab import stability
    from lab.errors import NetemMissing
    from lab.views import stability_table

    def fake_many(name, runs, parallel, backend, artifacts, progress, family):
        if name == "lossy-link":
            raise NetemMissing("lossy-link", "netem is not available on this kernel")
        return {"passed": runs, "failed": 0, "errors": 0, "check_pass_rate": {}, "wall_s": 1.0, "family": family}
    monkeypatch.setattr(stability, "run_many", fake_many)
    results, base = stability.run_stability(["lossy-link", "lost-ack"], ["netns"], 2, tmp_path / "s")
    assert results["lossy-link/netns"]["skipped"].startswith("netem is not available")
    assert results["lost-ack/netns"]["passed"] == 2
    assert json.loads((base / "stability.json").read_text())["lossy-link/netns"]["skipped"]
    assert stability.exit_code(results, 2) == 0
    assert stability.exit_code({k: v for k, v in results.items() if k.startswith("lossy")}, 2) == 2
    results["lost-ack/netns"]["passed"] = 1
    assert stability.exit_code(results, 2) == 1
    stability_table(results, ["lossy-link", "lost-ack"], ["netns"], 2)
    out = capsys.readouterr()
    assert "skipped" in out.out and "lossy-link on netns: skipped: netem" in out.err


def test_vm_runs_pass_the_family_into_the_guest(tmp_path, monkeypatch):
    from lab.vm import commands

    seen = []

    def fake_run(kernel, args, out, progress, timeout_s, docker=False, accel="auto", env=None):
        seen.append(list(args))
        (out / "report.json").write_text(json.dumps({"scenario": "lost-ack", "family": 6}))
        (out / "check.json").write_text(json.dumps({"exit_code": 0, "scenarios": [], "counts": {}}))
        return 0, ""
    monkeypatch.setattr(commands, "run", fake_run)
    report, code = commands.scenario_in_vm("debian-12", "lost-ack", tmp_path, [], [], False, 10, "netns", family=6)
    assert report["family"] == 6 and seen[0][seen[0].index("--family") + 1] == "6"
    commands.check_in_vm("debian-12", [], [], False, None, [], str(tmp_path / "c"), 1, family="both")
    assert seen[1][seen[1].index("--family") + 1] == "both"


def test_evidence_keeps_the_family():
    from lab.evidence import Evidence

    doc = {"packets": {}, "timeline": [], "counters": {}, "sysctls": {}, "addresses": {"client": "fd00:1::10"},
           "faults": {}, "facts": {}}
    assert Evidence.from_record(doc).family == 4
    assert Evidence.from_record({**doc, "family": 6}).family == 6
