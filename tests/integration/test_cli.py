"""The command line as a user meets it: `invoke run|list|--list` in a subprocess.

Bad input exits 2 with exactly one line on stderr, starting "twlab:", no traceback, and leaves
nothing behind - also when it is found only after the hosts are up."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lab.backends.netns import lab_namespaces
from lab.cleanup import clean, find

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = REPO / ".venv" / "bin" / "invoke"


def invoke(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(INVOKE), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env=env)


def lab_made(out: str) -> str | None:
    """The id of the lab a run brought up, from its progress line "lab <id> up on ..."."""
    m = re.search(r"^lab ([0-9a-f]{6,}) up on ", out, re.MULTILINE)
    return m.group(1) if m else None


def assert_usage_error(done: subprocess.CompletedProcess, *mentions: str) -> None:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert len(lines) == 1, f"expected one line on stderr, got: {done.stderr!r}"
    assert lines[0].startswith("twlab: "), lines[0]
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    assert "Traceback" not in done.stdout + done.stderr


@pytest.fixture(scope="module")
def refused_sysctl() -> str:
    """A client sysctl value this kernel refuses (EINVAL) and the lab does not range-check up
    front, so the refusal comes from the kernel after bring-up: probed in a throwaway namespace."""
    from lab.core import SYSCTL_RANGES

    for key, value in (("net.ipv4.tcp_ecn", "9"), ("net.ipv4.tcp_syn_retries", "0"),
                       ("net.ipv4.ip_default_ttl", "0"), ("net.ipv4.tcp_syn_retries", "200")):
        if key in SYSCTL_RANGES:
            continue
        path = "/proc/sys/" + key.replace(".", "/")
        write = ("import errno, sys\n"
                 f"try:\n    with open({path!r}, 'w') as f:\n        f.write({value!r})\n"
                 "except OSError as exc:\n    sys.exit(100 if exc.errno == errno.EINVAL else 1)")
        probe = subprocess.run(["unshare", "--net", sys.executable, "-c", write],
                               capture_output=True, text=True)
        if probe.returncode == 100:
            return f"client:{key}={value}"
    pytest.skip("this kernel accepts every out-of-range value tried")


# -- a good run ----------------------------------------------------------------------------

def test_run_json(tmp_path, lab_leftovers):
    out = tmp_path / "out"
    done = invoke("run", "lost-ack", "--backend", "netns", "--json", "--artifacts", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)                    # stdout is the report and nothing else
    assert report["verdict"] == "pass" and report["scenario"] == "lost-ack"
    assert report["backend"] == "netns"
    assert report["artifacts"]["dir"] == str(out)
    assert json.loads((out / "report.json").read_text()) == report
    assert (out / "client.pcap").stat().st_size > 24    # more than a pcap header
    assert "Traceback" not in done.stderr
    assert find(report["lab_id"]).lines() == []
    assert lab_leftovers() == []


def test_list_shows_lost_ack():
    done = invoke("list")
    assert done.returncode == 0, done.stderr
    line = next((ln for ln in done.stdout.splitlines() if ln.split()[:1] == ["lost-ack"]), None)
    assert line is not None, done.stdout
    assert "TIME-WAIT" in line and "[shaping: optional]" in line


def test_task_list():
    done = invoke("--list")
    assert done.returncode == 0, done.stderr
    tasks = {m.group(1) for m in re.finditer(r"^  (\w+)\s", done.stdout, re.MULTILINE)}
    assert {"list", "run", "up", "down", "shell", "image", "clean", "bench"} <= tasks, done.stdout


# -- bad input, found before anything is made ----------------------------------------------

@pytest.mark.parametrize("args, mentions", [
    (["run", "lost-ak", "--backend", "netns"], ["unknown scenario 'lost-ak'", "did you mean lost-ack?"]),
    (["run", "lost-ack", "--backend", "foo"], ["unknown backend 'foo'", "netns"]),
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "nohost:net.ipv4.tcp_rfc1337=1"],
     ["unknown host 'nohost'", "client, router, server"]),
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "client-net.ipv4.tcp_rfc1337"],
     ["'client-net.ipv4.tcp_rfc1337'", "HOST:KEY=VALUE"]),
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "client:kernel.pid_max=5000"],
     ["net.*"]),
    (["run", "lost-ack", "--backend", "netns", "--shape", "client->server:delay=10"],
     ["unknown setting 'delay'", "delay_ms"]),
    (["run", "lost-ack", "--backend", "netns", "--shape", "both:loss_pct=200"], ["out of range"]),
    (["run", "lost-ack", "--backend", "netns", "--shape", "nohost->server:delay_ms=10"],
     ["unknown host 'nohost'"]),
    (["run", "lost-ack", "--backend", "netns", "--compose", "/nonexistent/compose.yaml"],
     ["cannot read /nonexistent/compose.yaml"]),
    (["run", "lost-ack", "--backend", "netns", "--compose",
      str(REPO / "tests/data/topology/privileged/compose.yaml")], ["privileged"]),
    (["run", "lost-ack", "--backend", "netns", "--shape", "both:delay_ms=nan"], ["delay_ms='nan' is out of range"]),
    (["run", "lost-ack", "--backend", "netns", "--shape", "client->server:loss_pct=inf"], ["out of range"]),
    (["run", "lost-ack", "--backend", "netns", "--shape", "both:delay_ms=1,delay_ms=2"], ["delay_ms is given twice"]),
    (["run", "lost-ack", "--backend", "netns", "--shape", "client->client:delay_ms=1"], ["client->client is no path"]),
    # keys checked against a throwaway namespace of this kernel, before any host is made
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "client:net.ipv4=1"],
     ["'client:net.ipv4=1'", "net.ipv4 is a group of sysctls, not one"]),
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "client:net.ipv4.tcp_rfc1337.x=1"],
     ["unknown sysctl 'net.ipv4.tcp_rfc1337.x'", "did you mean net.ipv4.tcp_rfc1337?"]),
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "client:net.ipv4.route.flush=1"],
     ["net.ipv4.route.flush is write-only"]),
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "client:net.ipv4.tcp_no_such_knob=1"],
     ["unknown sysctl 'net.ipv4.tcp_no_such_knob'"]),
    (["run", "lost-ack", "--backend", "netns", "--sysctl", "server:net.ipv4.tcp_rfc133=1"],
     ["unknown sysctl 'net.ipv4.tcp_rfc133'", "did you mean net.ipv4.tcp_rfc1337?"]),
    (["run", "lost-ack", "--backend", "netns", "--repeat", "2", "--sysctl", "client:net.ipv4=1"],
     ["net.ipv4 is a group of sysctls"]),
    (["check", "lost-ack", "--backend", "netns", "--sysctl", "client:net.ipv4.tcp_rfc133=1"],
     ["did you mean net.ipv4.tcp_rfc1337?"]),
    (["check", "lost-ack", "--backend", "nope"], ["unknown backend 'nope'"]),
    (["run", "lost-ack", "--backend", "netns", "--compose",
      str(REPO / "tests/data/topology/cap-add-sys-admin/compose.yaml")], ["SYS_ADMIN is not allowed"]),
    # a v4-mapped client: lost-ack only, over IPv4 only
    (["run", "tw-buckets", "--backend", "netns", "--mapped"], ["tw-buckets has no v4-mapped variant", "lost-ack"]),
    (["run", "lost-ack", "--backend", "netns", "--mapped", "--family", "6"], ["--mapped", "--family 4"]),
    (["run", "lost-ack", "--backend", "netns", "--mapped", "--family", "both"], ["--mapped", "--family 4"]),
    (["run", "all", "--backend", "netns", "--mapped"], ["--mapped runs one scenario"]),
], ids=["unknown-scenario", "unknown-backend", "unknown-host", "malformed-sysctl", "not-a-net-sysctl",
        "unknown-shape-key", "shape-out-of-range", "shape-unknown-host", "compose-missing",
        "compose-privileged", "shape-nan", "shape-inf", "shape-key-twice", "shape-no-path",
        "sysctl-a-group", "sysctl-below-a-key", "sysctl-write-only", "sysctl-unknown", "sysctl-typo",
        "sysctl-repeat", "sysctl-check", "check-unknown-backend", "compose-sys-admin",
        "mapped-other-scenario", "mapped-v6", "mapped-both", "mapped-all"])
def test_bad_input_before_bring_up(args, mentions, tmp_path, lab_leftovers):
    done = invoke(*args, "--artifacts", str(tmp_path / "a"))
    assert_usage_error(done, *mentions)
    assert lab_made(done.stdout) is None
    assert not (tmp_path / "a").exists(), "a refused run left its artifacts directory"
    assert lab_leftovers() == []


def test_a_compose_without_a_router(tmp_path, lab_leftovers):
    """client and server only: refused when read (it was an AttributeError once the run began)."""
    compose = tmp_path / "compose.yaml"
    compose.write_text((REPO / "compose.yaml").read_text().replace("net.ipv4.ip_forward: 1",
                                                                  "net.ipv4.ip_forward: 0"))
    done = invoke("run", "lost-ack", "--backend", "netns", "--compose", str(compose),
                  "--artifacts", str(tmp_path / "a"))
    assert_usage_error(done, f"{compose}: no router", "net.ipv4.ip_forward: 1")
    assert lab_made(done.stdout) is None and not (tmp_path / "a").exists()
    assert lab_leftovers() == []


def test_a_compose_without_a_client(tmp_path, lab_leftovers):
    """Refused before bring-up (it was refused once the scenario asked for the client, leaving
    the other hosts' pcaps behind)."""
    compose = tmp_path / "compose.yaml"
    compose.write_text((REPO / "compose.yaml").read_text().replace("  client:\n", "  workstation:\n"))
    done = invoke("run", "lost-ack", "--backend", "netns", "--compose", str(compose),
                  "--artifacts", str(tmp_path / "a"))
    assert_usage_error(done, f"{compose}: no service 'client'")
    assert lab_made(done.stdout) is None and not (tmp_path / "a").exists()
    assert lab_leftovers() == []


@pytest.mark.parametrize("value", ["0", "-3", "x"])
def test_bad_repeat(value, tmp_path, lab_leftovers):
    done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(tmp_path),
                  "--repeat", value)
    assert_usage_error(done, "--repeat")
    assert lab_made(done.stdout) is None
    assert lab_leftovers() == []


