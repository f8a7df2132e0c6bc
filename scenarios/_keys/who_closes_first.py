"""who-closes-first's key: each case's FIN order, states and TIME-WAIT from its checks' values, the
FINs' numbers from the captures."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun

KEY = Key()
CASES = (("cf", "client-first-only-client-holds-time-wait", "client", "server"),
         ("sf", "server-first-only-server-holds-time-wait", "server", "client"))
SOCK_DIAG = "sock_diag (report.json timeline)"


def _states(states: list[str]) -> str:
    return " → ".join(states)


def _holders(time_wait: dict[str, bool]) -> str:
    return " and ".join(h for h in ("client", "server") if time_wait.get(h)) or "neither"


@KEY.cells(*[f"{p}_{c}" for p, *_ in CASES for c in ("port", "first", "client_states", "server_states", "tw")])
def _one_sided(run: KeyRun) -> dict:
    out = {}
    for prefix, check, closer, other in CASES:
        v = run.values(check)
        first = closer if v["fin_order_ok"] else other
        out.update({
            f"{prefix}_port": Cell(v["client_port"], "facts.cases: the client's port of this case"),
            f"{prefix}_first": Cell(first, f"pcap: the {other}'s FIN came "
                                           f"{(v[other + '_fin_t'] - v[closer + '_fin_t']) * 1000:.1f} ms after the "
                                           f"{closer}'s"),
            f"{prefix}_client_states": Cell(_states(v["client_states"]), SOCK_DIAG),
            f"{prefix}_server_states": Cell(_states(v["server_states"]), SOCK_DIAG),
            f"{prefix}_tw": Cell(_holders({"client": v["client_time_wait"], "server": v["server_time_wait"]}),
                                 SOCK_DIAG),
        })
    return out


@KEY.cells("sim_port", "sim_first", "sim_client_states", "sim_server_states", "sim_tw")
def _simultaneous(run: KeyRun) -> dict:
    closing = run.values("simultaneous-both-closing")
    crossed = run.values("simultaneous-fins-cross")
    held = run.values("simultaneous-both-hold-time-wait")
    states = closing["sock_diag_states"]
    first = min(("client", "server"), key=lambda h: crossed[h]["my_fin_t"])
    gap_ms = abs(crossed["client"]["my_fin_t"] - crossed["server"]["my_fin_t"]) * 1000
    return {
        "sim_port": Cell(run.facts["cases"]["simultaneous"]["client_port"], "facts.cases.simultaneous"),
        "sim_first": Cell(f"both ({first} {gap_ms:.1f} ms earlier)",
                          "pcap: each end's FIN left before the other's arrived"),
        "sim_client_states": Cell(_states(states["client"]), SOCK_DIAG),
        "sim_server_states": Cell(_states(states["server"]), SOCK_DIAG),
        "sim_tw": Cell(_holders(held["time_wait"]), SOCK_DIAG),
    }


@KEY.cells("cf_server_fin")
def _client_first_fin(run: KeyRun) -> Cell:
    v = run.values("client-first-only-client-holds-time-wait")
    fin = next(s for s in run.segments("client", sender="server", flag="FIN", port=v["client_port"]))
    return Cell(f"+{(fin.t - v['client_fin_t']) * 1000:.1f} ms; seq {fin.seq}; ack {fin.ack}",
                f"client.pcap: the server's FIN,ACK on port {v['client_port']}; "
                f"the client's own FIN had seq {v['client_fin_seq']}")


@KEY.cells("sim_client_fins", "sim_server_fins", "sim_crossed")
def _crossed(run: KeyRun) -> dict:
    cap = run.values("simultaneous-both-closing")["capture"]
    out = {}
    for host in ("client", "server"):
        c = cap[host]
        out[f"sim_{host}_fins"] = Cell(f"{c['my_fin_seq']}; {c['peer_fin_ack']}",
                                       f"{host}.pcap: its own FIN, and the peer's FIN as it arrived")
    both = all(cap[h]["sent_before_peer_fin_arrived"] for h in ("client", "server"))
    out["sim_crossed"] = Cell(both, "each end's capture: its FIN's time before the peer's FIN arrived")
    return out
