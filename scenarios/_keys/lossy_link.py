"""lossy-link's key: the link's losses, the closes' fates and the close-time distribution by class,
from the checks' values (both captures, per connection)."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun, Unseen

KEY = Key()
LINKS = {"c2s": "client->server", "s2c": "server->client"}
CLASSES = {"clean": "clean", "lost": "final_ack_lost", "other": "other_losses"}
STATS = {"n": "n", "p50": "p50", "p90": "p90", "max": "max"}


def _saved(run: KeyRun) -> dict:
    for name in ("lost-final-ack-saved-by-time-wait", "lost-final-ack-answered-by-rst"):
        if name in run.checks:
            return run.values(name)
    raise Unseen("the run has no verdict on the lost final ACKs")


@KEY.cells(*[f"{p}_{c}" for p in LINKS for c in ("sent", "lost", "pct", "qdisc")])
def _link(run: KeyRun) -> dict:
    v = run.values("loss-matches-the-link")
    out = {}
    for prefix, link in LINKS.items():
        d = v[link]
        src = f"{link}: the sender's capture against the receiver's"
        out.update({f"{prefix}_sent": Cell(d["sent"], src), f"{prefix}_lost": Cell(d["lost"], src),
                    f"{prefix}_pct": Cell(d["loss_pct_observed"], src),
                    f"{prefix}_qdisc": Cell(d["loss_pct_qdisc"], "the netem qdisc as the kernel reports it")})
    return out


@KEY.cells("closes", "final_ack_lost", "saved", "reacks", "ended_by_rst", "tw_at_end")
def _closes(run: KeyRun) -> dict:
    v = _saved(run)
    held = run.values("closer-holds-time-wait")
    reacks = {str(k): n for k, n in (v.get("reacks_needed") or {}).items()}     # str keys once in JSON
    more = sum(n for k, n in reacks.items() if int(k) > 2)
    per_close = "per connection: its FINs and ACKs in both captures"
    return {
        "closes": Cell(v["closes"] + len(v.get("still_going", ())), "facts: the connections closed"),
        "final_ack_lost": Cell(f"{v['final_ack_lost']} ({v['final_ack_lost_pct']} %)", per_close),
        "saved": Cell(v.get("saved_by_reack", 0), per_close + "; the server's retransmitted FIN and the re-ACK"),
        "reacks": Cell(f"{reacks.get('1', 0)}, {reacks.get('2', 0)}, {more}", per_close),
        "ended_by_rst": Cell(v["ended_by_rst"], per_close),
        "tw_at_end": Cell(held["time_wait_at_end"], "sock_diag at the end, client"),
    }


@KEY.cells(*[f"{p}_{s}" for p in CLASSES for s in STATS])
def _distribution(run: KeyRun) -> dict:
    dist = run.values("lost-final-ack-costs-an-rto")["distribution"]
    out = {}
    for prefix, cls in CLASSES.items():
        d = (dist.get(cls) or {}).get("close_ms") or {}
        for cell, stat in STATS.items():
            value = d.get(stat)
            out[f"{prefix}_{cell}"] = Cell(value if value is not None else (0 if stat == "n" else None),
                                           "per connection: from the client's FIN (client.pcap) to the end of "
                                           "the server's connection (server.pcap)")
    return out
