"""five-tuple's key: each attempt's result from its check's values, the recycled 4-tuple's
sequence numbers from client.pcap (as the check found them), TWRecycled from nstat."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun, Unseen

KEY = Key()
CONNECTS = {"a_now": "connect-same-4-tuple-a-now", "b_same": "connect-same-4-tuple-b-same",
            "a_later": "connect-same-4-tuple-a-later"}


def _result(v: dict) -> str:
    return f"{v['error']} ({v['errno']})" if v.get("errno") else "ok"


@KEY.cells(*[f"{p}_{c}" for p in CONNECTS for c in ("result", "ms")], "b_bind_result", "b_bind_ms",
           "b_other_result")
def _attempts(run: KeyRun) -> dict:
    out = {}
    for prefix, check in CONNECTS.items():
        v = run.values(check)
        out[f"{prefix}_result"] = Cell(_result(v), f"the connect() of {check[len('connect-same-4-tuple-'):]}")
        out[f"{prefix}_ms"] = Cell(v["since_time_wait_ms"], "from the old connection's TIME_WAIT (timeline) "
                                   "to the attempt")
    bind = run.values("same-port-bind-without-reuseaddr")
    other = run.values("same-port-other-4-tuple")
    out["b_bind_result"] = Cell(_result(bind), "the bind() of b-bind")
    out["b_bind_ms"] = Cell(round(bind["since_time_wait_s"] * 1000, 1), "from B's TIME_WAIT to the bind()")
    local = ":".join(map(str, other.get("local") or []))
    out["b_other_result"] = Cell(_result(other), f"the connect() of b-other, from {local} to the server's :5001")
    return out


@KEY.cells("tw_reuse", "recycled", "tw_recycled")
def _recycling(run: KeyRun) -> dict:
    later = run.values("connect-same-4-tuple-a-later")
    counter = run.values("tw-recycled-counter")
    return {
        "tw_reuse": Cell(f"{later['tcp_tw_reuse']}; {'yes' if later['old_used_timestamps'] else 'no'}",
                         "net.ipv4.tcp_tw_reuse read back; the old connections' SYNs in client.pcap"),
        "recycled": Cell(", ".join(counter["recycled_connects"]) or "none",
                         "the attempts whose connect() took the TIME-WAIT 4-tuple over"),
        "tw_recycled": Cell(counter["TWRecycled"], "nstat delta, client"),
    }


@KEY.cells("old_fin_seq", "new_syn_seq", "isn_difference")
def _isn(run: KeyRun) -> dict:
    recycled = run.values("recycled-isn-above-old-snd-nxt").get("recycled") or []
    if not recycled:
        raise Unseen("no 4-tuple was recycled in this run")
    r = recycled[0]
    src = f"client.pcap: {r['attempt']}'s old FIN and new SYN"
    return {"old_fin_seq": Cell(r["old_fin_seq"], src), "new_syn_seq": Cell(r["new_syn_seq"], src),
            "isn_difference": Cell(r["new_syn_seq"] - r["old_fin_seq"],
                                   f"{src}: old snd_nxt = FIN seq + 1, so {r['difference']} above it")}
