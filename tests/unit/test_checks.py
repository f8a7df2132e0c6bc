"""scenarios.lost_ack.check on hand-built evidence shaped like real runs.

The numbers follow a real netns run on this kernel (HZ 250): the server's FIN is sent five times,
at intervals of 0.205, 0.208, 0.428 and 0.832 s (a tail-loss probe, then RTOs doubling); the
client's ACK of the first four is dropped by the router; the drop is lifted after the fourth, and
the ACK of the fifth reaches the server. After each FIN the client's TIME-WAIT timer is due 60 s
(plus a jiffy or so) later. The tcp_max_tw_buckets=0 run follows a real docker run: the client
skips TIME-WAIT and answers the server's FIN with RST.

Each variant changes one observation and expects exactly the checks about it to fail.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.evidence import Evidence
from lab.packets import Segment
from lab.records import TimerSample
from lab.timeline import Event
from lab.verdict import verdict
from scenarios import lost_ack

CLIENT, SERVER, ROUTER = "10.77.1.10", "10.77.2.10", "10.77.1.2"
CPORT, PORT = 40082, lost_ack.PORT
ISN_C, ISN_S = 3503583880, 2286647499
TS_C, TS_S = 1518308875, 941650572          # TSval clocks (ms)
T = 1795614094.0                              # the client's SYN
HZ = 250
FIN_GAPS = [0.205, 0.208, 0.428, 0.832]       # between the server's FINs, as in the real run
ONE_WAY = 0.00005                             # client <-> server through the router
TW_DUE_S = 60.003                             # TIME-WAIT due after the FIN that (re)armed it
SAMPLE_EVERY = 0.015                          # the sock_diag sampler's pace in a real run
LOOKUP_S = 0.000013                           # a sample's ask-to-answer time (a 4-tuple lookup)

TIMEWAIT_CHECKS = ["client-closed-first-holds-time-wait", "server-retransmits-fin",
                   "time-wait-acks-every-fin", "final-ack-lost-then-delivered",
                   "time-wait-timer-restarts", "close-completes-client-keeps-time-wait",
                   "time-wait-armed-for-60s", "time-wait-ack-flow-label"]
RST_CHECKS = ["no-time-wait-state", "fin-answered-with-rst", "rst-aborts-server", "rst-flow-label"]
IPV6_ONLY = {"time-wait-ack-flow-label", "rst-flow-label"}     # n/a in these IPv4 runs: no flow label


def seg(t, src, flags, seq, ack, tsval, tsecr, length=0):
    sport, dport = (CPORT, PORT) if src == CLIENT else (PORT, CPORT)
    dst = SERVER if src == CLIENT else CLIENT
    return Segment(t=round(t, 6), src=src, sport=sport, dst=dst, dport=dport, flags=flags,
                   seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, length=length, tsval=tsval,
                   tsecr=tsecr)


def sock(state, expires_ms=0, timer="off", local=CLIENT):
    src, sport, dst, dport = (CLIENT, CPORT, SERVER, PORT) if local == CLIENT else \
        (SERVER, PORT, CLIENT, CPORT)
    return {"state": state, "src": src, "sport": sport, "dst": dst, "dport": dport,
            "timer": timer, "expires_ms": expires_ms, "retrans": 0, "inode": 0}


def state(t, host, st, previous=None, expires_ms=0, timer="off"):
    s = sock(st, expires_ms, timer, local=CLIENT if host == "client" else SERVER)
    return Event(round(t, 6), host, "state", f"{s['src']}:{s['sport']} -> {s['dst']}:{s['dport']} {st}",
                 {"socket": s, "previous": previous})


def handshake_and_client_close():
    """(time, sender, segment) up to the server's ACK of the client's FIN."""
    c, s = ISN_C, ISN_S
    return [
        (T, CLIENT, seg(T, CLIENT, "SYN", c, 0, TS_C, 0)),
        (T + 0.0001, SERVER, seg(T + 0.0001, SERVER, "SYN,ACK", s, c + 1, TS_S, TS_C)),
        (T + 0.0002, CLIENT, seg(T + 0.0002, CLIENT, "ACK", c + 1, s + 1, TS_C, TS_S)),
        (T + 0.0008, CLIENT, seg(T + 0.0008, CLIENT, "PSH,ACK", c + 1, s + 1, TS_C + 1, TS_S, 5)),
        (T + 0.0009, SERVER, seg(T + 0.0009, SERVER, "ACK", s + 1, c + 6, TS_S + 1, TS_C + 1)),
        (T + 0.0012, CLIENT, seg(T + 0.0012, CLIENT, "FIN,ACK", c + 6, s + 1, TS_C + 1, TS_S + 1)),
        (T + 0.0467, SERVER, seg(T + 0.0467, SERVER, "ACK", s + 1, c + 7, TS_S + 47, TS_C + 1)),
    ]


def at(receiver_view: str, t_sent: float, sender: str) -> float:
    """When a segment sent at *t_sent* by *sender* shows in *receiver_view*'s capture."""
    return t_sent if receiver_view == sender else t_sent + ONE_WAY