def netem_available() -> bool:
    probe = subprocess.run(["unshare", "--net", "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                            "delay", "0"], capture_output=True, text=True)
    return probe.returncode == 0


def test_shape_without_netem(tmp_path, lab_leftovers):
    if netem_available():
        pytest.skip("this kernel has sch_netem: --shape works, nothing to refuse")
    done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(tmp_path),
                  "--shape", "client->server:delay_ms=10")
    assert_usage_error(done, "netem is not available", "--shape")
    lab_id = lab_made(done.stdout)
    if lab_id is not None:                    # found once a lab host could be probed
        assert find(lab_id).lines() == []
    assert lab_leftovers() == []


def test_artifacts_not_writable(tmp_path, lab_leftovers):
    afile = tmp_path / "a-file"
    afile.write_text("")
    done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(afile / "sub"))
    assert_usage_error(done, str(afile / "sub"), "not writable", "--artifacts")
    assert lab_made(done.stdout) is None
    assert lab_leftovers() == []


# -- bad input found after the hosts are up: everything made is removed ----------------------

def test_out_of_range_sysctl_refused_by_the_kernel(backend, tmp_path, refused_sysctl, lab_leftovers):
    done = invoke("run", "lost-ack", "--backend", backend, "--artifacts", str(tmp_path / "a"),
                  "--sysctl", refused_sysctl)
    key, value = refused_sysctl.split(":", 1)[1].split("=")
    assert_usage_error(done, f"bad value for {key}: the kernel refused {value!r}")
    lab_id = lab_made(done.stdout)
    assert lab_id, f"expected the error after bring-up; stdout: {done.stdout!r}"
    assert find(lab_id).lines() == []
    assert not (tmp_path / "a").exists(), "the refused run left an (empty) artifacts directory"
    assert lab_leftovers() == []


