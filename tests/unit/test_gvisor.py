"""--stack HOST=gvisor without root: parsing and refusals (lab.gvisor), the prober's packets and
arithmetic (lab.twprobe), the wire checks of lost-ack with a gVisor host (scenarios/_lost_ack_wire.py)."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace

import dpkt
import pytest

from lab import gvisor, twprobe
from lab.core import parse_sysctl
from lab.errors import ScenarioSkipped, UsageError
from lab.ladder import ladder_rows
from lab.packets import Segment
from scenarios import _lost_ack_wire as wired
from scenarios import lost_ack

ENDS = ("client", "server")


def test_parse_stacks():
    assert gvisor.parse_stacks(["client=gvisor", "server=LINUX"]) == {"client": "gvisor", "server": "linux"}
    for bad in ("client", "client=bsd", "=gvisor", "client:gvisor"):
        with pytest.raises(UsageError, match="HOST=STACK"):
            gvisor.parse_stacks([bad])


def test_check_stacks_refusals():
    assert gvisor.check_stacks({"client": "linux"}, ENDS, "docker") == []
    assert gvisor.check_stacks({"server": "gvisor"}, ENDS, "netns") == ["server"]
    with pytest.raises(UsageError, match="--backend netns"):
        gvisor.check_stacks({"client": "gvisor"}, ENDS, "docker")
    assert gvisor.check_stacks({"client": "gvisor", "server": "linux"}, ENDS, "netns") == ["client"]
    with pytest.raises(UsageError, match="only the ends"):
        gvisor.check_stacks({"router": "gvisor"}, ENDS, "netns")


def test_a_linux_sysctl_on_a_gvisor_host_skips_the_run():
    setting = parse_sysctl("server:net.ipv4.tcp_orphan_retries=1")
    gvisor.no_sysctls_there(["client"], [setting], "x")          # another host: fine
    with pytest.raises(ScenarioSkipped, match="does not reach gVisor"):
        gvisor.no_sysctls_there(["server"], [setting], "retransmitted-fin")


def test_runsc_missing_says_why(monkeypatch):
    monkeypatch.setattr(gvisor, "RUNSC", "/nonexistent/runsc")
    assert "not installed" in gvisor.runsc_missing()


TUP = twprobe.Tuple("10.77.1.10", 40000, "10.77.2.10", 5000, host_next=1000, peer_next=(1 << 20) + 77)


def _parsed(raw: bytes) -> dpkt.ip.IP:
    ip = dpkt.ip.IP(raw)
    check = dpkt.ip.IP(raw)             # recompute both checksums from scratch: they must match
    check.sum = 0
    check.data.sum = 0
    again = dpkt.ip.IP(bytes(check))
    assert (ip.sum, ip.data.sum) == (again.sum, again.data.sum)
    return ip


def test_syn_probe_is_a_bare_old_syn_from_the_far_end():
    ip = _parsed(twprobe.segment(TUP, "syn"))
    tcp = ip.data
    assert socket.inet_ntoa(ip.src) == TUP.peer_addr and socket.inet_ntoa(ip.dst) == TUP.addr
    assert (tcp.sport, tcp.dport) == (TUP.peer_port, TUP.port)
    assert tcp.flags == dpkt.tcp.TH_SYN                  # no ACK bit: Linux does not reschedule
    assert tcp.seq == 77                                 # 2^20 before the far end's FIN + 1


def test_ack_probe_is_out_of_window_and_acks_the_hosts_fin():
    tcp = _parsed(twprobe.segment(TUP, "ack")).data
    assert tcp.flags == dpkt.tcp.TH_ACK and tcp.ack == TUP.host_next and tcp.seq == 77


TUP6 = twprobe.Tuple("fd4e:1::10", 40000, "fd4e:2::10", 5000, host_next=1000, peer_next=(1 << 20) + 77)


def test_an_ipv6_probe_has_ipv6s_header_and_a_right_checksum():
    raw = twprobe.segment(TUP6, "ack")
    ip6 = dpkt.ip6.IP6(raw)
    assert socket.inet_ntop(socket.AF_INET6, ip6.src) == TUP6.peer_addr
    assert socket.inet_ntop(socket.AF_INET6, ip6.dst) == TUP6.addr
    assert ip6.nxt == dpkt.ip.IP_PROTO_TCP and ip6.plen == len(ip6.data) == 20
    tcp = ip6.data
    assert tcp.flags == dpkt.tcp.TH_ACK and tcp.ack == TUP6.host_next and tcp.seq == 77
    # the checksum over IPv6's pseudo-header (RFC 8200 §8.1), computed here from scratch
    zeroed = bytearray(bytes(tcp))
    zeroed[16:18] = b"\0\0"
    pseudo = ip6.src + ip6.dst + len(zeroed).to_bytes(4, "big") + b"\0\0\0" + bytes([dpkt.ip.IP_PROTO_TCP])
    assert dpkt.in_cksum(pseudo + bytes(zeroed)) == tcp.sum != 0


def test_probe_for_each_stack():
    assert twprobe.PROBE_FOR == {"linux": "syn", "gvisor": "ack"}


def test_classify():
    assert twprobe.classify(dpkt.tcp.TH_ACK) == "ack"
    assert twprobe.classify(dpkt.tcp.TH_RST | dpkt.tcp.TH_ACK) == "rst"
    assert twprobe.classify(dpkt.tcp.TH_SYN | dpkt.tcp.TH_ACK) == "syn-ack"


def test_held_for_brackets_the_end():
    answers = [twprobe.Answer(100 + i, "ack", "ack") for i in range(60)] + [twprobe.Answer(160, "ack", "rst"),
                                                                           twprobe.Answer(161, "ack", "rst")]
    assert twprobe.held_for(answers, 99.5) == (59.5, 60.5)
    assert twprobe.held_for(answers[:5], 99.5) == (4.5, None)


def seg(t, src, sport, dst, dport, flags, seq, ack=0, length=0):
    return Segment(t, src, sport, dst, dport, flags, seq, ack, length, None, None)


def test_closed_tuple_from_both_fins():
    segs = [seg(1.0, "10.77.1.10", 40000, "10.77.2.10", 5000, "FIN,ACK", 500, 900),
            seg(1.1, "10.77.2.10", 5000, "10.77.1.10", 40000, "FIN,ACK", 900, 501, length=10)]
    tup = twprobe.closed_tuple(segs, "10.77.1.10", 40000, "10.77.2.10", 5000)
    assert (tup.host_next, tup.peer_next) == (501, 911)
    assert twprobe.closed_tuple(segs[:1], "10.77.1.10", 40000, "10.77.2.10", 5000) is None


def test_half_closed_tuple_takes_the_peers_last_sequence_number_and_when_fin_wait_2_began():
    """An orphaned FIN-WAIT-2: only the host's FIN; the far end's next sequence number is where its
    last segment ended, and FIN-WAIT-2 began at the far end's first ACK of that FIN (lab.lifetimes)."""
    from lab.lifetimes import lifetime_start

    segs = [seg(0.5, "10.77.2.10", 5000, "10.77.1.10", 40000, "ACK", 880, 500, length=20),
            seg(1.0, "10.77.1.10", 40000, "10.77.2.10", 5000, "FIN,ACK", 500, 900),
            seg(1.1, "10.77.2.10", 5000, "10.77.1.10", 40000, "ACK", 900, 501),
            seg(1.2, "10.77.2.10", 5000, "10.77.1.10", 40000, "ACK", 900, 501)]
    assert twprobe.closed_tuple(segs, "10.77.1.10", 40000, "10.77.2.10", 5000) is None
    tup = twprobe.closed_tuple(segs, "10.77.1.10", 40000, "10.77.2.10", 5000, half=True)
    assert (tup.host_next, tup.peer_next) == (501, 900)
    assert lifetime_start(segs, tup, half=True) == 1.1
    assert twprobe.closed_tuple(segs[1:2], "10.77.1.10", 40000, "10.77.2.10", 5000, half=True) is None


