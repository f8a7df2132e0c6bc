"""gVisor's netstack as a lab host (--stack HOST=gvisor, netns backend): lost-ack with each end on
gVisor, judged from the wire and read again straight from the pcaps; refusals in one line; nothing
of runsc left behind after a run, an interrupt or a SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import time

import pytest

from lab import gvisor, twprobe
from lab.cleanup import find
from lab.packets import read_pcap
from lab.runner import run_scenario
from scenarios.lost_ack import PORT

from .procs import Run, assert_clean_leaves_nothing_of, assert_interrupted, invoke

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(gvisor.runsc_missing() is not None, reason="runsc is not installed")]


def outcomes(report: dict) -> dict[str, str]:
    return {c["name"]: c["outcome"] for c in report["checks"]}


def values(report: dict, name: str) -> dict:
    return next(c["values"] for c in report["checks"] if c["name"] == name)


def nothing_of(lab_id: str) -> None:
    assert not find(lab_id), find(lab_id).lines()
    assert gvisor.processes_of(lab_id) == []
    assert not gvisor.lab_dir(lab_id).exists()


def fins_answered(artifacts, port: int = PORT) -> tuple[int, int]:
    """The server's FINs in client.pcap, and how many the client answered with an ACK before the
    next one came (straight from the pcap, not from the report)."""
    segs = read_pcap(artifacts / "client.pcap")
    fins = [s for s in segs if s.sport == port and s.has("FIN")]
    answered = 0
    for i, f in enumerate(fins):
        until = fins[i + 1].t if i + 1 < len(fins) else f.t + 1
        answered += any(s.dport == port and s.has("ACK") and not s.has("RST") and s.ack == f.seq + 1
                        and f.t <= s.t < until for s in segs)
    return len(fins), answered


def test_lost_ack_client_on_gvisor(tmp_path):
    report = run_scenario("lost-ack", backend="netns", artifacts=tmp_path, options={"stacks": {"client": "gvisor"}})
    got = outcomes(report)
    assert report["stacks"] == {"client": "gvisor", "router": "linux", "server": "linux"}
    assert report["verdict"] == "pass", got
    assert got["time-wait-armed-for-60s"] == "n/a"                # sock_diag cannot see gVisor's sockets
    assert got["time-wait-timer-restarts"] == "pass"              # judged from the wire instead
    length = values(report, "time-wait-length-on-the-wire")
    assert length["stack"] == "gvisor" and 59.5 <= length["gone_by_s"] <= 61
    fins, answered = fins_answered(tmp_path)
    assert fins >= 4 and answered == fins, (fins, answered)       # gVisor's TIME-WAIT re-ACKs each FIN
    probe = report["facts"]["client_probe"]
    assert probe["probe"] == "ack" and probe["answers"][0]["answer"] == "ack"
    nothing_of(report["lab_id"])


def test_lost_ack_server_on_gvisor_over_ipv6(tmp_path):
    """IPv6 (the client's on IPv4 above): gVisor takes the interface's IPv6 address over, and the
    router's prober probes the Linux client's TIME-WAIT with IPv6 segments of its own."""
    report = run_scenario("lost-ack", backend="netns", artifacts=tmp_path, options={"stacks": {"server": "gvisor"}},
                          family=6)
    got = outcomes(report)
    assert report["verdict"] == "pass", got
    assert report["family"] == 6 and ":" in report["facts"]["client_probe"]["tuple"]["addr"]
    sched = values(report, "server-retransmits-fin")
    assert sched["stack"] == "gvisor" and sched["fin_count"] >= 4
    server_fins = [s for s in read_pcap(tmp_path / "server.pcap") if s.sport == PORT and s.has("FIN")]
    assert len(server_fins) == sched["fin_count"]                   # gVisor's own FINs, from its capture
    assert values(report, "time-wait-length-on-the-wire")["stack"] == "linux"
    nothing_of(report["lab_id"])


def late_fin_answers(pcap, port: int, client_ports: list[int]) -> list[str]:
    """Straight from a capture: the client's answer to the server's FIN on each of *client_ports*
    ("ACK" of it, "RST", or the reply's flags)."""
    segs = read_pcap(pcap)
    answers = []
    for cport in client_ports:
        fin = next(s for s in segs if s.sport == port and s.dport == cport and s.has("FIN"))
        reply = next(s for s in segs if s.sport == cport and s.dport == port and s.t > fin.t)
        answers.append("RST" if reply.has("RST") else "ACK" if reply.ack == fin.seq + 1 else reply.flags)
    return answers


def probe_answers(pcap, host_addr: str, host_port: int, peer_port: int) -> list[str]:
    """Straight from a router capture: the prober's segments toward *host_addr*:*host_port* (from
    the far end's port, with a sequence number far before the far end's FIN + 1) and what the host
    answered to each: "ack", "rst", "syn-ack" or "none"."""
    segs = read_pcap(pcap)
    conn = [s for s in segs if {(s.dst, s.dport), (s.src, s.sport)} & {(host_addr, host_port)}
            and peer_port in (s.sport, s.dport)]
    fins = [s for s in conn if s.dst == host_addr and s.has("FIN")]
    if not fins:
        return []
    old = (fins[-1].seq + fins[-1].length + 1 - twprobe.OLD) % (1 << 32)
    out = []
    for probe in (s for s in conn if s.dst == host_addr and s.seq == old):
        reply = next((s for s in conn if s.src == host_addr and s.t > probe.t), None)
        out.append("none" if reply is None or reply.t > probe.t + 0.3 else
                   "rst" if reply.has("RST") else "syn-ack" if reply.has("SYN") else "ack")
    return out


@pytest.mark.parametrize("host", ["client", "server"])
def test_who_closes_first_with_a_gvisor_end(host, tmp_path):
    """Each case judged from the wire; the probes' answers read again from the router's captures:
    the closer answers with an ACK (TIME-WAIT), the other end with a RST or a listener's SYN-ACK;
    after the simultaneous close both answer with an ACK."""
    from scenarios.who_closes_first import PORT as WCF_PORT

    report = run_scenario("who-closes-first", backend="netns", artifacts=tmp_path,
                          options={"stacks": {host: "gvisor"}})
    got = outcomes(report)
    assert report["verdict"] == "pass", (got, [c["observed"] for c in report["checks"] if c["outcome"] != "pass"])
    assert set(got) == {"client-first-only-client-holds-time-wait", "server-first-only-server-holds-time-wait",
                        "simultaneous-fins-cross", "simultaneous-both-closing", "simultaneous-both-hold-time-wait"}
    addr = {h: v["addresses"] for h, v in report["hosts"].items()}
    addr = {h: a if isinstance(a, str) else next(iter(a.values())) for h, a in addr.items()}
    cases = report["facts"]["cases"]
    for case, closer in (("client-first", "client"), ("server-first", "server"), ("simultaneous", None)):
        cport = cases[case]["client_port"]
        client = probe_answers(tmp_path / "router-client.pcap", addr["client"], cport, WCF_PORT)
        server = probe_answers(tmp_path / "router-server.pcap", addr["server"], WCF_PORT, cport)
        assert len(client) == 1 and len(server) == 1, (case, client, server)
        want = {"client": ("ack",) if closer in ("client", None) else ("rst",),
                "server": ("ack",) if closer in ("server", None) else ("rst", "syn-ack")}
        assert client[0] in want["client"] and server[0] in want["server"], (case, client, server)
    nothing_of(report["lab_id"])


def test_tw_assassination_a_gvisor_client_ignores_the_rst(tmp_path):
    """RFC 1337 figure 1 against gVisor's TIME-WAIT; read again from client.pcap: the server's RST
    reached the client, and the old segment replayed after it drew an ACK, not a RST."""
    from scenarios.tw_assassination import CLIENT_PORT

    report = run_scenario("tw-assassination", backend="netns", artifacts=tmp_path,
                          options={"stacks": {"client": "gvisor"}})
    got = outcomes(report)
    assert report["verdict"] == "pass" and got["time-wait-survives-rst"] == "pass", got
    assert got["paws-does-not-prevent-it"] == "n/a"
    segs = read_pcap(tmp_path / "client.pcap")
    rst = next(s for s in segs if s.dport == CLIENT_PORT and s.has("RST"))
    probe_at = report["facts"]["probe_at"]
    answer = next(s for s in segs if s.sport == CLIENT_PORT and s.t > max(rst.t, probe_at))
    assert answer.flags == "ACK" and answer.ack == rst.seq, answer      # TIME-WAIT's ACK of RCV.NXT
    nothing_of(report["lab_id"])


def test_tw_assassination_a_gvisor_server_sends_the_rst_that_kills_linux(tmp_path):
    from scenarios.tw_assassination import CLIENT_PORT

    report = run_scenario("tw-assassination", backend="netns", artifacts=tmp_path,
                          options={"stacks": {"server": "gvisor"}})
    got = outcomes(report)
    assert report["verdict"] == "pass" and got["time-wait-assassinated"] == "pass", got
    segs = read_pcap(tmp_path / "server.pcap")
    ack = next(s for s in segs if s.sport == CLIENT_PORT and s.flags == "ACK" and s.t > report["facts"]["injected_at"])
    rst = next(s for s in segs if s.dport == CLIENT_PORT and s.has("RST") and s.t >= ack.t)
    assert rst.seq == ack.ack and not rst.has("ACK")                   # gVisor's closed port: <SEQ=SEG.ACK><RST>
    nothing_of(report["lab_id"])


def test_restart_reuseaddr_with_a_gvisor_server(tmp_path):
    """bind() in gVisor over its own TIME-WAIT, case by case: the errno the restarted program got,
    and the TIME-WAIT it met, read again from the router's capture (each probe answered by an ACK)."""
    report = run_scenario("restart-reuseaddr", backend="netns", artifacts=tmp_path,
                          options={"stacks": {"server": "gvisor"}})
    got = outcomes(report)
    assert report["verdict"] == "pass" and len(got) == 10, got
    cases = report["facts"]["cases"]
    assert {n: c["bind_ok"] or c["bind_errno"] for n, c in cases.items()} == {
        "neither": 98, "both": True, "old-without-new-with": 98, "old-with-new-without": 98, "live-listener": 98}
    assert cases["both"]["reconnect_ok"] is True
    addr = report["hosts"]["server"]["addresses"]
    addr = addr if isinstance(addr, str) else next(iter(addr.values()))
    for name, c in cases.items():
        assert probe_answers(tmp_path / "router-server.pcap", addr, c["port"], c["client_port"]) == ["ack"], name
    nothing_of(report["lab_id"])


def test_retransmitted_fin_a_gvisor_client_answers_every_fin(tmp_path):
    """The Linux server's orphan retransmits and gives up as always; gVisor's TIME-WAIT answered
    each FIN (client.pcap) and still held at the end (the prober's answer in router-client.pcap)."""
    from scenarios.retransmitted_fin import PORT as RF_PORT

    report = run_scenario("retransmitted-fin", backend="netns", artifacts=tmp_path,
                          options={"stacks": {"client": "gvisor"}})
    assert report["verdict"] == "pass", outcomes(report)
    fins, answered = fins_answered(tmp_path, RF_PORT)
    assert fins >= 4 and answered == fins, (fins, answered)
    addr = report["hosts"]["client"]["addresses"]
    addr = addr if isinstance(addr, str) else next(iter(addr.values()))
    cport = report["facts"]["client_port"]
    assert probe_answers(tmp_path / "router-client.pcap", addr, cport, RF_PORT) == ["ack"]
    nothing_of(report["lab_id"])


def test_a_users_linux_sysctl_on_a_gvisor_host_is_refused_in_one_line(tmp_path, lab_leftovers):
    """The scenario's own tcp_orphan_retries is left out on a gVisor server (judged not applicable);
    the same sysctl asked for by the user cannot reach gVisor's sockets: refused, not judged."""
    done = invoke("run", "retransmitted-fin", "--backend", "netns", "--stack", "server=gvisor",
                  "--sysctl", "server:net.ipv4.tcp_orphan_retries=4", "--artifacts", str(tmp_path / "a"))
    one_line(done, "tcp_orphan_retries", "does not reach gVisor")
    assert lab_leftovers() == [] and not (tmp_path / "a").exists()


def test_tw_buckets_late_fins_from_a_gvisor_server_meet_linuxs_buckets(tmp_path):
    """Linux's tcp_max_tw_buckets=3 with the late FINs coming from gVisor: straight from client.pcap,
    the first three connections' FINs are ACKed (TIME-WAIT), the last two reset (no bucket)."""
    from scenarios.tw_buckets import PORT as TWB_PORT

    report = run_scenario("tw-buckets", backend="netns", artifacts=tmp_path, options={"stacks": {"server": "gvisor"}})
    assert report["verdict"] == "pass", outcomes(report)
    answers = late_fin_answers(tmp_path / "client.pcap", TWB_PORT, report["facts"]["client_ports"])
    assert answers == ["ACK", "ACK", "ACK", "RST", "RST"], answers
    nothing_of(report["lab_id"])


def test_five_tuple_recycled_syn_opens_a_new_incarnation_on_a_gvisor_server(tmp_path):
    """Linux's client recycles its TIME-WAIT 4-tuple toward gVisor: straight from the pcap, the
    recycled SYN (old FIN's seq + 65537) reaches gVisor, whose side of the old connection is
    closed, and gVisor's listener answers it with a SYN-ACK (the router's capture facing gVisor)."""
    from scenarios.five_tuple import BOUND
    from scenarios.five_tuple import PORT as FT_PORT

    report = run_scenario("five-tuple", backend="netns", artifacts=tmp_path, options={"stacks": {"server": "gvisor"}})
    assert report["verdict"] == "pass", outcomes(report)
    segs = [s for s in read_pcap(tmp_path / "router-server.pcap") if {s.sport, s.dport} == {BOUND, FT_PORT}]
    old_fin = next(s for s in segs if s.sport == BOUND and s.has("FIN"))
    syns = [s for s in segs if s.sport == BOUND and s.has("SYN")]
    assert len(syns) == 2 and (syns[1].seq - (old_fin.seq + 1)) % 2**32 == 65537, (old_fin.seq, syns)
    answer = next(s for s in segs if s.sport == FT_PORT and s.t > syns[1].t)
    assert answer.has("SYN") and answer.has("ACK") and answer.ack == syns[1].seq + 1
    nothing_of(report["lab_id"])


def test_time_wait_duration_late_fin_from_a_gvisor_server_is_reset(tmp_path):
    """Linux's lifetimes judged with gVisor's FINs: straight from the router's capture facing the
    server, gVisor's late FIN for B is answered by the client's RST (seq = the FIN's ack)."""
    from scenarios.time_wait_duration import PORT as TWD_PORT

    report = run_scenario("time-wait-duration", backend="netns", artifacts=tmp_path,
                          options={"stacks": {"server": "gvisor"}})
    assert report["verdict"] == "pass", outcomes(report)
    b = report["facts"]["key_b"][1]
    segs = read_pcap(tmp_path / "router-server.pcap")
    fin = next(s for s in segs if s.sport == TWD_PORT and s.dport == b and s.has("FIN"))
    rst = next(s for s in segs if s.sport == b and s.dport == TWD_PORT and s.t > fin.t)
    assert rst.has("RST") and rst.seq == fin.ack
    nothing_of(report["lab_id"])


def test_tw_reopen_gvisor_syns_reopen_linuxs_time_wait(tmp_path):
    """gVisor's reopening SYNs against Linux's TIME-WAIT, straight from the router's capture facing
    the server: each of the two reopening SYNs is answered by a SYN-ACK whose ISN is the old
    connection's snd_nxt + 65537 (the server's FIN seq + 1 + 65537)."""
    from scenarios.tw_reopen import CASES
    from scenarios.tw_reopen import PORT as TWR_PORT

    report = run_scenario("tw-reopen", backend="netns", artifacts=tmp_path, options={"stacks": {"client": "gvisor"}})
    assert report["verdict"] == "pass", outcomes(report)
    segs = read_pcap(tmp_path / "router-server.pcap")
    for case in ("seq-ahead", "seq-behind"):
        port = CASES[case]
        fin = next(s for s in segs if s.sport == TWR_PORT and s.dport == port and s.has("FIN"))
        synacks = [s for s in segs if s.sport == TWR_PORT and s.dport == port and s.flags == "SYN,ACK"]
        assert (synacks[-1].seq - (fin.seq + 1)) % 2**32 == 65537, (case, fin.seq, synacks[-1].seq)
    nothing_of(report["lab_id"])


def one_line(done, *mentions: str) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout[-1500:], done.stderr[-1500:])
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("twlab: "), done.stderr
    for text in mentions:
        assert text in lines[0], (text, lines[0])
    return lines[0]


def test_docker_refused_in_one_line(tmp_path, lab_leftovers):
    done = invoke("run", "lost-ack", "--backend", "docker", "--stack", "client=gvisor",
                  "--artifacts", str(tmp_path / "a"))
    one_line(done, "netns backend only", "--backend netns")
    assert lab_leftovers() == [] and not (tmp_path / "a").exists()


def test_runsc_missing_one_line_and_skipped_in_run_all(tmp_path, lab_leftovers):
    env = {**os.environ, "TWLAB_RUNSC": "/nonexistent/runsc"}
    done = invoke("run", "lost-ack", "--backend", "netns", "--stack", "server=gvisor",
                  "--artifacts", str(tmp_path / "a"), env=env)
    one_line(done, "runsc is not installed")
    assert lab_leftovers() == [] and not (tmp_path / "a").exists()
    done = invoke("run", "all", "--backend", "netns", "--stack", "server=gvisor", "--json",
                  "--artifacts", str(tmp_path / "b"), env=env)
    assert done.returncode == 2, done.stdout[-1500:] + done.stderr[-1500:]
    summary = json.loads(done.stdout)
    assert {r["verdict"] for r in summary["scenarios"]} == {"skipped"}, summary["scenarios"]
    assert lab_leftovers() == []


def _sandbox_running(run: Run) -> str:
    out = run.wait_for("runs gVisor's netstack")
    lab_id = re.search(r"runsc sandbox twlab-([0-9a-f]+)-", out).group(1)
    deadline = time.monotonic() + 30
    while not gvisor.processes_of(lab_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gvisor.processes_of(lab_id), run.out
    return lab_id


def test_interrupted_gvisor_run_leaves_nothing(tmp_path):
    run = Run("run", "lost-ack", "--backend", "netns", "--stack", "client=gvisor", "--artifacts", str(tmp_path / "a"))
    lab_id = _sandbox_running(run)
    run.wait_for("running lost-ack")
    time.sleep(2)                                  # the prober is at work by now
    run.group(signal.SIGINT)
    code, out = run.finish()
    assert_interrupted(code, out, "Ctrl-C (SIGINT)", made=True)
    nothing_of(lab_id)


def test_killed_gvisor_run_is_cleaned(tmp_path):
    run = Run("run", "lost-ack", "--backend", "netns", "--stack", "server=gvisor", "--artifacts", str(tmp_path / "a"))
    lab_id = _sandbox_running(run)
    run.kill(signal.SIGKILL)
    run.finish()
    assert gvisor.processes_of(lab_id), "the sandbox should outlive a SIGKILLed run (then clean removes it)"
    done = invoke("clean")
    assert done.returncode == 0 and f"gVisor sandboxes {gvisor.lab_dir(lab_id)}" in done.stdout, done.stdout
    nothing_of(lab_id)
    assert_clean_leaves_nothing_of(lab_id)