def timewait_run(*, unacked: tuple[int, ...] = (), restarts: bool = True, drop_works: bool = True,
                 buckets: str = "131072", stale_samples: bool = False, slow_s: float = 0.0) -> Evidence:
    """A lost-ack run. unacked: indexes of server FINs the client leaves unanswered;
    restarts=False: the TIME-WAIT timer keeps the deadline the first FIN set; drop_works=False:
    the router's drop let the ACKs through; stale_samples: right after each retransmitted FIN
    is captured, a sample still shows the old deadline (the stack had not processed it yet);
    slow_s: the client's stack takes that long to process each FIN (restart the timer, send the
    ACK) after its capture, as in a loaded, emulated guest."""
    packets: dict[str, list[Segment]] = {"client": [], "server": []}
    for t, sender, s in handshake_and_client_close():
        sender_name = "client" if sender == CLIENT else "server"
        for view in packets:
            packets[view].append(replace(s, t=round(at(view, t, sender_name), 6)))

    fin_sent = [T + 0.0910]
    for gap in FIN_GAPS:
        fin_sent.append(fin_sent[-1] + gap)
    installed_at = fin_sent[0] - 0.0003
    removed_at = fin_sent[3] + 0.067                  # after the 3rd retransmission's ACK
    drop_times = []
    fins_at_client = []
    for i, t in enumerate(fin_sent):
        ms = round((t - T) * 1000)
        fin = seg(t, SERVER, "FIN,ACK", ISN_S + 1, ISN_C + 7, TS_S + ms, TS_C + 1)
        packets["server"].append(fin)
        fin_c = replace(fin, t=round(t + ONE_WAY, 6))
        packets["client"].append(fin_c)
        fins_at_client.append(fin_c)
        if i in unacked:
            continue
        t_ack = t + ONE_WAY + 0.00002 + slow_s
        ack = seg(t_ack, CLIENT, "ACK", ISN_C + 7, ISN_S + 2, TS_C + ms, TS_S + 91)
        packets["client"].append(ack)
        if t_ack < removed_at:
            drop_times.append(round(t_ack + 0.00002, 6))
        if t_ack >= removed_at or not drop_works:
            packets["server"].append(replace(ack, t=round(t_ack + ONE_WAY, 6)))
    for view in packets:
        packets[view].sort(key=lambda s: s.t)

    # sock_diag: when the client's TIME-WAIT timer was due, as the sampler saw it
    armed_by = [f.t + slow_s for f in fins_at_client] if restarts else [fins_at_client[0].t]
    first_tw = fins_at_client[0].t + 0.0045 + slow_s
    samples = []
    ts = first_tw
    while ts < fin_sent[-1] + 0.2:
        due = max(a for a in armed_by if a <= ts) + TW_DUE_S
        samples.append((round(ts, 6), f"{CLIENT}:{CPORT}-{SERVER}:{PORT}", "TIME_WAIT", "timewait",
                        round((due - ts) * 1000), 0, round(ts + LOOKUP_S, 6)))
        ts += SAMPLE_EVERY
    if stale_samples:
        for prev, f in zip(fins_at_client, fins_at_client[1:]):
            ask = f.t + 0.00001
            samples.append((round(ask, 6), f"{CLIENT}:{CPORT}-{SERVER}:{PORT}", "TIME_WAIT",
                            "timewait", round((prev.t + TW_DUE_S - ask) * 1000), 0,
                            round(ask + LOOKUP_S, 6)))
        samples.sort()
    client_fw1 = [(round(T + 0.0013 + k * SAMPLE_EVERY, 6), f"{CLIENT}:{CPORT}-{SERVER}:{PORT}",
                   "FIN_WAIT1", "on", 204 - 15 * k, 0, round(T + 0.0013 + k * SAMPLE_EVERY + LOOKUP_S, 6))
                  for k in range(3)]

    timeline = [
        state(T - 0.1, "server", "LISTEN"),
        state(T + 0.0013, "client", "FIN_WAIT1", expires_ms=204, timer="on"),
        state(T + 0.0016, "server", "CLOSE_WAIT"),
        Event(installed_at, "router", "fault", "fault lost-ack on: drop client->server tcp flags==ack",
              {"fault": "lost-ack"}),
        state(first_tw, "client", "TIME_WAIT", "FIN_WAIT1", expires_ms=round(
            (fins_at_client[0].t + TW_DUE_S - first_tw) * 1000), timer="timewait"),
        state(fin_sent[0] + 0.0102, "server", "LAST_ACK", "CLOSE_WAIT", expires_ms=192, timer="on"),
        Event(removed_at, "router", "fault", "fault lost-ack off after 4 drops", {"fault": "lost-ack"}),
        state(fin_sent[-1] + 0.0004, "server", "GONE", "LAST_ACK"),
    ]
    end_left_ms = round((fins_at_client[-1 if restarts else 0].t + TW_DUE_S - (fin_sent[-1] + 0.01)) * 1000)
    return Evidence(
        packets=packets,
        timeline=sorted(timeline, key=lambda e: e.t),
        counters={"client": {"TcpExtTW": 1, "TcpOutSegs": 9, "SockstatTcpTw": 1},
                  "router": {"IpForwDatagrams": 17},
                  "server": {"TcpRetransSegs": 4, "TcpExtTCPLossProbes": 1, "TcpExtTCPTimeouts": 3}},
        sysctls={"client": {"net.ipv4.tcp_max_tw_buckets": buckets, "net.ipv4.tcp_timestamps": "1"},
                 "router": {"net.ipv4.ip_forward": "1"},
                 "server": {"net.ipv4.tcp_max_tw_buckets": "131072"}},
        addresses={"client": CLIENT, "router": ROUTER, "server": SERVER},
        faults={"lost-ack": {
            "name": "lost-ack", "description": "drop client->server tcp flags==ack",
            "nft_rule": f"ip saddr {{ {CLIENT} }} ip daddr {{ {SERVER} }} tcp flags & "
                        "(fin|syn|rst|psh|ack|urg) == (ack) counter log prefix \"lost-ack \" group 1 "
                        "queue-threshold 1 drop",
            "installed_at": installed_at, "removed_at": removed_at,
            "dropped": len(drop_times) if drop_works else 0,
            "drop_times": drop_times if drop_works else []}},
        facts={"server_so_error": 0, "server_state_after": "CLOSE",
               "client_sockets_at_end": [sock("TIME_WAIT", end_left_ms, "timewait")]},
        hz=HZ,
        timer_samples={"client": client_fw1 + samples},
    )