def _seen(stack: str, held: float | None, gone: float | None, interval: float = 0.2, hz: int = 250,
          ack_times=(10.0, 11.7)) -> SimpleNamespace:
    probe = {"stack": stack, "probe": twprobe.PROBE_FOR[stack], "interval_s": interval, "held_until_s": held,
             "gone_by_s": gone, "answers": [{"answer": "ack"}], "started": 12.0}
    ev = SimpleNamespace(facts={"client_probe": probe}, hz=hz, options={"stacks": {"client": stack}})
    return SimpleNamespace(ev=ev, answers=[SimpleNamespace(t=t) for t in ack_times])


@pytest.mark.parametrize("stack,held,gone,outcome", [
    ("gvisor", 59.867, 60.067, "pass"),
    ("gvisor", 44.9, 45.1, "fail"),          # a 45 s TIME-WAIT is not gVisor's 60 s
    ("linux", 61.456, 62.056, "pass"),       # within one wheel granule (2.048 s at HZ=250)
    ("linux", 63.0, 63.6, "fail"),
    ("linux", 58.0, 58.6, "fail"),           # never early
    ("gvisor", None, None, "inconclusive"),  # the probes never saw it end
])
def test_time_wait_length_on_the_wire(stack, held, gone, outcome):
    check = wired.time_wait_length_on_the_wire(_seen(stack, held, gone, 0.2 if stack == "gvisor" else 0.6))
    assert check.outcome == outcome, check


