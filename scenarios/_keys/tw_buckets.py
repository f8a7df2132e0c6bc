"""tw-buckets' key: each connection's fate from the checks' values (sock_diag, client.pcap), the
namespace's counts and counters, the RSTs that reached the server from server.pcap."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun

KEY = Key()
ROWS = range(5)


@KEY.cells(*[f"c{i}_{c}" for i in ROWS for c in ("port", "after_close", "at_end", "answer")])
def _connections(run: KeyRun) -> dict:
    order = run.values("buckets-fill-in-close-order")
    answers = run.values("late-fin-ack-or-rst")["answers"]
    ports = run.values("exactly-n-time-wait")["ports"]
    at_end = run.facts.get("client_state_at_end", {})
    out = {}
    for i in ROWS:
        if i >= len(ports):
            out.update({f"c{i}_{c}": Cell(None, f"the run closed {len(ports)} connections")
                        for c in ("port", "after_close", "at_end", "answer")})
            continue
        p = ports[i]
        after = order["after_close"][i]
        out.update({
            f"c{i}_port": Cell(p, "facts.client_ports (close order)"),
            f"c{i}_after_close": Cell("no socket" if after == "none" else after,
                                      "sock_diag right after the ACK of its FIN (facts.after_close)"),
            f"c{i}_at_end": Cell(at_end.get(str(p)) or "no socket", "sock_diag at the end (facts.client_state_at_end)"),
            f"c{i}_answer": Cell(answers.get(str(p)), "client.pcap: the client's answer to the server's FIN"),
        })
    return out


@KEY.cells("limit", "mini_sockets", "tw_at_end", "overflow", "tw_counter", "out_rsts", "server_rsts")
def _namespace(run: KeyRun) -> dict:
    n = run.values("exactly-n-time-wait")
    c = run.values("overflow-counters")
    rsts = run.segments("server", sender="client", flag="RST")
    return {
        "limit": Cell(run.values("buckets-fill-in-close-order")["limit"],
                      "net.ipv4.tcp_max_tw_buckets read back from the client"),
        "mini_sockets": Cell(n["mini_sockets_before_fins"], "sock_diag dump of the client's namespace"),
        "tw_at_end": Cell(n["time_wait_at_end"], "sock_diag dump at the end"),
        "overflow": Cell(c["TCPTimeWaitOverflow"], "nstat delta over the run, client"),
        "tw_counter": Cell(c["TW_plus_TWKilled"], "nstat delta over the run, client"),
        "out_rsts": Cell(c["TcpOutRsts"], "nstat delta over the run, client"),
        "server_rsts": Cell(f"{len(rsts)} (ports {', '.join(str(s.sport) for s in rsts)})",
                            "server.pcap: RSTs from the client"),
    }