def no_timewait_run() -> Evidence:
    """A lost-ack run with the client's tcp_max_tw_buckets=0, as a real docker run went."""
    packets: dict[str, list[Segment]] = {"client": [], "server": []}
    for t, sender, s in handshake_and_client_close():
        name = "client" if sender == CLIENT else "server"
        for view in packets:
            packets[view].append(replace(s, t=round(at(view, t, name), 6)))
    t_fin = T + 0.0682
    fin = seg(t_fin, SERVER, "FIN,ACK", ISN_S + 1, ISN_C + 7, TS_S + 68, TS_C + 1)
    rst = seg(t_fin + ONE_WAY + 0.00001, CLIENT, "RST", ISN_C + 7, 0, None, None)
    packets["server"] += [fin, replace(rst, t=round(rst.t + ONE_WAY, 6))]
    packets["client"] += [replace(fin, t=round(t_fin + ONE_WAY, 6)), rst]
    timeline = [
        state(T - 0.1, "server", "LISTEN"),
        state(T + 0.0013, "client", "FIN_WAIT1", expires_ms=204, timer="on"),
        state(T + 0.0081, "server", "CLOSE_WAIT"),
        state(T + 0.0479, "client", "GONE", "FIN_WAIT1", expires_ms=172, timer="on"),
        Event(t_fin - 0.0011, "router", "fault", "fault lost-ack on", {"fault": "lost-ack"}),
        state(t_fin + 0.0114, "server", "GONE", "CLOSE_WAIT"),
        Event(t_fin + 0.046, "router", "fault", "fault lost-ack off after 0 drops", {"fault": "lost-ack"}),
    ]
    return Evidence(
        packets=packets, timeline=sorted(timeline, key=lambda e: e.t),
        counters={"client": {"TcpExtTCPTimeWaitOverflow": 1, "TcpOutRsts": 1, "TcpOutSegs": 5},
                  "router": {"IpForwDatagrams": 9}, "server": {"TcpInSegs": 5}},
        sysctls={"client": {"net.ipv4.tcp_max_tw_buckets": "0"}, "router": {"net.ipv4.ip_forward": "1"},
                 "server": {"net.ipv4.tcp_max_tw_buckets": "131072"}},
        addresses={"client": CLIENT, "router": ROUTER, "server": SERVER},
        faults={"lost-ack": {"name": "lost-ack", "installed_at": t_fin - 0.0011,
                             "removed_at": t_fin + 0.046, "dropped": 0, "drop_times": []}},
        facts={"server_so_error": 104, "server_state_after": "CLOSE", "client_sockets_at_end": []},
        hz=HZ, timer_samples={"client": [(round(T + 0.0013, 6), f"{CLIENT}:{CPORT}-{SERVER}:{PORT}",
                                          "FIN_WAIT1", "on", 204, 0, round(T + 0.0013 + LOOKUP_S, 6))]},
    )


