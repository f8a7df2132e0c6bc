"""--family on the command line: bad values refused in one line before anything is made (run, run
all, check, matrix, stability, vm), a run over IPv6 where a lab host has IPv6 disabled stopped in
one line with nothing left (both backends), the same listed as skipped with its reason in a batch
(`run --family both`, `check`), and a compose file without IPv6 refused for --family 6."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from lab.cleanup import find

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INVOKE = REPO / ".venv" / "bin" / "invoke"
DISABLED = "client:net.ipv6.conf.all.disable_ipv6=1"


def invoke(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(INVOKE), *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def lab_made(out: str) -> str | None:
    m = re.search(r"^lab ([0-9a-f]{6,}) up on ", out, re.MULTILINE)
    return m.group(1) if m else None


def one_line(done: subprocess.CompletedProcess, *mentions: str) -> str:
    lines = done.stderr.splitlines()
    assert done.returncode == 2, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("twlab: "), done.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


@pytest.mark.parametrize("args", [
    ["run", "lost-ack", "--backend", "netns", "--family", "5"],
    ["run", "lost-ack", "--backend", "netns", "--family", "v6x"],
    ["run", "all", "--backend", "netns", "--family", "ipv6"],
    ["run", "lost-ack", "--backend", "netns", "--repeat", "2", "--family", "both"],
    ["check", "lost-ack", "--backend", "netns", "--family", "46"],
    ["stability", "--runs", "1", "--scenario", "lost-ack", "--backend", "netns", "--family", "0"],
    ["vm", "lost-ack", "--family", "both"],
    ["vm", "lost-ack", "--family", "5"],
], ids=["run-5", "run-v6x", "all-ipv6", "repeat-both", "check-46", "stability-0", "vm-both", "vm-5"])
def test_a_bad_family_is_refused_before_anything_is_made(args, tmp_path, lab_leftovers):
    done = invoke(*args, "--artifacts", str(tmp_path / "a"))
    line = one_line(done, "--family")
    assert "choose 4" in line or "give --family 4 or --family 6" in line, line
    assert lab_made(done.stdout) is None and not (tmp_path / "a").exists()
    assert lab_leftovers() == []


def test_matrix_refuses_a_bad_family(tmp_path, lab_leftovers):
    done = invoke("matrix", "--family", "v6x", "--out", str(tmp_path / "m"), "lost-ack")
    one_line(done, "--family 'v6x'")
    assert not (tmp_path / "m").exists() and lab_leftovers() == []


def test_ipv6_disabled_in_a_host_stops_a_v6_run_in_one_line(backend, tmp_path, lab_leftovers):
    done = invoke("run", "lost-ack", "--backend", backend, "--family", "6", "--sysctl", DISABLED,
                  "--artifacts", str(tmp_path / "a"))
    one_line(done, "lost-ack/v6 cannot run over IPv6", "client has IPv6 disabled",
             "net.ipv6.conf.all.disable_ipv6 = 1", "--family 4")
    lab_id = lab_made(done.stdout)
    assert lab_id, "found once the sysctl is set in the running host"
    assert find(lab_id).lines() == []
    assert not (tmp_path / "a").exists(), "the refused run left its artifacts directory"
    assert lab_leftovers() == []


def test_in_a_batch_the_v6_run_is_skipped_with_its_reason_and_v4_runs(tmp_path, lab_leftovers):
    done = invoke("run", "lost-ack", "--backend", "netns", "--family", "both", "--sysctl", DISABLED,
                  "--artifacts", str(tmp_path / "a"), "--json")
    summary = json.loads(done.stdout)
    by_name = {r["name"]: r for r in summary["scenarios"]}
    assert set(by_name) == {"lost-ack", "lost-ack/v6"}, done.stderr[-2000:]
    assert by_name["lost-ack"]["verdict"] == "pass" and by_name["lost-ack"]["family"] == 4
    v6 = by_name["lost-ack/v6"]
    assert v6["verdict"] == "skipped" and v6["family"] == 6
    assert "client has IPv6 disabled" in v6["reason"]
    assert done.returncode == 0, done.stderr[-2000:]           # a skip does not fail the rest
    assert json.loads((tmp_path / "a" / "lost-ack" / "report.json").read_text())["family"] == 4
    assert not (tmp_path / "a" / "lost-ack-v6" / "report.json").exists()
    assert lab_leftovers() == []


def test_check_lists_the_v6_run_as_skipped(tmp_path, lab_leftovers):
    done = invoke("check", "lost-ack", "--backend", "netns", "--family", "6", "--sysctl", DISABLED,
                  "--artifacts", str(tmp_path / "a"), "--json-out", str(tmp_path / "c.json"),
                  "--junit", str(tmp_path / "j.xml"))
    summary = json.loads((tmp_path / "c.json").read_text())
    (entry,) = summary["scenarios"]
    assert (entry["name"], entry["verdict"]) == ("lost-ack/v6", "skipped"), entry
    assert "client has IPv6 disabled" in entry["reason"]
    assert 'name="lost-ack/v6"' in (tmp_path / "j.xml").read_text()
    assert done.returncode == 0, done.stderr      # a skip fails nothing (as a scenario without netem)
    assert lab_leftovers() == []


def test_a_compose_file_without_ipv6_refuses_family_6(tmp_path, lab_leftovers):
    text = (REPO / "compose.yaml").read_text()
    text = re.sub(r"\n\s+ipv6_address: [^\n]+", "", text)
    text = re.sub(r"\n\s+- subnet: \$\{TWLAB_(LEFT|RIGHT)6[^\n]+", "", text)
    text = re.sub(r"ip -6 route replace \S+ via \S+ 2>/dev/null; ", "", text)
    compose = tmp_path / "v4.yaml"
    compose.write_text(text)
    done = invoke("run", "lost-ack", "--backend", "netns", "--family", "6", "--compose", str(compose),
                  "--artifacts", str(tmp_path / "a"))
    one_line(done, "lost-ack/v6 cannot run over IPv6", "has no IPv6 subnet", "--family 4")
    assert lab_made(done.stdout) is None and not (tmp_path / "a").exists()
    ok = invoke("run", "lost-ack", "--backend", "netns", "--compose", str(compose), "--artifacts", str(tmp_path / "b"))
    assert ok.returncode == 0, ok.stdout[-2000:] + ok.stderr[-2000:]      # and IPv4 runs on it
    assert lab_leftovers() == []
