"""`invoke check` and `invoke matrix --kernel host` as a CI job runs them, on real labs: exit codes,
the JUnit file, the JSON summary, a required behaviour the kernel does not show, --from-host.
One or two short scenarios per test (the whole catalog takes minutes)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from tests.unit.test_check import assert_junit_shape

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = REPO / ".venv" / "bin" / "invoke"

SURVIVE = '''\
# this CI job's kernel must keep TIME-WAIT through an in-window RST (RFC 1337 F1)
[[require]]
scenario = "tw-assassination"
check = ["time-wait-assassinated", "time-wait-survives-rst"]
value = "state_after"
equals = "TIME_WAIT"
why = "TIME-WAIT survives an in-window RST"
'''


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(INVOKE), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def test_check_lost_ack_passes_with_default_sysctls(backend, tmp_path):
    out = tmp_path / "out.xml"
    done = invoke("check", "--scenario", "lost-ack", "--junit", str(out), "--json-out", str(tmp_path / "s.json"),
                  "--backend", backend, "--artifacts", str(tmp_path / "art"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "verdict: PASS (exit 0)" in done.stdout
    root = assert_junit_shape(out.read_text())
    (suite,) = root.findall("testsuite")
    assert suite.get("name") == "lost-ack" and root.get("failures") == "0" and root.get("errors") == "0"
    names = [c.get("name") for c in suite.findall("testcase")]
    assert "time-wait-timer-restarts" in names and len(names) == int(root.get("tests")) >= 7
    assert {c.get("classname") for c in suite.findall("testcase")} == {"lost-ack"}
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["exit_code"] == 0 and summary["scenarios"][0]["backend"] == backend
    assert summary == json.loads((tmp_path / "art" / "check.json").read_text())
    assert (tmp_path / "art" / "lost-ack" / "report.json").exists()


def test_a_required_behaviour_the_kernel_does_not_show_fails(tmp_path):
    """tcp_rfc1337=0 (the default): the RST kills TIME-WAIT, so requiring it to survive fails,
    and the JUnit file names the failing check and why; with tcp_rfc1337=1 the same profile holds."""
    prof = tmp_path / "survive.toml"
    prof.write_text(SURVIVE)
    out = tmp_path / "out.xml"
    done = invoke("check", "--scenario", "tw-assassination", "--profile", str(prof), "--junit", str(out),
                  "--backend", "netns", "--artifacts", str(tmp_path / "a"))
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-2000:]
    assert "verdict: FAIL (exit 1)" in done.stdout
    root = assert_junit_shape(out.read_text())
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert suites["tw-assassination"].get("failures") == "0"          # the scenario's own verdict: pass
    (case,) = suites["required behaviours"].findall("testcase")
    assert case.get("name") == "TIME-WAIT survives an in-window RST"
    assert case.get("classname") == "required.tw-assassination"
    failure = case.find("failure")
    msg = failure.get("message")
    assert "time-wait-assassinated" in msg and "values.state_after = null" in msg
    assert "after the RST" in msg                                     # the check's observation: why
    assert f"{prof}, line 2" in failure.text

    done = invoke("check", "--scenario", "tw-assassination", "--profile", str(prof), "--junit", str(out),
                  "--sysctl", "client:net.ipv4.tcp_rfc1337=1", "--backend", "netns",
                  "--artifacts", str(tmp_path / "b"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    root = assert_junit_shape(out.read_text())
    assert root.get("failures") == "0"
    assert ET.fromstring(out.read_text()).find(".//testcase[@name='time-wait-survives-rst']") is not None


def test_from_host_copies_this_machines_tcp_sysctls(tmp_path):
    done = invoke("check", "--scenario", "lost-ack", "--from-host", "--backend", "netns",
                  "--json-out", str(tmp_path / "s.json"), "--artifacts", str(tmp_path / "a"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    want = Path("/proc/sys/net/ipv4/tcp_fin_timeout").read_text().strip()
    assert f"net.ipv4.tcp_fin_timeout={want}" in summary["sysctls"]["from_host"]
    assert not any(k.startswith("net.ipv4.ip_forward") for k in summary["sysctls"]["from_host"])
    run = summary["scenarios"][0]
    assert f"client:net.ipv4.tcp_fin_timeout={want}" in run["sysctls_requested"]
    assert f"server:net.ipv4.tcp_fin_timeout={want}" in run["sysctls_requested"]
    assert run["sysctls_in_force"]["server"]["net.ipv4.tcp_fin_timeout"] == want


def test_bad_profile_is_a_usage_error_before_any_lab(tmp_path):
    prof = tmp_path / "bad.toml"
    prof.write_text('[sysctls.client]\n"net.ipv4.tcp_rfc1337" = 7\n')
    done = invoke("check", "--scenario", "lost-ack", "--profile", str(prof))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"twlab: profile {prof}, line 2: ") and "out of range" in done.stderr
    assert "lab " not in done.stdout                                  # nothing was brought up


def test_matrix_host_prints_the_table(tmp_path):
    done = invoke("matrix", "--kernel", "host", "--scenario", "lost-ack", "--out", str(tmp_path),
                  "--backend", "netns")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "twlab matrix" in done.stdout and "lost-ack" in done.stdout
    assert "TIME-WAIT timer after each" in done.stdout and "pass 7/8" in done.stdout
    m = json.loads((tmp_path / "matrix.json").read_text())
    cell = m["cells"]["lost-ack"]["host"]
    assert cell["verdict"] == "pass" and cell["values"]["server FINs (1 + retransmissions)"] >= 3
    # the IPv6-only check says n/a over IPv4 (no flow label), and the matrix says so
    assert "| lost-ack | verdict | pass 7/8 (n/a: time-wait-ack-flow-label) |" in (tmp_path / "matrix.md").read_text()


def test_a_scenario_needing_netem_is_a_skipped_testcase(tmp_path):
    """On a kernel without sch_netem: lossy-link is skipped with the lab's reason, the other
    scenario runs, and the job passes."""
    probe = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                            "delay", "0"], capture_output=True, text=True)
    if probe.returncode == 0:
        pytest.skip("this kernel has sch_netem: lossy-link would run, not skip")
    out = tmp_path / "out.xml"
    done = invoke("check", "--scenario", "lossy-link", "--scenario", "who-closes-first", "--backend", "netns",
                  "--junit", str(out), "--json-out", str(tmp_path / "s.json"), "--artifacts", str(tmp_path / "a"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    runs = {r["scenario"]: r for r in summary["scenarios"]}
    assert runs["lossy-link"]["verdict"] == "skipped"
    assert runs["lossy-link"]["reason"].startswith("netem is not available on this kernel")
    assert runs["who-closes-first"]["verdict"] == "pass"
    suites = {s.get("name"): s for s in ET.parse(out).getroot().iter("testsuite")}
    skipped = [tc for tc in suites["lossy-link"].iter("testcase") if tc.find("skipped") is not None]
    assert len(skipped) == 1 and "netem is not available" in skipped[0].find("skipped").get("message")


def test_matrix_takes_scenario_words(tmp_path):
    """`invoke matrix --kernel host SCENARIO SCENARIO`: the words are the scenarios (lab/cli.py);
    a scenario this kernel cannot run is a skipped cell, which does not fail the matrix."""
    done = invoke("matrix", "--kernel", "host", "--out", str(tmp_path), "--backend", "netns",
                  "who-closes-first", "lossy-link")
    m = json.loads((tmp_path / "matrix.json").read_text())
    assert m["scenarios"] == ["who-closes-first", "lossy-link"]
    assert m["cells"]["who-closes-first"]["host"]["verdict"] == "pass"
    probe = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                            "delay", "0"], capture_output=True, text=True)
    if probe.returncode != 0:
        cell = m["cells"]["lossy-link"]["host"]
        assert cell["verdict"] == "skipped" and cell["error"].startswith("netem is not available")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "who-closes-first" in done.stdout and ("skipped:" in done.stdout or probe.returncode == 0)