def by_name(checks):
    return {c.name: c for c in checks}


def failed(checks):
    """The checks that did not pass, less those that cannot apply to IPv4 (they must say n/a)."""
    assert all(c.outcome == "n/a" for c in checks if c.name in IPV6_ONLY)
    return sorted(c.name for c in checks if not c.passed and c.name not in IPV6_ONLY)


# -- (a) a correct TIME-WAIT run ---------------------------------------------------------------

def test_correct_run_passes_every_check():
    checks = lost_ack.SCENARIO.judge(timewait_run())
    assert [c.name for c in checks] == TIMEWAIT_CHECKS
    assert failed(checks) == [], [c.observed for c in checks if not c.passed]
    assert verdict(checks) == "pass"
    for c in checks:
        assert c.citation and c.expected and c.observed


def test_correct_run_observed_values():
    c = by_name(lost_ack.SCENARIO.judge(timewait_run()))
    assert c["server-retransmits-fin"].values["intervals_s"] == FIN_GAPS
    assert c["server-retransmits-fin"].values["fin_seqs"] == [ISN_S + 1]
    assert c["time-wait-acks-every-fin"].values == {"fins_at_client": 5, "acks_from_client": 5}
    v = c["final-ack-lost-then-delivered"].values
    assert (v["acks_under_drop"], v["acks_under_drop_seen_by_server"], v["nft_dropped"],
            v["acks_after_lift"], v["acks_after_lift_seen_by_server"]) == (4, 0, 4, 1, 1)
    assert c["time-wait-timer-restarts"].values["due_after_fin_ms"] == [60003] * 4
    assert c["time-wait-timer-restarts"].values["tolerance_ms"] == pytest.approx(28)
    assert c["time-wait-armed-for-60s"].values["first_expires_ms"] == pytest.approx(59998.5, abs=1)


# -- (b) one retransmitted FIN left unACKed ---------------------------------------------------

@pytest.mark.parametrize("fin", [1, 2, 3])
def test_unacked_retransmitted_fin_fails_that_check(fin):
    checks = lost_ack.SCENARIO.judge(timewait_run(unacked=(fin,)))
    assert failed(checks) == ["time-wait-acks-every-fin"]
    c = by_name(checks)["time-wait-acks-every-fin"]
    assert c.values == {"fins_at_client": 5, "acks_from_client": 4}
    assert "unanswered at" in c.observed
    assert verdict(checks) == "fail"


def test_unacked_last_fin_fails_that_check():
    # the last FIN: no later ACK can stand in for the missing one (and none reaches the server)
    checks = lost_ack.SCENARIO.judge(timewait_run(unacked=(4,)))
    assert failed(checks) == ["final-ack-lost-then-delivered", "time-wait-acks-every-fin"]
    c = by_name(checks)["time-wait-acks-every-fin"]
    assert c.values == {"fins_at_client": 5, "acks_from_client": 4}
    assert f"unanswered at [{sum(FIN_GAPS):.3f}]" in c.observed
    assert verdict(checks) == "fail"


def test_timer_not_restarted_fails_that_check():
    checks = lost_ack.SCENARIO.judge(timewait_run(restarts=False))
    assert failed(checks) == ["time-wait-timer-restarts"]
    c = by_name(checks)["time-wait-timer-restarts"]
    # due 60 s after the first FIN, so never 60 s after a later one
    assert len(c.values["due_after_fin_ms"]) == 4
    assert all(o is None or abs(o - 60000) > c.values["tolerance_ms"] for o in c.values["due_after_fin_ms"])


def test_a_fin_processed_late_restarts_the_timer_before_its_ack_leaves():
    """Under TCG a FIN was processed 44 ms after its capture: the restart lies between the FIN's
    arrival and its ACK's departure, both on the wire, and is judged against that interval."""
    checks = lost_ack.SCENARIO.judge(timewait_run(slow_s=0.044))
    assert failed(checks) == []
    c = by_name(checks)["time-wait-timer-restarts"]
    assert c.values["due_after_fin_ms"] == [60047] * 4 and c.values["ack_after_fin_ms"] == [44] * 4


