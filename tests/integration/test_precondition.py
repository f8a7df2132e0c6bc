"""Real runs with a sysctl that rules a scenario out (its precondition()): with
net.ipv4.tcp_max_tw_buckets below the TIME-WAIT sockets a scenario holds at once, the kernel makes
none, and the scenario used to time out waiting for one and FAIL (exit 1). Now the run stops right
after bring-up, before the scenario's first step: exit 2, one `twlab:` line with the reason,
nothing left behind; `check` lists it as a skipped testcase while the scenarios that follow the
limit (lost-ack) still run and pass."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_check import assert_junit_shape

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = REPO / ".venv" / "bin" / "invoke"

# scenario -> (host, limit) that rules it out
RULED_OUT = {
    "five-tuple": ("client", 1),
    "restart-reuseaddr": ("server", 4),
    "tw-reopen": ("server", 0),
    "time-wait-duration": ("client", 1),
    "wandering-duplicates": ("server", 0),
    "tw-assassination": ("client", 0),
    "retransmitted-fin": ("client", 0),
    "who-closes-first": ("server", 1),
}


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(INVOKE), *args], cwd=REPO, capture_output=True, text=True, timeout=300)


def _ruled_out(name: str, backend: str, tmp_path: Path) -> None:
    host, limit = RULED_OUT[name]
    art = tmp_path / "art"
    done = invoke("run", name, "--backend", backend, "--artifacts", str(art),
                  "--sysctl", f"{host}:net.ipv4.tcp_max_tw_buckets={limit}")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"twlab: {name} cannot show its behaviour with these "
                                                   f"settings: tcp_max_tw_buckets={limit} on the {host}"), done.stderr
    assert f"running {name}:" not in done.stdout            # stopped before its first step: no wait, no timeout
    assert not art.exists()                                  # no report, no pcap, no empty directory


@pytest.mark.parametrize("name", sorted(RULED_OUT))
def test_a_ruled_out_run_is_skipped_not_failed(name, tmp_path):
    _ruled_out(name, "netns", tmp_path)


def test_a_ruled_out_run_on_each_backend(backend, tmp_path):
    _ruled_out("tw-assassination", backend, tmp_path)


def test_check_lists_a_ruled_out_scenario_as_skipped(tmp_path):
    """`check` with the client's tcp_max_tw_buckets=0: five-tuple cannot show its 4-tuple held
    (skipped, with the reason); lost-ack shows the RST lesson and passes; the job passes (exit 0)."""
    out = tmp_path / "out.xml"
    done = invoke("check", "five-tuple", "lost-ack", "--backend", "netns",
                  "--sysctl", "client:net.ipv4.tcp_max_tw_buckets=0", "--junit", str(out),
                  "--json-out", str(tmp_path / "s.json"), "--artifacts", str(tmp_path / "a"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    summary = json.loads((tmp_path / "s.json").read_text())
    runs = {r["scenario"]: r for r in summary["scenarios"]}
    assert runs["five-tuple"]["verdict"] == "skipped"
    assert runs["five-tuple"]["reason"].startswith("tcp_max_tw_buckets=0 on the client: no TIME-WAIT can be made")
    assert runs["lost-ack"]["verdict"] == "pass"
    assert {c["name"]: c["outcome"] for c in runs["lost-ack"]["checks"]} == {
        "no-time-wait-state": "pass", "fin-answered-with-rst": "pass", "rst-aborts-server": "pass",
        "rst-flow-label": "n/a"}                                  # IPv6 only: n/a over IPv4
    assert summary["counts"]["skipped"] == 1 and summary["exit_code"] == 0
    suites = {s.get("name"): s for s in assert_junit_shape(out.read_text()).iter("testsuite")}
    (case,) = suites["five-tuple"].iter("testcase")
    assert "tcp_max_tw_buckets=0 on the client" in case.find("skipped").get("message")
    assert suites["five-tuple"].get("skipped") == "1" and suites["lost-ack"].get("skipped") == "1"   # rst-flow-label
    assert not (tmp_path / "a" / "five-tuple").exists()