def test_a_bad_value_of_a_key_that_exists_is_not_an_unknown_key(backend, tmp_path, lab_leftovers):
    """tcp_congestion_control answers ENOENT for an algorithm it does not know."""
    setting = "client:net.ipv4.tcp_congestion_control=cubic;id"
    done = invoke("run", "lost-ack", "--backend", backend, "--artifacts", str(tmp_path / "a"), "--sysctl", setting)
    line = done.stderr.strip()
    assert_usage_error(done, repr(setting), "bad value for net.ipv4.tcp_congestion_control",
                       "the kernel refused 'cubic;id'", "available now:")
    assert "unknown" not in line, line
    assert lab_made(done.stdout) and not (tmp_path / "a").exists()
    assert lab_leftovers() == []


def test_a_long_value_is_not_echoed_whole(tmp_path, refused_sysctl, lab_leftovers):
    key = refused_sysctl.split(":", 1)[1].split("=")[0]
    done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(tmp_path / "a"),
                  "--sysctl", f"client:{key}=" + "9" * 100_000)
    assert_usage_error(done, f"bad value for {key}", "(100000 characters)")
    assert len(done.stderr) < 400, done.stderr[:600]
    assert lab_leftovers() == []


@pytest.mark.parametrize("setting, why", [
    ("client:net.ipv4.tcp_rfc1337=7", "out of range"),       # the kernel would store 7 silently
    ("client:net.ipv4.tcp_max_tw_buckets=-1", "out of range"),
    ("client:net.ipv4.tcp_tw_reuse=yes", "whole number"),
])
def test_out_of_range_sysctl_refused_up_front(setting, why, tmp_path, lab_leftovers):
    done = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(tmp_path),
                  "--sysctl", setting)
    assert_usage_error(done, repr(setting), why)
    assert lab_made(done.stdout) is None
    assert lab_leftovers() == []