def test_a_restart_later_than_the_ack_still_fails():
    """The timer is restarted before the ACK is sent: a deadline set well after the ACK left is a
    failure, whatever the delay."""
    ev = timewait_run(slow_s=0.044)
    ev.packets["client"] = [s if not (s.src == CLIENT and s.flags == "ACK" and s.t > T + 0.09)
                            else replace(s, t=round(s.t - 0.044, 6)) for s in ev.packets["client"]]
    c = by_name(lost_ack.SCENARIO.judge(ev))["time-wait-timer-restarts"]
    assert c.outcome == "fail", c.observed


def test_a_sample_predating_the_fins_processing_is_not_a_missed_restart():
    checks = lost_ack.SCENARIO.judge(timewait_run(stale_samples=True))
    assert failed(checks) == []
    assert by_name(checks)["time-wait-timer-restarts"].values["due_after_fin_ms"] == [60003] * 4


def test_acks_reaching_the_server_under_the_drop_fail_that_check():
    checks = lost_ack.SCENARIO.judge(timewait_run(drop_works=False))
    assert failed(checks) == ["final-ack-lost-then-delivered"]
    assert by_name(checks)["final-ack-lost-then-delivered"].values["acks_under_drop_seen_by_server"] == 4


# -- (c) the expectation follows the sysctl -------------------------------------------------

def test_tw_buckets_zero_run_passes_the_rst_path():
    checks = lost_ack.SCENARIO.judge(no_timewait_run())
    assert [c.name for c in checks] == RST_CHECKS
    assert failed(checks) == [], [c.observed for c in checks if not c.passed]
    assert verdict(checks) == "pass"
    assert by_name(checks)["fin-answered-with-rst"].values == {
        "fins_at_client": 1, "rsts_from_client": 1, "TcpOutRsts": 1}


def test_tw_buckets_zero_but_time_wait_observed_fails_the_rst_path():
    # the sysctl says no TIME-WAIT, the run shows TIME-WAIT: judged against the sysctl
    checks = lost_ack.SCENARIO.judge(timewait_run(buckets="0"))
    assert [c.name for c in checks] == RST_CHECKS
    assert failed(checks) == sorted(set(RST_CHECKS) - IPV6_ONLY)
    c = by_name(checks)
    assert c["no-time-wait-state"].values["client_time_wait"] is True
    assert c["fin-answered-with-rst"].values["rsts_from_client"] == 0
    assert verdict(checks) == "fail"


def test_rst_path_needs_the_overflow_counter():
    ev = no_timewait_run()
    ev.counters["client"].pop("TcpExtTCPTimeWaitOverflow")
    assert failed(lost_ack.SCENARIO.judge(ev)) == ["no-time-wait-state"]


def test_a_client_connection_never_sampled_leaves_no_time_wait_unjudged():
    """A CI run's whole close fell between two of the sampler's dumps: "never entered TIME_WAIT"
    of a socket sock_diag never saw is no observation, so the check is inconclusive, not a pass."""
    ev = no_timewait_run()
    ev.timeline = [e for e in ev.timeline if e.host != "client"]
    c = by_name(lost_ack.SCENARIO.judge(ev))["no-time-wait-state"]
    assert c.outcome == "inconclusive", c.observed
    assert "never sampled" in c.observed and c.values["client_sampled"] is False


def test_a_server_never_sampled_leaves_closer_holds_time_wait_unjudged():
    ev = timewait_run()
    ev.timeline = [e for e in ev.timeline if e.host != "server"]
    c = by_name(lost_ack.SCENARIO.judge(ev))["client-closed-first-holds-time-wait"]
    assert c.outcome == "inconclusive" and c.values["server_sampled"] is False, c.observed


def test_a_client_never_sampled_leaves_closer_holds_time_wait_unjudged():
    ev = timewait_run()
    ev.timeline = [e for e in ev.timeline if e.host != "client"]
    c = by_name(lost_ack.SCENARIO.judge(ev))["client-closed-first-holds-time-wait"]
    assert c.outcome == "inconclusive" and c.values["client_sampled"] is False, c.observed
    ev.timeline.append(state(T + 1, "server", "TIME_WAIT"))        # a server in TIME_WAIT still fails it
    assert by_name(lost_ack.SCENARIO.judge(ev))["client-closed-first-holds-time-wait"].outcome == "fail"


