"""retransmitted-fin's key: the FIN schedule and the give-up from the checks' values (server.pcap,
sock_diag, nstat), and the counts for other tcp_orphan_retries predicted from this run's first RTO
with the scenario's own model (scenarios/_orphan_budget.py)."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun, Unseen

from .._orphan_budget import budget_of, model_timeout_ms, predict

KEY = Key()
ROWS = range(2, 7)
OTHER_N = range(1, 7)


@KEY.cells(*[f"fin_{i}_{c}" for i in ROWS for c in ("ms", "kind", "retrans")])
def _fins(run: KeyRun) -> dict:
    v = run.values("tlp-then-rto-doubling")
    times, kinds, retrans = v["fin_times_ms"], v["kinds"], v["idiag_retrans"]
    out = {}
    for i in ROWS:
        if i > len(times):
            out.update({f"fin_{i}_{c}": Cell(None, f"the server sent {len(times)} FINs")
                        for c in ("ms", "kind", "retrans")})
            continue
        out[f"fin_{i}_ms"] = Cell(times[i - 1], f"server.pcap: FIN #{i}")
        out[f"fin_{i}_kind"] = Cell("probe" if kinds[i - 2] == "TLP" else "RTO",
                                    "sock_diag's retransmission count did not move" if kinds[i - 2] == "TLP" else
                                    "sock_diag's retransmission count moved")
        out[f"fin_{i}_retrans"] = Cell(retrans[i - 2], "sock_diag (timer_samples.server), the first sample after it")
    return out


@KEY.cells("orphan_retries", "budget_ms", "rto0", "rto_count", "gone_after_t1", "sent_at_give_up",
           "abort_on_timeout", "client_end")
def _give_up(run: KeyRun) -> dict:
    count = run.values("orphan-retries-count")
    spent = run.values("give-up-when-budget-spent")
    silent = run.values("give-up-is-silent")
    ticks = ", ".join(f"{t} jiffies at HZ={hz}" for hz, ts in count["rto0_ticks"].items() for t in ts)
    lo, hi = spent["give_up_window_after_t1_ms"]
    return {
        "orphan_retries": Cell(count["tcp_orphan_retries"], "net.ipv4.tcp_orphan_retries read back from the server"),
        "budget_ms": Cell(count["budget_ms"], f"((2 << {count['retry_until']}) - 1) x 200 ms (tcp_model_timeout())"),
        "rto0": Cell(f"{count['rto0_ms']} ({ticks})", "sock_diag: the timer armed before T1; the wire gap "
                     f"probe -> T1 was {count['first_rto_gap_ms']} ms"),
        "rto_count": Cell(count["observed_rto_retransmissions"], "server.pcap and sock_diag's count"),
        "gone_after_t1": Cell(f"{lo}, {hi}", "sock_diag: the last sample in LAST_ACK and the first without it"),
        "sent_at_give_up": Cell(f"{silent['server_rsts']} RST, {silent['fins_after_gone']} FIN",
                                "server.pcap after the last FIN"),
        "abort_on_timeout": Cell(silent["TCPAbortOnTimeout"], "nstat delta, server"),
        "client_end": Cell(", ".join(silent["client_states_at_end"]) or "no socket",
                           "sock_diag at the end (facts.client_sockets_at_end)"),
    }


@KEY.cells(*[f"n{n}_{c}" for n in OTHER_N for c in ("budget", "predicted", "observed")])
def _predictions(run: KeyRun) -> dict:
    count = run.values("orphan-retries-count")
    rto0 = {int(hz): tuple(ts) for hz, ts in count["rto0_ticks"].items()}
    if not rto0:
        raise Unseen("the run gives no first RTO to predict from")
    out = {}
    for n in OTHER_N:
        budget = model_timeout_ms(n)
        p = predict(rto0, budget)
        out[f"n{n}_budget"] = Cell(budget, f"((2 << {n}) - 1) x 200 ms")
        out[f"n{n}_predicted"] = Cell(" or ".join(map(str, p.counts)), "scenarios/_orphan_budget.py predict() from "
                                      f"this run's first RTO; {p.text()}")
        mine = budget_of(count["tcp_orphan_retries"])[1] == n
        out[f"n{n}_observed"] = Cell(count["observed_rto_retransmissions"], "this run") if mine else \
            Cell(None, f"not in this run: run with --sysctl server:net.ipv4.tcp_orphan_retries={n}")
    return out