# -- a run next to a lab brought up by hand --------------------------------------------------

def test_run_leaves_an_up_lab_alone(tmp_path, lab_leftovers):
    # a registry of our own, so nothing here touches (or is touched by) other people's labs
    env = {**os.environ, "TWLAB_RUN_DIR": str(tmp_path / "run")}
    up = invoke("up", "--backend", "netns", env=env)
    m = re.search(r"lab ([0-9a-f]{6,}) is up", up.stdout)
    assert up.returncode == 0 and m, up.stdout + up.stderr
    up_id = m.group(1)
    try:
        before = lab_namespaces(up_id)
        assert len(before) == 3
        run = invoke("run", "lost-ack", "--backend", "netns", "--artifacts", str(tmp_path / "a"),
                     env=env)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        assert lab_namespaces(up_id) == before, f"the run removed the `invoke up` lab: {run.stdout[:400]}"
    finally:
        invoke("down", env=env)
        clean(up_id)
    assert lab_leftovers() == []


def test_a_scenario_that_needs_netem_says_so_and_leaves_nothing(tmp_path, lab_leftovers):
    if netem_available():
        pytest.skip("this kernel has sch_netem: lossy-link runs here")
    done = invoke("run", "lossy-link", "--backend", "netns", "--artifacts", str(tmp_path / "a"))
    assert_usage_error(done, "lossy-link needs link shaping, but netem is not available", "invoke vm lossy-link")
    lab_id = lab_made(done.stdout)
    assert lab_id is not None and find(lab_id).lines() == []
    assert not (tmp_path / "a").exists(), "refused before anything was captured: no directory is left"
    assert lab_leftovers() == []