def test_the_wire_check_of_a_linux_server_never_sampled_is_inconclusive_not_passed():
    """lost-ack with a gVisor client: the prober's ACK says the client holds TIME-WAIT; "the Linux
    server never entered TIME_WAIT" needs its socket seen by sock_diag."""
    from scenarios import _lost_ack_wire as wired

    ev = timewait_run()
    ev.options = {"stacks": {"client": "gvisor", "server": "linux"}}
    ev.facts["client_probe"] = {"probe": "ack", "answers": [{"answer": "ack"}]}
    check = wired.closer_holds_time_wait_wire(lost_ack.Seen.of(ev))
    assert check.outcome == "pass", check.observed
    ev.timeline = [e for e in ev.timeline if e.host != "server"]
    check = wired.closer_holds_time_wait_wire(lost_ack.Seen.of(ev))
    assert check.outcome == "inconclusive" and "never sampled" in check.observed, check.observed
    ev.facts["client_probe"] = {"probe": "ack", "answers": [{"answer": "rst"}]}     # a wrong answer still fails
    assert wired.closer_holds_time_wait_wire(lost_ack.Seen.of(ev)).outcome == "fail"


def test_rst_path_needs_the_servers_econnreset():
    # the server's socket must report the reset (SO_ERROR ECONNRESET, tcp_reset()); the peer
    # keeps the first error any step read, so a later step no longer hides it
    ev = no_timewait_run()
    ev.facts["server_so_error"] = 0
    assert failed(lost_ack.SCENARIO.judge(ev)) == ["rst-aborts-server"]


def test_rst_with_the_wrong_sequence_number_does_not_answer_the_fin():
    ev = no_timewait_run()
    ev.packets["client"] = [replace(s, seq=s.seq + 1) if s.has("RST") else s for s in ev.packets["client"]]
    assert failed(lost_ack.SCENARIO.judge(ev)) == ["fin-answered-with-rst"]


def test_missing_sysctl_means_the_default_time_wait_path():
    ev = timewait_run()
    ev.sysctls["client"].pop("net.ipv4.tcp_max_tw_buckets")
    assert [c.name for c in lost_ack.SCENARIO.judge(ev)] == TIMEWAIT_CHECKS


# -- nothing observed, nothing passed -------------------------------------------------------

@pytest.mark.parametrize("make", [timewait_run, no_timewait_run])
def test_nothing_observed_fails_every_check(make):
    ev = make()
    ev.packets = {"client": [], "server": []}
    ev.timeline = []
    ev.timer_samples = {}
    ev.counters = {}
    ev.facts = {}
    ev.faults = {}
    checks = lost_ack.SCENARIO.judge(ev)
    assert checks and all(not c.passed for c in checks), [c.name for c in checks if c.passed]
    assert verdict(checks) == "fail"


# -- a hole in the sampling is not a kernel failure ----------------------------------------

def _without_samples_after_fin(ev: Evidence, k: int) -> tuple[float, float]:
    """Drop every sock_diag sample between the client's k-th FIN and the next (the sampler fell
    behind there, as it did under 50 parallel labs) and record that gap in its cadence."""
    fins = [s for s in ev.packets["client"] if s.src == SERVER and s.has("FIN")]
    lo, hi = fins[k].t, fins[k + 1].t if k + 1 < len(fins) else fins[k].t + 5
    ev.timer_samples["client"] = [x for x in ev.timer_samples["client"] if not lo - 0.001 < x[0] < hi]
    ev.sampler = {"gaps": [(lo - 0.002, hi + 0.004)], "gap_threshold_ms": 10.0}
    return lo, hi


def test_no_sample_after_a_fin_is_inconclusive_not_a_fail():
    ev = timewait_run()
    lo, hi = _without_samples_after_fin(ev, 2)
    checks = lost_ack.SCENARIO.judge(ev)
    c = by_name(checks)["time-wait-timer-restarts"]
    assert c.outcome == "inconclusive", c.observed
    assert c.values["due_after_fin_ms"] == [60003, None, 60003, 60003]
    assert f"{round((hi - lo + 0.006) * 1000, 1)} ms" in c.observed     # the gap is named
    assert failed(checks) == ["time-wait-timer-restarts"]              # not passed either
    assert verdict(checks) == "error"


def test_a_hole_does_not_hide_a_real_failure():
    ev = timewait_run(restarts=False)
    _without_samples_after_fin(ev, 2)
    c = by_name(lost_ack.SCENARIO.judge(ev))["time-wait-timer-restarts"]
    assert c.outcome == "fail", c.observed


# -- a segment missing from a capture that dropped packets is not judged ---------------------

def outcomes(checks) -> dict[str, str]:
    return {c.name: c.outcome for c in checks}


