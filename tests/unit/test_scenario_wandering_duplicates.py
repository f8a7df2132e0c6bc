"""Unit tests (no root) for what wandering-duplicates rests on: the peer's blast/drain ops over
loopback (patterns phased by stream offset, markers counted across reads), and its checks on
empty evidence under each expectation: nothing observed must never pass."""

from __future__ import annotations

import sys
import threading

import pytest

from lab.backends.base import Host
from lab.evidence import Evidence
from lab.peer import Peer
from lab.timeline import Timeline
from scenarios import wandering_duplicates

LOOPBACK = "127.0.0.1"


@pytest.fixture
def pair():
    timeline = Timeline()
    host = Host(name="local", spec=None, nspath="/proc/self/ns/net", exec_prefix=[],
                python=[sys.executable, "-u"])
    server, client = Peer(host, timeline), Peer(host, timeline)
    port = server.listen("L", 0, addr=LOOPBACK)["local"][1]
    client.connect("c", LOOPBACK, port)
    server.accept("L", as_="s")
    yield server, client
    server.stop()
    client.stop()


def test_blast_and_drain_count_markers_across_reads(pair):
    server, client = pair
    n = 3_000_001                                     # several 1 MB chunks and reads, odd length
    got = {}
    th = threading.Thread(target=lambda: got.setdefault(
        "r", server.drain("s", n, keep=10, markers=("OLD-", "D-OL", "NEW-"))))
    th.start()
    sent = client.blast("c", n, "OLD-")
    th.join()
    res = got["r"]
    assert sent.ok and sent["sent"] == n
    assert res.ok and res["len"] == n and not res["timeout"] and not res["eof"]
    assert res.data == b"OLD-OLD-OL"
    assert res["markers"] == {"OLD-": n // 4, "D-OL": n // 4 - 1, "NEW-": 0}


def test_blast_offset_continues_the_pattern(pair):
    server, client = pair
    client.blast("c", 6, "NEW-", offset=0)
    client.blast("c", 7, "NEW-", offset=6)             # the second send goes on where the first stopped
    res = server.drain("s", 13, keep=13)
    assert res.data == b"NEW-NEW-NEW-N"


def test_drain_stops_at_eof_and_timeout(pair):
    server, client = pair
    client.blast("c", 100, "x")
    res = server.drain("s", 1000, timeout_s=0.2)
    assert res.ok and res["len"] == 100 and res["timeout"] and not res["eof"]
    client.close("c")
    res = server.drain("s", 1000, timeout_s=2)
    assert res.ok and res["len"] == 0 and res["eof"] and not res["timeout"]


def empty_evidence(sysctls: dict) -> Evidence:
    return Evidence(packets={"client": [], "server": [], "router": []}, timeline=[],
                    counters={}, sysctls=sysctls,
                    addresses={"client": "10.77.1.10", "router": "10.77.1.2", "server": "10.77.2.10"},
                    faults={}, facts={}, hz=250)


@pytest.mark.parametrize("sysctls", [
    {},
    {"client": {"net.ipv4.tcp_timestamps": "0"}, "server": {"net.ipv4.tcp_timestamps": "0",
                                                             "net.ipv4.tcp_rfc1337": "0"}},
    {"server": {"net.ipv4.tcp_rfc1337": "1"}},
])
def test_wandering_duplicates_nothing_observed_fails(sysctls):
    checks = wandering_duplicates.SCENARIO.judge(empty_evidence(sysctls))
    assert len(checks) >= 9
    assert not [c.name for c in checks if c.passed]
    assert all(c.citation and c.expected and c.observed for c in checks)


# -- the checks on two real netns runs (tests/data/scenarios/wandering-duplicates*.json.gz: their
# report.json with sock_diag's timer samples, the sampler's cadence and the payloads of segments
# up to one MSS), then with one observation changed --------------------------------------------


from lab.timeline import Event
from scenarios import wandering_duplicates as sc

from . import records


def _by_name(ev: Evidence) -> dict:
    return {c.name: c for c in sc.SCENARIO.judge(ev)}


def _outcomes(ev: Evidence) -> dict:
    return {c.name: c.outcome for c in sc.SCENARIO.judge(ev)}


def _replay_a(ev: Evidence):
    """(the replayed (a) segment at the server, TIME-WAIT's ACK of it)."""
    t = ev.facts["a"]["injected_at"]
    segs = [s for s in ev.packets["server"] if sc.PORT_A in (s.sport, s.dport) and s.t >= t - 0.001]
    return next(s for s in segs if s.length), next(s for s in segs if s.sport == sc.PORT and s.flags == "ACK")


def test_real_runs_pass_and_paws_without_timestamps_is_not_applicable():
    assert set(_outcomes(records.evidence("wandering-duplicates")).values()) == {"pass"}
    got = _outcomes(records.evidence("wandering-duplicates-no-timestamps"))
    assert got.pop("paws-in-time-wait") == "n/a"
    assert len(got) == 9 and set(got.values()) == {"pass"}
    c = _by_name(records.evidence("wandering-duplicates-no-timestamps"))["paws-in-time-wait"]
    assert "PAWS cannot act" in c.observed and "PAWSTimewait +0 shows nothing" in c.observed


def test_timestamps_seen_where_they_are_off_fails_paws():
    ev = records.evidence("wandering-duplicates")           # its segments carry TSvals
    for h in ("client", "server"):
        ev.sysctls[h]["net.ipv4.tcp_timestamps"] = "0"
    assert _outcomes(ev)["paws-in-time-wait"] == "fail"


def test_no_sample_after_the_replay_is_inconclusive_and_a_wrong_deadline_fails():
    ev = records.evidence("wandering-duplicates")
    replay, ack = _replay_a(ev)
    key = f"{ev.addresses['server']}:{sc.PORT}-{ev.addresses['client']}:{sc.PORT_A}"
    kept = [s for s in ev.timer_samples["server"] if not (s.key == key and replay.t - 0.01 < s.asked < replay.t + 0.5)]
    ev.timer_samples["server"] = kept
    ev.sampler["gaps"] = [[replay.t - 0.01, replay.t + 0.5]]
    c = _by_name(ev)["time-wait-timer-restarted"]
    assert c.outcome == "inconclusive", c.observed
    assert "no sock_diag sample of the TIME-WAIT" in c.observed and "510.0 ms" in c.observed
    # samples there, showing the deadline from before the replay (not restarted): a failure
    ev = records.evidence("wandering-duplicates")
    ev.timer_samples["server"] = [s._replace(expires_ms=s.expires_ms - 300) if s.key == key and s.asked > ack.t else s
                                  for s in ev.timer_samples["server"]]
    assert _outcomes(ev)["time-wait-timer-restarted"] == "fail"


def test_a_replay_missing_from_server_pcap_judges_nothing():
    ev = records.evidence("wandering-duplicates")
    replay, _ack = _replay_a(ev)
    ev.packets["server"] = [s for s in ev.packets["server"] if s is not replay]
    got = _by_name(ev)
    for name in ("time-wait-acks-old-duplicate", "no-application-sees-it", "paws-in-time-wait",
                 "time-wait-timer-restarted", "time-wait-and-the-peers-rst"):
        assert got[name].outcome == "inconclusive", (name, got[name].observed)
        assert "the replayed segment is not in server.pcap" in got[name].observed


def test_time_wait_answer_missing_fails_unless_tcpdump_dropped_packets():
    ev = records.evidence("wandering-duplicates")
    _replay, ack = _replay_a(ev)
    ev.packets["server"] = [s for s in ev.packets["server"] if s is not ack]
    assert _outcomes(ev)["time-wait-acks-old-duplicate"] == "fail"
    ev.captures["server"] = {"captured": 600, "received": 627, "dropped": 27}
    c = _by_name(ev)["time-wait-acks-old-duplicate"]
    assert c.outcome == "inconclusive" and "tcpdump in server dropped 27 packets" in c.observed


def test_rst_kill_timed_only_where_the_sampler_was_polling():
    """tcp_rfc1337=0: the RST must kill TIME-WAIT within 100 ms. Seen gone 150 ms after it: a
    failure when the sampler kept its pace, inconclusive when it was not polling then."""
    ev = records.evidence("wandering-duplicates")
    ev.sysctls["server"]["net.ipv4.tcp_rfc1337"] = "0"
    ev.facts["a"]["tw_after"] = None
    rst = next(s for s in ev.packets["server"] if s.sport == sc.PORT_A and s.has("RST"))
    sock = {**ev.facts["a"]["tw_before"], "state": "GONE"}

    def gone_after(dt: float) -> Evidence:
        e = records.evidence("wandering-duplicates")
        e.sysctls["server"]["net.ipv4.tcp_rfc1337"] = "0"
        e.facts["a"]["tw_after"] = None
        e.timeline.append(Event(rst.t + dt, "server", "state", "gone", {"socket": sock, "previous": "TIME_WAIT"}))
        return e
    assert _outcomes(gone_after(0.02))["time-wait-and-the-peers-rst"] == "pass"
    assert _outcomes(gone_after(0.15))["time-wait-and-the-peers-rst"] == "fail"
    e = gone_after(0.15)
    e.sampler["gaps"] = [[rst.t - 0.005, rst.t + 0.149]]
    c = _by_name(e)["time-wait-and-the-peers-rst"]
    assert c.outcome == "inconclusive" and "the sampler was not polling when the RST arrived" in c.observed


def test_no_poll_between_the_abort_and_the_reopening_proves_no_bypass():
    """No TIME_WAIT seen between the RST and the new SYN means something only if sock_diag was
    asked in between."""
    ev = records.evidence("wandering-duplicates")
    syns = [s for s in ev.packets["client"] if s.sport == sc.PORT_B and s.flags == "SYN"]
    ev.sampler["gaps"] = [[syns[0].t + 0.01, syns[-1].t + 0.001]]
    c = _by_name(ev)["time-wait-bypassed"]
    assert c.outcome == "inconclusive" and "no sock_diag poll between the RST and the new SYN" in c.observed


def test_an_old_connection_slower_than_the_isn_clock_leaves_the_replay_nothing_to_show():
    """On a slow machine the old connection may not outrun the ISN clock: the scenario then sets
    up no replay, and the rules about it are not applicable - not failed."""
    for name in ("wandering-duplicates", "wandering-duplicates-no-timestamps"):
        ev = records.evidence(name)
        b = ev.facts["b"]
        for k in ("server_sent_before", "client_sent_before", "server_read_before", "injected_at",
                  "client_sent_tail", "server_read_tail", "server_read_tail_text", "server_counters"):
            b.pop(k)
        b.update(aligned=False, why_not="the old connection did not move enough data")
        got = _outcomes(ev)
        replayed = [n for n in got if n in ("old-segment-in-new-window", "paws-rejects-old-segment",
                                            "old-segment-accepted", "application-reads-only-new-bytes",
                                            "application-reads-old-bytes")]
        assert len(replayed) == 3 and {got[n] for n in replayed} == {"n/a"}, got
        assert got["time-wait-bypassed"] == got["isn-clock"] == "pass"
        # the router's copies missing instead is the lab's hole: inconclusive
        b.pop("old_seq")
        b["why_not"] = "copied 1 SYNs, 2 SYN-ACKs, 1 old data segments"
        assert _outcomes(ev)["old-segment-in-new-window"] == "inconclusive"


def test_a_failed_reconnect_fails_the_bypass_and_leaves_the_rest_nothing():
    ev = records.evidence("wandering-duplicates")
    b = ev.facts["b"]
    ev.facts["b"] = {k: b[k] for k in ("server_recv_after_abort", "old_connect_t", "waited_before_reopen_s",
                                       "old_phase_s")}
    ev.facts["b"]["reconnect"] = {"ok": False, "errno": 98, "error": "EADDRINUSE"}
    syns = [s for s in ev.packets["client"] if s.sport == sc.PORT_B and s.flags == "SYN"]
    ev.packets["client"] = [s for s in ev.packets["client"] if not (s.sport == sc.PORT_B and s.t >= syns[-1].t)]
    got = _outcomes(ev)
    assert got["time-wait-bypassed"] == "fail"
    assert {got[k] for k in ("isn-clock", "old-segment-in-new-window", "paws-rejects-old-segment",
                             "application-reads-only-new-bytes")} == {"n/a"}
