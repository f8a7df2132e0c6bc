"""`invoke check` without a lab: profiles (good and bad), required behaviours judged against
hand-made reports, the exit code, the layering of sysctls, and the JUnit XML's shape."""

from __future__ import annotations

import json
import re
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

import scenarios
from lab.ci import _scenario_entry, run_check
from lab.core import SysctlSetting
from lab.errors import UsageError
from lab.junit import junit_xml
from lab.pipeline import Job, Result, run_job
from lab.profile import PROFILE_EXAMPLE, Requirement, load_profile, parse_profile
from lab.requirements import evaluate, judge
from lab.sysctls import host_sysctls, layer_sysctls

REPO = Path(__file__).resolve().parents[2]
HOSTS = ("client", "router", "server")


def profile(text: str):
    return parse_profile(text, "p.toml", HOSTS)


# -- profiles --------------------------------------------------------------------------------------

def test_the_documented_example_parses():
    p = profile(PROFILE_EXAMPLE)
    assert p.scenarios == ["lost-ack", "tw-assassination"]
    assert p.sysctls == [SysctlSetting("client", "net.ipv4.tcp_rfc1337", "1")]
    survive, sixty = p.requires
    assert survive.scenario == "tw-assassination"
    assert survive.check == ("time-wait-assassinated", "time-wait-survives-rst")
    assert survive.value == "state_after" and survive.conditions == {"equals": "TIME_WAIT"}
    assert survive.why == "TIME-WAIT survives an in-window RST"
    assert sixty.conditions == {"passed": True, "near": 60, "slack": 2.5}
    assert "60 +- 2.5" in sixty.expected
    lines = PROFILE_EXAMPLE.splitlines()
    assert lines[survive.line - 1].strip() == "[[require]]" and survive.line < sixty.line


def test_the_readme_profile_parses():
    """The profile shown in README.md is a working one."""
    text = (REPO / "README.md").read_text()
    m = re.search(r"```toml\n(.*?)```", text, re.S)
    assert m, "README.md shows a ```toml profile"
    assert profile(m.group(1)).requires


def test_sysctls_bare_dotted_keys_and_string_values():
    p = profile('[sysctls.server]\nnet.ipv4.tcp_timestamps = 0\n'
                '[sysctls.client]\n"net.ipv4.ip_local_port_range" = "40000 40100"\n')
    assert p.sysctls == [SysctlSetting("server", "net.ipv4.tcp_timestamps", "0"),
                         SysctlSetting("client", "net.ipv4.ip_local_port_range", "40000 40100")]


def test_value_prefix_check_glob_and_numeric_conditions():
    p = profile('[[require]]\nscenario = "lost-ack"\ncheck = "time-wait-timer-*"\n'
                'value = "values.due_after_fin_ms"\nmin = 59900\nmax = 60100\n')
    (r,) = p.requires
    assert r.check == ("time-wait-timer-*",) and r.value == "due_after_fin_ms"
    assert r.conditions == {"min": 59900, "max": 60100}
    assert r.why == "" and r.name == r.expected == \
        "lost-ack / time-wait-timer-*: 59900 <= values.due_after_fin_ms <= 60100"


def test_load_profile_reads_a_file(tmp_path):
    f = tmp_path / "ci.toml"
    f.write_text('[sysctls.client]\n"net.ipv4.tcp_rfc1337" = 0\n')
    assert load_profile(f, HOSTS).path == str(f)
    with pytest.raises(UsageError, match=r"profile .*nope\.toml: cannot read it"):
        load_profile(tmp_path / "nope.toml", HOSTS)