def test_an_unanswered_fin_in_a_dropping_capture_is_inconclusive():
    """The same run, one ACK absent from client.pcap: a failure when the capture is complete
    (above), inconclusive when its tcpdump dropped packets (the ACK may be among them)."""
    ev = timewait_run(unacked=(2,))
    ev.captures = {"client": {"captured": 14, "received": 15, "dropped": 1}}
    c = by_name(lost_ack.SCENARIO.judge(ev))["time-wait-acks-every-fin"]
    assert c.outcome == "inconclusive" and "tcpdump in client dropped 1 packets" in c.observed


def test_a_rst_answering_a_fin_fails_whatever_the_capture_dropped():
    ev = timewait_run(unacked=(2,))
    ev.captures = {"client": {"captured": 14, "received": 15, "dropped": 1}}
    fin = [s for s in ev.packets["client"] if s.src == SERVER and s.has("FIN")][2]
    ev.packets["client"].append(seg(fin.t + 0.00002, CLIENT, "RST", ISN_C + 7, 0, None, None))
    ev.packets["client"].sort(key=lambda s: s.t)
    assert outcomes(lost_ack.SCENARIO.judge(ev))["time-wait-acks-every-fin"] == "fail"


def test_the_delivered_ack_missing_from_a_dropping_server_pcap_is_inconclusive():
    """After the drop is lifted the client's ACK is absent from server.pcap: with a complete
    capture the ACK was not delivered (fail); with tcpdump drops there it may be among them."""
    ev = timewait_run()
    last_ack = [s for s in ev.packets["server"] if s.src == CLIENT and s.flags == "ACK"][-1]
    ev.packets["server"] = [s for s in ev.packets["server"] if s is not last_ack]
    assert outcomes(lost_ack.SCENARIO.judge(ev))["final-ack-lost-then-delivered"] == "fail"
    ev.captures = {"server": {"captured": 12, "received": 13, "dropped": 1}}
    assert outcomes(lost_ack.SCENARIO.judge(ev))["final-ack-lost-then-delivered"] == "inconclusive"


def test_acks_reaching_the_server_under_the_drop_fail_whatever_was_dropped():
    ev = timewait_run(drop_works=False)
    ev.captures = {"server": {"captured": 12, "received": 13, "dropped": 1},
                   "client": {"captured": 12, "received": 13, "dropped": 1}}
    assert outcomes(lost_ack.SCENARIO.judge(ev))["final-ack-lost-then-delivered"] == "fail"


def test_a_fin_missing_from_a_dropping_server_pcap_is_inconclusive():
    ev = timewait_run()
    fin = [s for s in ev.packets["server"] if s.src == SERVER and s.has("FIN")][2]      # merges two RTO gaps
    ev.packets["server"] = [s for s in ev.packets["server"] if s is not fin]
    assert outcomes(lost_ack.SCENARIO.judge(ev))["server-retransmits-fin"] == "fail"
    ev.captures = {"server": {"captured": 12, "received": 13, "dropped": 1}}
    assert outcomes(lost_ack.SCENARIO.judge(ev))["server-retransmits-fin"] == "inconclusive"


def _first_time_wait_sample_late(ev: Evidence, late_s: float) -> float:
    """The sampler stalled from the first FIN's arrival until *late_s* after it: the first
    TIME_WAIT sample comes then, reading what is left of the timer the last FIN re-armed."""
    fins = [s for s in ev.packets["client"] if s.src == SERVER and s.has("FIN")]
    at = fins[0].t + late_s
    rearmed = max(f.t for f in fins if f.t <= at)
    left = round((rearmed + TW_DUE_S - at) * 1000)
    ev.timeline = [replace(e, t=at, data={**e.data, "socket": {**e.data["socket"], "expires_ms": left}})
                   if e.host == "client" and e.data.get("socket", {}).get("state") == "TIME_WAIT" else e
                   for e in ev.timeline]
    ev.timeline.sort(key=lambda e: e.t)
    ev.timer_samples["client"] = [x for x in ev.timer_samples["client"] if not fins[0].t < x[0] < at]
    return fins[0].t


def test_time_wait_first_read_late_in_a_sampler_stall_is_inconclusive():
    """The first TIME_WAIT sample came 2.9 s after the first FIN (1.2 s after the last, which
    re-armed the timer): it reads 58.8 s, not because the timer was armed short but because the
    sampler was behind. Inconclusive when the cadence shows the stall; a failure without it."""
    ev = timewait_run()
    t = _first_time_wait_sample_late(ev, 2.9)
    c = by_name(lost_ack.SCENARIO.judge(ev))["time-wait-armed-for-60s"]
    assert c.outcome == "fail" and c.values["first_expires_ms"] < 59000
    ev.sampler = {"gaps": [(t - 0.001, t + 2.9)], "gap_threshold_ms": 10.0}
    c = by_name(lost_ack.SCENARIO.judge(ev))["time-wait-armed-for-60s"]
    assert c.outcome == "inconclusive", c.observed
    assert "2901.0 ms" in c.observed and "the sampler fell behind" in c.observed