def test_restart_from_the_wire_needs_fins_further_apart_than_the_resolution():
    assert wired.time_wait_restarts_on_the_wire(_seen("gvisor", 59.9, 60.1)).outcome == "pass"
    # without a restart TIME-WAIT would end 60 s after the FIRST ack: 1.7 s before the measured end
    assert wired.time_wait_restarts_on_the_wire(_seen("gvisor", 58.2, 58.4)).outcome == "fail"
    close = _seen("gvisor", 59.9, 60.1, ack_times=(10.0, 10.3))
    assert wired.time_wait_restarts_on_the_wire(close).outcome == "inconclusive"


def test_a_gvisor_client_gets_no_sock_diag_check_passed_by_default():
    ev = SimpleNamespace(options={"stacks": {"client": "gvisor"}}, sysctls={})
    fns = lost_ack.checks(ev)
    names = [fn.__name__ for fn in fns]
    assert "time_wait_armed_for_60s" not in names and "time_wait_timer_restarts" not in names
    armed = [fn for fn in fns if fn.__name__ == "<lambda>"]
    assert len(armed) == 1 and armed[0](None).outcome == "n/a"
    server_only = lost_ack.checks(SimpleNamespace(options={"stacks": {"server": "gvisor"}}, sysctls={}))
    assert lost_ack.time_wait_timer_restarts in server_only      # the client is Linux: sock_diag judges it


def test_ladder_folds_the_probes_into_one_line():
    report = {"hosts": {"client": {"addresses": {"a": "10.77.1.10"}}, "server": {"addresses": {"b": "10.77.2.10"}}},
              "packets": {"client": [dict(seg(t, "10.77.1.10", 40000, "10.77.2.10", 5000, "ACK", 1).to_json())
                                     for t in (1.0, 2.0, 3.0, 4.0)], "server": []},
              "facts": {"client_probe": {"started": 2.5, "probe": "ack", "interval_s": 0.2, "held_until_s": 59.9,
                                         "gone_by_s": 60.1, "answers": [{"answer": "ack"}] * 3}},
              "timeline": []}
    rows = ladder_rows(report)
    segments = [r for r in rows if r.kind == "segment"]
    assert [round(r.t, 1) for r in segments] == [0.0, 1.0]
    assert any("3 ack probes from the router" in r.text for r in rows)


def test_every_scenario_runs_with_either_end_on_gvisor_and_one_that_does_not_is_skipped():
    """The whole catalog judges a gVisor client and a gVisor server (from the wire); a scenario
    that lists Linux only for a host (Scenario.stacks) is skipped in one line naming why."""
    from dataclasses import replace

    from lab.gvisor import StackCannotShow
    from lab.runner import unsupported
    from scenarios import catalog, get

    for sc in catalog().values():
        unsupported(sc, {"client": "gvisor", "server": "gvisor"})
    linux_only = replace(get("lost-ack"), stacks={"client": ("linux", "gvisor")})
    unsupported(linux_only, {"client": "gvisor"})
    with pytest.raises(StackCannotShow, match="sock_diag"):
        unsupported(linux_only, {"server": "gvisor"})
    assert linux_only.stacks_of("router") == linux_only.stacks_of("server") == ("linux",)


def test_a_scenarios_own_sysctl_is_not_set_on_a_gvisor_host_it_judges_and_the_users_is_kept():
    """time-wait-duration sets tcp_fin_timeout in the client: with a gVisor client (which it judges
    from the wire) that setting is left out and named; the user's own --sysctl there is kept, for
    lab.gvisor to refuse; a Linux client gets both."""
    from lab.runner import unsupported
    from lab.sysctls import SysctlSetting, layer_sysctls
    from scenarios import get

    sc = get("time-wait-duration")
    mine = SysctlSetting("client", "net.ipv4.tcp_synack_retries", "2")
    settings = layer_sysctls(sc.own_sysctls(), explicit=[mine])
    unsupported(sc, {"client": "gvisor"})
    kept, dropped = sc.on_stacks(settings, {"client": "gvisor"})
    assert [str(s) for s in dropped] == ["client:net.ipv4.tcp_fin_timeout=5"] and kept == [mine]
    assert sc.on_stacks(settings, {"server": "gvisor"}) == (settings, [])
    changed = layer_sysctls(sc.own_sysctls(), explicit=[SysctlSetting("client", "net.ipv4.tcp_fin_timeout", "9")])
    assert sc.on_stacks(changed, {"client": "gvisor"})[1] == []     # the user's value: not the scenario's


