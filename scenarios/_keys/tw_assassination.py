"""tw-assassination's key: the chain's segments and the TIME-WAIT's fate from the checks' values
(client.pcap, sock_diag), the copied segment from the facts, the counters from nstat."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun, Unseen

KEY = Key()


def _fate(run: KeyRun) -> dict:
    for name in ("time-wait-assassinated", "time-wait-survives-rst"):
        if name in run.checks:
            return run.values(name)
    raise Unseen("the run has no verdict on the TIME-WAIT's fate")


@KEY.cells("s51", "s52", "s53", "probe")
def _chain(run: KeyRun) -> dict:
    old = run.values("old-duplicate-reaches-time-wait")
    ack = run.values("time-wait-acks-it")
    rst = run.values("closed-server-answers-rst")
    fate = _fate(run)
    copied = (run.facts.get("copied") or [{}])[0]
    return {
        "s51": Cell(f"{copied.get('flags', '?')} seq {old['replay_seq']} ack {copied.get('ack', '?')} "
                    f"len {old['replay_len']} (copied {old['replay_age_s']} s earlier)",
                    "client.pcap: the replayed copy (faults.pcap: prefix old-dup)"),
        "s52": Cell(f"ACK seq {ack['ack_seq']} ack {ack['ack_ack']} ({ack['answer_after_ms']} ms later)",
                    f"client.pcap; TIME-WAIT's SND.NXT {ack['want_seq']}, RCV.NXT {ack['want_ack']}"),
        "s53": Cell(f"{rst['rst_flags']} seq {rst['rst_seq']}", f"client.pcap; 5.2's ack was {rst['ack_ack']}"),
        "probe": Cell(f"{fate.get('probe_answer')} seq {fate.get('probe_answer_seq')} "
                      f"(the probe's ack {fate.get('probe_ack')})",
                      f"client.pcap: the answer to the probe; client TcpOutRsts +{fate.get('probe_TcpOutRsts')}"),
    }


@KEY.cells("rfc1337", "tw_left_ms", "after_rst")
def _time_wait(run: KeyRun) -> dict:
    fate = _fate(run)
    if fate.get("state_after"):
        after = f"still {fate['state_after']} 0.5 s later, {fate['tw_left_after_ms']} ms left"
    else:
        after = (f"gone {fate['gone_after_rst_ms']} ms after the RST, with {fate['timer_left_when_killed_s']} s "
                 "of its timer left")
    return {
        "rfc1337": Cell(fate["tcp_rfc1337"], "net.ipv4.tcp_rfc1337 read back from the client"),
        "tw_left_ms": Cell(run.values("old-duplicate-reaches-time-wait")["tw_left_ms"],
                           "sock_diag just before the replay (facts.tw_before)"),
        "after_rst": Cell(after, "sock_diag (timeline), confirmed by the probe's answer on the wire"),
    }


@KEY.cells("tsvals", "paws", "server_rsts")
def _counters(run: KeyRun) -> dict:
    paws = run.values("paws-does-not-prevent-it")
    rst = run.values("closed-server-answers-rst")
    tsvals = (f"{paws['replay_tsval']}; {paws['fin_tsval']}; {paws['rst_tsval'] or 'none (no option)'}"
              if paws.get("timestamps") else "no timestamps in this run")
    return {
        "tsvals": Cell(tsvals, "client.pcap: the TCP timestamp options"),
        "paws": Cell(paws["PAWSTimewait"], "nstat delta over the chain, client (facts.counters)"),
        "server_rsts": Cell(rst["TcpOutRsts"], "nstat delta over the chain, server (facts.counters)"),
    }