def test_a_time_wait_sample_before_its_ack_left_reads_the_old_timer_and_is_not_the_arming():
    """Seen under TCG (CI): sock_diag caught the client 3.2 ms after the FIN arrived, in TIME_WAIT
    but with the FIN_WAIT2 timer's 57 688 ms left - tcp_timewait_state_process() sets the substate
    before inet_twsk_reschedule() - and 13 ms later with 59 988 ms. The ACK the kernel sends after
    re-arming bounds it: the first sample asked after that ACK is the arming. Without such a
    sample the early reading is all there is, and fails."""
    ev = timewait_run()
    fin = next(s for s in ev.packets["client"] if s.src == SERVER and s.has("FIN"))
    ack = min(s.t for s in ev.packets["client"] if s.src == CLIENT and s.t > fin.t)
    early = fin.t + (ack - fin.t) / 2

    def first_tw(e):
        return e.host == "client" and e.data.get("socket", {}).get("state") == "TIME_WAIT"
    tw = [e for e in ev.timeline if first_tw(e)][0]
    ev.timeline = [replace(e, t=early, data={**e.data, "asked": early,
                                             "socket": {**e.data["socket"], "expires_ms": 57688}})
                   if e is tw else e for e in ev.timeline]
    ev.timeline.sort(key=lambda e: e.t)
    key = next(x for x in ev.timer_samples["client"] if x[2] == "TIME_WAIT")[1]
    ev.timer_samples["client"] = sorted(
        [x for x in ev.timer_samples["client"] if not (x[2] == "TIME_WAIT" and x[0] < ack + 0.013)]
        + [TimerSample(ack + 0.013, key, "TIME_WAIT", "timewait", 59988, 0, ack + 0.0131)])
    c = by_name(lost_ack.SCENARIO.judge(ev))["time-wait-armed-for-60s"]
    assert c.outcome == "pass", c.observed
    assert c.values["first_expires_ms"] == 59988 and c.values["read_before_rearm_ms"] == 57688
    assert "not yet re-armed" in c.observed
    ev.timer_samples["client"] = [x for x in ev.timer_samples["client"] if x[2] != "TIME_WAIT"]
    assert by_name(lost_ack.SCENARIO.judge(ev))["time-wait-armed-for-60s"].outcome == "fail"


def test_time_wait_armed_short_fails_even_in_a_sampler_stall():
    """A reading 30 s short cannot be explained by 2.9 s of stall."""
    ev = timewait_run()
    t = _first_time_wait_sample_late(ev, 2.9)
    ev.sampler = {"gaps": [(t - 0.001, t + 2.9)], "gap_threshold_ms": 10.0}
    ev.timeline = [replace(e, data={**e.data, "socket": {**e.data["socket"], "expires_ms": 30000}})
                   if e.host == "client" and e.data.get("socket", {}).get("state") == "TIME_WAIT" else e
                   for e in ev.timeline]
    assert outcomes(lost_ack.SCENARIO.judge(ev))["time-wait-armed-for-60s"] == "fail"


def test_rst_path_segments_missing_from_dropping_captures_are_inconclusive():
    """tcp_max_tw_buckets=0: the client's RST absent from client.pcap, then from server.pcap. The
    counters (TcpOutRsts) and the server's socket (CLOSE, ECONNRESET) say it was sent and did its
    work; a complete capture without it fails, one with tcpdump drops cannot judge."""
    ev = no_timewait_run()
    ev.packets["client"] = [s for s in ev.packets["client"] if not s.has("RST")]
    assert outcomes(lost_ack.SCENARIO.judge(ev))["fin-answered-with-rst"] == "fail"
    ev.captures = {"client": {"captured": 8, "received": 9, "dropped": 1}}
    assert outcomes(lost_ack.SCENARIO.judge(ev))["fin-answered-with-rst"] == "inconclusive"
    ev = no_timewait_run()
    ev.packets["server"] = [s for s in ev.packets["server"] if not s.has("RST")]
    assert outcomes(lost_ack.SCENARIO.judge(ev))["rst-aborts-server"] == "fail"
    ev.captures = {"server": {"captured": 8, "received": 9, "dropped": 1}}
    assert outcomes(lost_ack.SCENARIO.judge(ev))["rst-aborts-server"] == "inconclusive"
    ev.facts["server_so_error"] = 0               # the socket was not reset: the kernel's, fails
    assert outcomes(lost_ack.SCENARIO.judge(ev))["rst-aborts-server"] == "fail"