@pytest.mark.parametrize("text, line, words", [
    ('[sysctls.client]\n"net.ipv4.tcp_rfc1337" = \n', 2, "not valid TOML"),
    ('x = 1\n', 1, "unknown setting 'x'"),
    ('\n[sysctls.laptop]\n"net.ipv4.tcp_rfc1337" = 1\n', 2, "unknown host 'laptop'"),
    ('[sysctls.client]\n# rfc1337\n"net.ipv4.tcp_rfc1337" = 7\n', 3, "out of range"),
    ('[sysctls.client]\n"net.ipv4.tcp_sack" = true\n', 2, "whole number or a string"),
    ('[sysctls.client]\n"kernel.pid_max" = 7\n', 2, "only per-namespace net.*"),
    ('scenarios = ["lost-ack", "lost_akc"]\n', 1, "unknown scenario 'lost_akc'"),
    ('\n\n[[require]]\nscenario = "tw-assasination"\ncheck = "x"\npassed = true\n', 4,
     "did you mean tw-assassination"),
    ('[[require]]\nscenario = "lost-ack"\npassed = true\n', 1, "needs check"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\n', 1, "says nothing to hold"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\npassed = true\n\n[[require]]\nscenario = "lost-ack"\n'
     'check = "y"\nvalue = "a"\nnear = 60\n', 10, "near needs slack"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\nvalue = "a"\nmin = 5\nmax = 1\n', 5, "above max"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\nequals = 3\n', 4, "add value"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\nvalue = "a"\n', 4, "needs something to compare"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\nvalue = "a"\nmin = "5"\n', 5, "min takes a number"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\npasssed = true\n', 4, "unknown key 'passsed'"),
    ('[[require]]\nscenario = "lost-ack"\ncheck = "x"\npassed = "yes"\n', 4, "passed takes true or false"),
    ('require = 3\n', 1, "[[require]]"),
])
def test_bad_profiles_name_the_file_and_line(text, line, words):
    with pytest.raises(UsageError) as err:
        profile(text)
    msg = str(err.value)
    assert msg.startswith(f"profile p.toml, line {line}: "), msg
    assert words in msg, msg
    assert "\n" not in msg


# -- required behaviours against hand-made reports ------------------------------------------------

def run(name: str, *checks: dict, verdict: str = "pass", **extra) -> dict:
    return {"scenario": name, "verdict": verdict, "checks": list(checks), **extra}


def chk(name: str, passed: bool = True, observed: str = "seen", **values) -> dict:
    return {"name": name, "citation": "RFC 9293 §3.10.7.4", "expected": "as the rule says",
            "observed": observed, "passed": passed, "values": values}


SURVIVE = Requirement("tw-assassination", ("time-wait-assassinated", "time-wait-survives-rst"),
                      "TIME-WAIT survives an in-window RST", value="state_after",
                      conditions={"equals": "TIME_WAIT"})
SIXTY = Requirement("time-wait-duration", ("time-wait-lasts-60s",), "TIME-WAIT lasts 60 s +- slack",
                    value="sampled_s", conditions={"passed": True, "near": 60, "slack": 2.5})


def assassinated(rfc1337: int = 0) -> dict:
    """What tw-assassination reports (the last check is named after the sysctl in force)."""
    if rfc1337:
        last = chk("time-wait-survives-rst", state_after="TIME_WAIT", tcp_rfc1337=1, gone_after_rst_ms=None)
    else:
        last = chk("time-wait-assassinated", observed="TIME-WAIT gone 10.5 ms after the RST",
                   state_after=None, tcp_rfc1337=0, gone_after_rst_ms=10.5)
    return run("tw-assassination", chk("time-wait-acks-it", ack_seq=1), last)


def test_survive_requirement_fails_when_the_rst_kills_time_wait():
    got = evaluate(SURVIVE, assassinated(rfc1337=0))
    assert not got["passed"]
    assert got["checks"] == ["time-wait-assassinated"]
    assert "values.state_after = null" in got["observed"]
    assert "gone 10.5 ms after the RST" in got["observed"]          # the check's own words: why


def test_survive_requirement_holds_with_rfc1337():
    got = evaluate(SURVIVE, assassinated(rfc1337=1))
    assert got["passed"], got
    assert got["checks"] == ["time-wait-survives-rst"]


@pytest.mark.parametrize("sampled, passed, ok", [(60.09, True, True), (62.4, True, True),
                                                 (63.0, True, False), (57.4, True, False),
                                                 (60.09, False, False)])
def test_time_wait_lasts_60s_plus_minus_slack(sampled, passed, ok):
    r = run("time-wait-duration", chk("time-wait-lasts-60s", passed, sampled_s=sampled))
    assert evaluate(SIXTY, r)["passed"] is ok


def test_list_values_hold_for_every_element_and_paths_index_lists():
    restarts = Requirement("lost-ack", ("time-wait-timer-restarts",), "", value="due_after_fin_ms",
                           conditions={"min": 59_990, "max": 60_030})
    r = run("lost-ack", chk("time-wait-timer-restarts", due_after_fin_ms=[60002, 60000, 60003]))
    assert evaluate(restarts, r)["passed"]
    r = run("lost-ack", chk("time-wait-timer-restarts", due_after_fin_ms=[60002, 61000]))
    assert not evaluate(restarts, r)["passed"]
    r = run("lost-ack", chk("time-wait-timer-restarts", due_after_fin_ms=[]))
    assert not evaluate(restarts, r)["passed"]
    r = run("lost-ack", chk("time-wait-timer-restarts", due_after_fin_ms=[60002, None]))
    assert not evaluate(restarts, r)["passed"]
    upper = Requirement("time-wait-duration", ("time-wait-lasts-60s",), "", value="bounds_s.1",
                        conditions={"max": 62.1})
    r = run("time-wait-duration", chk("time-wait-lasts-60s", bounds_s=[60.08, 60.11]))
    assert evaluate(upper, r)["passed"]


def test_equals_is_strict_about_booleans_and_numbers():
    req = Requirement("who-closes-first", ("x",), "", value="v", conditions={"equals": True})
    assert evaluate(req, run("who-closes-first", chk("x", v=True)))["passed"]
    assert not evaluate(req, run("who-closes-first", chk("x", v=1)))["passed"]
    req = Requirement("five-tuple", ("x",), "", value="v", conditions={"equals": 65537})
    assert evaluate(req, run("five-tuple", chk("x", v=65537.0)))["passed"]


@pytest.mark.parametrize("r, words", [
    (None, "did not run"),
    ({"scenario": "tw-assassination", "verdict": "skipped", "reason": "netem not available on this kernel"},
     "skipped (netem not available"),
    ({"scenario": "tw-assassination", "verdict": "error", "error": "peer died"}, "could not run (peer died)"),
    (run("tw-assassination", chk("time-wait-acks-it")), "no check time-wait-assassinated or"),
    (run("tw-assassination", chk("time-wait-assassinated", other=1)), "no value 'state_after' (its values: other)"),
])
def test_a_requirement_not_shown_fails_and_says_why(r, words):
    got = evaluate(SURVIVE, r)
    assert not got["passed"] and words in got["observed"], got["observed"]


# -- the verdict and exit code -------------------------------------------------------------------

def test_exit_codes():
    ok = run("lost-ack", chk("a"), chk("b"))
    assert judge([ok], [])["exit_code"] == 0
    bad = run("lost-ack", chk("a"), chk("b", False), verdict="fail")
    s = judge([ok | {"scenario": "x"}, bad], [])
    assert (s["exit_code"], s["counts"]["check_failures"], s["verdict"]) == (1, 1, "fail")
    assert judge([assassinated()], [SURVIVE])["exit_code"] == 1
    assert judge([assassinated(1)], [SURVIVE])["exit_code"] == 0
    # a scenario skipped for want of netem is not a failure ...
    skipped = {"scenario": "lossy-link", "verdict": "skipped", "reason": "netem not available"}
    assert judge([ok, skipped], [])["exit_code"] == 0
    # ... an error beside runs that worked is one; nothing could run at all is an environment error
    error = {"scenario": "tw-buckets", "verdict": "error", "error": "no tcpdump", "exit_code": 2}
    assert judge([ok, error], [])["exit_code"] == 1
    assert judge([error], [])["exit_code"] == 2
    # a run that stopped short (a protocol event never came) fails even when its checks passed
    short = run("lost-ack", chk("a"), verdict="fail", error="timed out after 15 s waiting for X")
    assert judge([short], [])["exit_code"] == 1


def test_a_required_shaping_scenario_is_skipped_with_the_labs_reason(monkeypatch, tmp_path):
    """lab.runner raises NetemMissing ('<name> needs link shaping, but <why>; ...') when SHAPING is
    required and the kernel has no netem; the worker reports it as skipped, and check keeps the
    reason."""
    from lab import runner
    from lab.errors import NetemMissing

    why = "netem is not available on this kernel (Specified qdisc kind is unknown.)"

    def no_netem(name, **kw):
        raise NetemMissing(name, why)
    monkeypatch.setattr(runner, "run_scenario", no_netem)
    job = Job(run=1, scenario="lossy-link", backend="netns", artifacts=tmp_path)
    res = run_job(job)
    assert res.verdict == "skipped" and res.exit_code == 2

    entry = _scenario_entry(res, None, job)
    assert entry["verdict"] == "skipped"
    assert entry["reason"] == f"{why}; run it on a kernel with sch_netem, e.g. `invoke vm lossy-link`"
    assert res.reason == f"lossy-link needs link shaping, but {why}; run it on a kernel with sch_netem, " \
        "e.g. `invoke vm lossy-link`"


# -- sysctls -----------------------------------------------------------------------------------

def test_host_sysctls_reads_what_exists_and_skips_forwarding(tmp_path):
    ipv4 = tmp_path / "net" / "ipv4"
    ipv4.mkdir(parents=True)
    (ipv4 / "tcp_rfc1337").write_text("1\n")
    (ipv4 / "tcp_max_tw_buckets").write_text("4096\n")
    (ipv4 / "ip_forward").write_text("1\n")
    (tmp_path / "net" / "ipv6" / "conf" / "all").mkdir(parents=True)
    (tmp_path / "net" / "ipv6" / "conf" / "all" / "forwarding").write_text("1\n")
    got = host_sysctls(tmp_path)
    assert sorted(map(str, got)) == ["client:net.ipv4.tcp_max_tw_buckets=4096",
                                     "client:net.ipv4.tcp_rfc1337=1",
                                     "server:net.ipv4.tcp_max_tw_buckets=4096",
                                     "server:net.ipv4.tcp_rfc1337=1"]


def test_host_values_never_override_a_scenarios_own_setting():
    own = scenarios.get("tw-buckets").own_sysctls()        # its own tcp_max_tw_buckets = 3
    assert ("client", "net.ipv4.tcp_max_tw_buckets", "3") in own
    host = [SysctlSetting("client", "net.ipv4.tcp_max_tw_buckets", "131072"),
            SysctlSetting("client", "net.ipv4.tcp_rfc1337", "1")]
    got = layer_sysctls(own, host, [])
    assert sorted(map(str, got)) == ["client:net.ipv4.tcp_max_tw_buckets=3", "client:net.ipv4.tcp_rfc1337=1"]
    explicit = [SysctlSetting("client", "net.ipv4.tcp_rfc1337", "0"),
                SysctlSetting("client", "net.ipv4.tcp_max_tw_buckets", "5")]
    got = layer_sysctls(own, host, explicit)
    assert sorted(map(str, got)) == ["client:net.ipv4.tcp_max_tw_buckets=5", "client:net.ipv4.tcp_rfc1337=0"]


def test_run_check_plumbing_without_a_lab(tmp_path):
    """Named scenarios plus those a requirement needs, each with its layered sysctls; reports
    read back from each scenario's artifacts; check.json written."""
    p = profile('[sysctls.client]\n"net.ipv4.tcp_rfc1337" = 0\n'
                '[[require]]\nscenario = "tw-assassination"\ncheck = "time-wait-*ed"\nvalue = "state_after"\n'
                'equals = "TIME_WAIT"\nwhy = "TIME-WAIT survives an in-window RST"\n')
    seen = {}

    def fake(job):
        seen[job.scenario] = [str(s) for s in job.sysctls]
        report = assassinated(0) if job.scenario == "tw-assassination" else run(job.scenario, chk("a"))
        report["hosts"] = {"client": {"sysctls": {"net.ipv4.tcp_rfc1337": "0"}}}
        Path(job.artifacts).mkdir(parents=True)
        (Path(job.artifacts) / "report.json").write_text(json.dumps(report))
        return Result(run=job.run, scenario=job.scenario, verdict=report["verdict"], exit_code=0,
                      artifacts=str(job.artifacts))

    lines = []
    s = run_check(["lost-ack"], profile=p, sysctls=[SysctlSetting("server", "net.ipv4.tcp_sack", "0")],
                  artifacts=tmp_path / "art", progress=lines.append, runner=fake)
    assert list(seen) == ["lost-ack", "tw-assassination"]
    assert any("also running tw-assassination" in ln for ln in lines)
    assert seen["lost-ack"] == ["client:net.ipv4.tcp_rfc1337=0", "server:net.ipv4.tcp_sack=0"]
    assert s["exit_code"] == 1 and [q["passed"] for q in s["requirements"]] == [False]
    assert s["scenarios"][1]["sysctls_in_force"] == {"client": {"net.ipv4.tcp_rfc1337": "0"}}
    assert json.loads((tmp_path / "art" / "check.json").read_text())["exit_code"] == 1


# -- JUnit XML ----------------------------------------------------------------------------------

# The shape of Jenkins' junit-10.xsd (the schema its JUnit and xUnit plugins read; GitLab, GitHub
# test reporters and pytest's own junitxml agree on it): elements, their attributes, their children.
SCHEMA = {
    "testsuites": ({"name", "time", "tests", "failures", "disabled", "errors"}, set(), {"testsuite"}),
    "testsuite": ({"name", "tests", "failures", "errors", "time", "disabled", "skipped", "skips",
                   "timestamp", "hostname", "id", "package", "assertions", "file", "skip", "log", "url"},
                  {"tests"}, {"testsuite", "properties", "testcase", "system-out", "system-err"}),
    "properties": (set(), set(), {"property"}),
    "property": ({"name", "value"}, {"name", "value"}, set()),
    "testcase": ({"name", "assertions", "time", "timestamp", "classname", "status", "class", "file",
                  "line", "log", "group", "url"}, {"name"},
                 {"skipped", "error", "failure", "system-out", "system-err"}),
    "failure": ({"type", "message"}, set(), set()),
    "error": ({"type", "message"}, set(), set()),
    "skipped": ({"type", "message"}, set(), set()),
    "system-out": (set(), set(), set()),
    "system-err": (set(), set(), set()),
}


def assert_junit_shape(xml: str) -> ET.Element:
    root = ET.fromstring(xml)
    assert root.tag == "testsuites"
    for el in root.iter():
        assert el.tag in SCHEMA, el.tag
        allowed, required, children = SCHEMA[el.tag]
        assert set(el.attrib) <= allowed, (el.tag, set(el.attrib) - allowed)
        assert required <= set(el.attrib), (el.tag, required - set(el.attrib))
        assert {c.tag for c in el} <= children, (el.tag, {c.tag for c in el} - children)
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in root.findall("testsuite"):
        cases = suite.findall("testcase")
        counts = {"tests": len(cases),
                  "failures": sum(1 for c in cases if c.find("failure") is not None),
                  "errors": sum(1 for c in cases if c.find("error") is not None),
                  "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
        for k, v in counts.items():
            assert suite.get(k) == str(v), (suite.get("name"), k, suite.get(k), v)
        for k in totals:
            totals[k] += counts[k]
        float(suite.get("time"))
    for k, v in totals.items():
        assert root.get(k) == str(v), (k, root.get(k), v)
    return root


def test_junit_xml_one_testcase_per_check_failures_skips_errors_and_requirements():
    summary = judge([
        run("lost-ack", chk("time-wait-armed-for-60s"), chk("server-retransmits-fin", False,
            observed="server.pcap: 2 FINs"), verdict="fail", duration_s=2.5, kernel="6.1.0-26-amd64",
            backend="netns", sysctls_in_force={"client": {"net.ipv4.tcp_rfc1337": "0"}}),
        assassinated(0),
        {"scenario": "lossy-link", "verdict": "skipped", "reason": "netem is not available on this kernel (x)"},
        {"scenario": "tw-buckets", "verdict": "error", "error": "tcpdump: not found\n(install it)"},
        run("who-closes-first", chk("a"), verdict="fail", error="timed out after 5 s waiting for CLOSING"),
    ], [SURVIVE])
    summary.update(profile="ci.toml", started="2026-11-25T14:00:00", hostname="ci")
    xml = junit_xml(summary)
    root = assert_junit_shape(xml)
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("9", "3", "1")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["lost-ack", "tw-assassination", "lossy-link", "tw-buckets",
                            "who-closes-first", "required behaviours"]
    la = suites["lost-ack"]
    assert [c.get("classname") for c in la.findall("testcase")] == ["lost-ack", "lost-ack"]
    fail = la.find("testcase[@name='server-retransmits-fin']/failure")
    assert "expected as the rule says" in fail.get("message") and "observed server.pcap: 2 FINs" in fail.get("message")
    assert "RFC 9293 §3.10.7.4" in fail.get("message") and "RFC 9293" in fail.text
    assert la.find("properties/property[@name='sysctl.client.net.ipv4.tcp_rfc1337']").get("value") == "0"
    skip = suites["lossy-link"].find("testcase/skipped")
    assert skip.get("message") == "netem is not available on this kernel (x)"
    assert suites["lossy-link"].get("skipped") == "1"
    err = suites["tw-buckets"].find("testcase/error")
    assert err.get("message") == "tcpdump: not found (install it)"     # one line in the attribute
    assert suites["who-closes-first"].find("testcase[@name='run-completed']/failure") is not None
    req = suites["required behaviours"].find("testcase")
    assert req.get("classname") == "required.tw-assassination"
    assert req.get("name") == "TIME-WAIT survives an in-window RST"
    assert "time-wait-assassinated" in req.find("failure").get("message")
    assert "ci.toml, line 0" in req.find("failure").text


def test_junit_xml_all_passing_and_unprintable_bytes():
    summary = judge([run("lost-ack", chk("a", observed="odd \x01 byte"))], [])
    root = assert_junit_shape(junit_xml(summary))
    assert root.get("failures") == "0" and root.get("tests") == "1"
    assert "\x01" not in junit_xml(summary)


def test_run_all_summary_lists_skipped_scenarios_without_failing():
    from lab.runner import catalog_summary

    ok = Result(run=1, scenario="lost-ack", verdict="pass", exit_code=0, artifacts="a")
    skipped = Result(run=2, scenario="lossy-link", verdict="skipped", exit_code=2, artifacts="b",
                     reason="netem is not available")
    s = catalog_summary([skipped, ok], 1.0)
    assert (s["verdict"], s["passed"], s["skipped"]) == ("pass", 1, 1)
    assert [r["scenario"] for r in s["scenarios"]] == ["lost-ack", "lossy-link"]
    assert catalog_summary([skipped], 1.0)["verdict"] == "fail"          # nothing ran at all
    failed = Result(run=3, scenario="tw-buckets", verdict="fail", exit_code=1, artifacts="c")
    assert catalog_summary([ok, skipped, failed], 1.0)["verdict"] == "fail"


def test_check_in_a_vm_runs_check_there_and_reads_its_summary(tmp_path, monkeypatch):
    import json as _json

    from lab.vm import commands
    from lab.vm.commands import check_in_vm

    seen = {}

    def fake_run(kernel, args, out, progress, timeout_s, docker=False, accel="auto", env=None):
        seen.update(kernel=kernel, args=list(args), out=out, docker=docker)
        (out / "check.json").write_text(_json.dumps({"exit_code": 0, "scenarios": [], "counts": {}}))
        return 0, ""
    monkeypatch.setattr(commands, "run", fake_run)
    prof = tmp_path / "p.toml"
    prof.write_text("")
    summary = check_in_vm("debian-12", ["lossy-link"], ["client:net.ipv4.tcp_rfc1337=1"], False,
                                 str(prof), ["both:loss_pct=10"], str(tmp_path / "a"), 1)
    assert summary["vm"] == {"kernel": "debian-12", "backend": "netns", "exit_code": 0}
    args = seen["args"]
    assert args[:3] == ["check", "--backend", "netns"] and seen["docker"] is False
    assert ["--scenario", "lossy-link"] == args[args.index("--scenario"):args.index("--scenario") + 2]
    assert args[args.index("--profile") + 1] == str(prof.resolve())
    assert args[args.index("--json-out") + 1] == str((tmp_path / "a").resolve() / "check.json")
    assert "--sysctl" in args and "--shape" in args


def test_check_in_a_vm_with_the_docker_backend_starts_the_guest_engine(tmp_path, monkeypatch):
    import json as _json

    from lab.vm import commands
    from lab.vm.commands import check_in_vm

    seen = {}

    def fake_run(kernel, args, out, progress, timeout_s, docker=False, accel="auto", env=None):
        seen.update(args=list(args), docker=docker)
        (out / "check.json").write_text(_json.dumps({"exit_code": 0, "scenarios": [], "counts": {}}))
        return 0, ""
    monkeypatch.setattr(commands, "run", fake_run)
    summary = check_in_vm("debian-12", ["lost-ack"], [], False, None, [], str(tmp_path / "a"), 1, "docker")
    assert seen["args"][:3] == ["check", "--backend", "docker"] and seen["docker"] is True
    assert summary["vm"]["backend"] == "docker"
    with pytest.raises(UsageError, match="inside a VM choose netns or docker"):
        check_in_vm("debian-12", [], [], False, None, [], str(tmp_path / "b"), 1, "podman")


def test_check_in_a_vm_refuses_from_host_and_unknown_kernels(tmp_path):
    from lab.vm.commands import check_in_vm

    with pytest.raises(UsageError, match="--from-host copies this machine's sysctls"):
        check_in_vm("debian-12", [], [], True, None, [], str(tmp_path), 1)
    with pytest.raises(UsageError, match="unknown kernel"):
        check_in_vm("debian-99", [], [], False, None, [], str(tmp_path), 1)


def test_check_in_a_vm_without_a_summary_is_an_environment_error(tmp_path, monkeypatch):
    from lab.errors import EnvError
    from lab.vm import commands
    from lab.vm.commands import check_in_vm

    monkeypatch.setattr(commands, "run", lambda *a, **k: (2, ""))
    with pytest.raises(EnvError, match="left no check.json"):
        check_in_vm("debian-12", [], [], False, None, [], str(tmp_path), 1)


def test_a_check_that_is_not_applicable_is_a_skipped_testcase_with_its_reason():
    """One check n/a inside a judged scenario: JUnit skips that testcase alone, with the reason;
    the scenario's other checks keep their outcome and the run is not a failure."""
    na = {**chk("paws-in-time-wait", False, observed="timestamps off: PAWSTimewait +0 shows nothing"),
          "outcome": "n/a"}
    summary = judge([run("wandering-duplicates", chk("replay-accepted"), na)], [])
    root = assert_junit_shape(junit_xml(summary))
    suite = root.find("testsuite[@name='wandering-duplicates']")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "1")
    skipped = suite.find("testcase[@name='paws-in-time-wait']/skipped")
    assert skipped is not None and "PAWSTimewait +0 shows nothing" in skipped.get("message")
    assert suite.find("testcase[@name='replay-accepted']/skipped") is None
    assert root.get("failures") == "0"
