"""lost-ack's key: the server's FINs and the client's answers from the pcaps, the TIME-WAIT timer
from the checks' sock_diag readings, the end of the close from the facts."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun, Unseen

KEY = Key()
ROWS = range(2, 6)          # Table 1's rows after the first FIN


def _seen(run: KeyRun):
    seen = run.seen
    if not getattr(seen, "fins_srv", None):
        raise Unseen("server.pcap has no FIN from the server")
    return seen


@KEY.cells(*[f"fin_{i}_{c}" for i in ROWS for c in ("t", "gap", "kind")])
def _fins(run: KeyRun) -> dict:
    seen = _seen(run)
    times = [f.t - seen.fins_srv[0].t for f in seen.fins_srv]
    tlp = run.values("server-retransmits-fin").get("tail_loss_probe")
    out = {}
    for i in ROWS:
        if i > len(times):
            out.update({f"fin_{i}_{c}": Cell(None, f"the server sent {len(times)} FINs") for c in ("t", "gap", "kind")})
            continue
        src = f"server.pcap: FIN #{i}, seq {seen.fins_srv[i - 1].seq}"
        kind = "tail-loss probe" if i == 2 and tlp else "RTO"
        why = ("tcp_early_retrans in force enables the probe; sock_diag's retransmission count did not move "
               "for it" if i == 2 and tlp else "after the probe, each RTO doubles")
        out[f"fin_{i}_t"] = Cell(round(times[i - 1], 3), src)
        out[f"fin_{i}_gap"] = Cell(round(times[i - 1] - times[i - 2], 3), src)
        out[f"fin_{i}_kind"] = Cell(kind, why)
    return out


@KEY.cells(*[f"ack_{i}_arrived" for i in range(1, 6)])
def _acks(run: KeyRun) -> dict:
    seen = _seen(run)
    lifted = seen.lifted
    out = {}
    for i in range(1, 6):
        if i > len(seen.answers):
            out[f"ack_{i}_arrived"] = Cell(None, f"{len(seen.answers)} FINs reached the client")
            continue
        ack = seen.answers[i - 1]
        if ack is None:
            out[f"ack_{i}_arrived"] = Cell("no ACK sent", f"client.pcap: nothing answers FIN #{i}")
            continue
        got = seen.conn.arrived(ack, "server")
        when = "before" if ack.t < lifted else "after"
        out[f"ack_{i}_arrived"] = Cell("yes" if got else "no: dropped by the router",
                                       f"client.pcap: ACK ack={ack.ack} sent {when} the drop was lifted; "
                                       f"{'in' if got else 'absent from'} server.pcap")
    return out


@KEY.cells("fin_count", "fin_seqs", "fins_at_client", "acks_from_client", "acks_dropped")
def _counts(run: KeyRun) -> dict:
    fins = run.values("server-retransmits-fin")
    acks = run.values("time-wait-acks-every-fin")
    lost = run.values("final-ack-lost-then-delivered")
    return {
        "fin_count": Cell(fins["fin_count"], "server.pcap: FINs from the server's port 5000"),
        "fin_seqs": Cell(f"{len(fins['fin_seqs'])} ({', '.join(map(str, fins['fin_seqs']))})",
                         "server.pcap: the FINs' sequence numbers"),
        "fins_at_client": Cell(acks["fins_at_client"], "client.pcap: FINs from the server"),
        "acks_from_client": Cell(acks["acks_from_client"], "client.pcap: the client's ACK after each FIN"),
        "acks_dropped": Cell(lost["nft_dropped"], "the router's nft counter (faults.pcap holds each dropped ACK); "
                             f"{lost['acks_under_drop_seen_by_server']} of them in server.pcap"),
    }


@KEY.cells("tw_first_ms", "tw_due_after_fin_ms", "server_so_error", "client_at_end")
def _time_wait(run: KeyRun) -> dict:
    armed = run.values("time-wait-armed-for-60s")
    due = run.values("time-wait-timer-restarts")
    end = [s for s in run.facts.get("client_sockets_at_end", []) if s.get("state")]
    return {
        "tw_first_ms": Cell(armed["first_expires_ms"], f"sock_diag (timer_samples.client), "
                            f"{armed.get('first_sample_after_fin_ms')} ms after the server's first FIN arrived"),
        "tw_due_after_fin_ms": Cell(due["due_after_fin_ms"], "sock_diag samples after each retransmitted FIN "
                                    f"(each bounds the due time to {due.get('sample_width_ms')} ms)"),
        "server_so_error": Cell(run.facts.get("server_so_error"), "the server's socket: getsockopt(SO_ERROR), "
                                f"state {run.facts.get('server_state_after')} (TCP_INFO)"),
        "client_at_end": Cell(", ".join(f"{s['state']}, {s['expires_ms'] / 1000:.1f}" for s in end) or "no socket",
                              "sock_diag at the end of the run (facts.client_sockets_at_end)"),
    }