def test_matrix_stack_columns(tmp_path, monkeypatch):
    """A column per --stack, each run with its stacks; rows where the stacks differ marked."""
    from lab import pool, runner
    from lab.matrix import parse_stack_columns, run_matrix

    assert parse_stack_columns(None) == [("linux", {})]
    assert parse_stack_columns(["linux", "gvisor", "client=gvisor;server=linux"]) == [
        ("linux", {}), ("gvisor", {"client": "gvisor", "server": "gvisor"}),
        ("client=gvisor;server=linux", {"client": "gvisor", "server": "linux"})]
    with pytest.raises(UsageError):
        parse_stack_columns(["bsd"])
    seen = []

    def fake(name, **kw):
        stacks = (kw.get("options") or {}).get("stacks") or {}
        seen.append(stacks)
        gone = 60.1 if stacks.get("client") == "gvisor" else 62.0
        report = {"scenario": name, "verdict": "pass", "kernel": "k", "backend": "netns", "error": None,
                  "duration_s": 1.0,
                  "checks": [{"name": "time-wait-length-on-the-wire", "outcome": "pass", "passed": True,
                              "values": {"gone_by_s": gone}}], "counters": {}}
        (kw["artifacts"]).mkdir(parents=True, exist_ok=True)
        (kw["artifacts"] / "report.json").write_text(__import__("json").dumps(report))
        return report
    monkeypatch.setattr(runner, "run_scenario", fake)
    monkeypatch.setattr(pool, "run_jobs", lambda fn, jobs, width, collect: [collect(j, fn(j)) for j in jobs])
    m = run_matrix(["host"], ["lost-ack"], out=tmp_path, backend="netns", stacks=["linux", "client=gvisor"])
    assert m["columns"] == ["host/linux", "host/client=gvisor"]
    assert seen == [{}, {"client": "gvisor"}]
    row = next(r for r in m["rows"] if r["what"].startswith("TIME-WAIT on the wire"))
    assert row["differs"] is False            # 62.0 vs 60.1: within the row's 2.5 s tolerance


def test_a_vm_column_runs_its_stacks_in_the_guest(tmp_path, monkeypatch):
    """A VM kernel's column passes its stacks to the guest's matrix (one --stack) and the root
    filesystem this side exported (the guest has no Docker daemon)."""
    import json

    from lab import gvisor
    from lab.matrix import run_matrix

    monkeypatch.setattr(gvisor, "runsc_missing", lambda: None)
    monkeypatch.setattr(gvisor, "rootfs", lambda progress=None: Path("/cache/rootfs-x"))
    calls = []

    class FakeVm:
        @staticmethod
        def run(kernel, args, out, progress, docker=False, accel="auto", timeout_s=0, env=None):
            calls.append((args, env))
            cell = {"verdict": "pass", "exit_code": 0, "checks": {}, "values": {}}
            (out / "matrix.json").write_text(json.dumps({"cells": {"lost-ack": {"host": cell}},
                                                         "releases": {"host": "6.1.0"}}))
            return 0, ""

        @staticmethod
        def label(kernel):
            return kernel

    m = run_matrix(["debian-12"], ["lost-ack"], out=tmp_path / "vm", backend="netns",
                   stacks=["client=gvisor;server=gvisor"], vm=FakeVm)
    assert calls, m["cells"]
    args, env = calls[0]
    assert args[args.index("--stack") + 1] == "client=gvisor;server=gvisor"
    assert env == {gvisor.ROOTFS_ENV: "/cache/rootfs-x"}
    assert m["cells"]["lost-ack"]["debian-12"]["verdict"] == "pass"
    calls.clear()
    run_matrix(["debian-12"], ["lost-ack"], out=tmp_path / "vm2", backend="netns", vm=FakeVm)
    assert "--stack" not in calls[0][0] and calls[0][1] is None


def test_a_vm_run_refuses_what_gvisor_cannot_before_booting():
    from lab.errors import UsageError
    from lab.gvisor import for_vm

    assert for_vm({}, "netns") == {} and for_vm({"client": "linux"}, "docker") == {}
    with pytest.raises(UsageError, match="netns backend only"):
        for_vm({"client": "gvisor"}, "docker")
    with pytest.raises(UsageError, match="only the ends"):
        for_vm({"router": "gvisor"}, "netns")
