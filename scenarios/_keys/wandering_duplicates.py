"""wandering-duplicates' key: (a) from the TIME-WAIT checks' values (server.pcap, sock_diag, nstat),
(b)/(c) from the ISN clock, the window alignment, PAWS and what the application read."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun, Unseen

KEY = Key()


def _first(run: KeyRun, *names: str) -> dict:
    for name in names:
        if name in run.checks:
            return run.values(name)
    raise Unseen(f"the run has none of the checks {', '.join(names)}")


@KEY.cells("a_replay", "a_answer", "a_timer", "a_paws", "a_client")
def _time_wait(run: KeyRun) -> dict:
    acked = run.values("time-wait-acks-old-duplicate")
    timer = run.values("time-wait-timer-restarted")
    paws = run.values("paws-in-time-wait")
    rst = run.values("time-wait-and-the-peers-rst")
    return {
        "a_replay": Cell(f"{acked['replay_seq']}, {acked['replay_len']} B",
                         "server.pcap: the copy (faults.pcap: old-a)"),
        "a_answer": Cell(f"ACK seq {acked['ack_seq']} ack {acked['ack_ack']} ({acked['answer_after_ms']} ms later)",
                         f"server.pcap; TIME-WAIT's SND.NXT {acked['want_seq']}, RCV.NXT {acked['want_ack']} "
                         "(the client's FIN + 1)"),
        "a_timer": Cell(timer["due_after_replay_ms"], f"sock_diag: {timer['samples']} samples after the replay"),
        "a_paws": Cell(paws["PAWSTimewait"], "nstat delta, server (facts.a.server_counters)"),
        "a_client": Cell(f"RST seq {rst['rst_seq']}", f"client.pcap; with tcp_rfc1337={rst['tcp_rfc1337']} the "
                         f"server's socket was {rst['state_after'] or 'gone'} afterwards"),
    }


@KEY.cells("isn_client", "isn_server")
def _isn_clock(run: KeyRun) -> dict:
    out = {}
    for isn in run.values("isn-clock")["isns"]:
        out[f"isn_{isn['who']}"] = Cell(f"{isn['old_isn']}, {isn['new_isn']}; {isn['seconds']:.3f} s; "
                                        f"{isn['per_second']:,}/s", f"{isn['who']}'s SYNs in client.pcap")
    return out


@KEY.cells("b_alignment", "b_tsvals", "b_answer", "b_paws", "b_read")
def _new_incarnation(run: KeyRun) -> dict:
    window = run.values("old-segment-in-new-window")
    judged = _first(run, "paws-rejects-old-segment", "old-segment-accepted")
    read = _first(run, "application-reads-only-new-bytes", "application-reads-old-bytes")
    marker = 4                                      # "OLD-" and "NEW-" are 4 bytes each
    tsvals = (f"{judged['replay_tsval']}; {judged['ts_recent']}" if judged.get("timestamps")
              else "no timestamps in this run")
    return {
        "b_alignment": Cell(f"{window['old_seq']}; {window['rcv_nxt']}",
                            f"server.pcap; {window['old_stream_offset']:,} bytes into the old stream"),
        "b_tsvals": Cell(tsvals, "server.pcap: the replay's timestamp option, and the new connection's last TSval"),
        "b_answer": Cell(f"ack {judged['answer_ack']} (the replay's seq {judged['replay_seq']} + "
                         f"{judged['answer_ack'] - judged['replay_seq']})", "server.pcap: the server's next ACK"),
        "b_paws": Cell(judged["PAWSEstab"], "nstat delta, server (facts.b)"),
        "b_read": Cell(f"{read['old_markers'] * marker}, {read['new_markers'] * marker} (of {read['server_read']})",
                       f"the server application's recv(); the client sent {read['client_sent']}"),
    }
