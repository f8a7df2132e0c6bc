"""tw-reopen's key: each new SYN against the old incarnation, and the old duplicate's fate, from
the checks' values (server.pcap, sock_diag)."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun

KEY = Key()
CASES = {"ahead": "seq-ahead", "behind": "seq-behind"}
SRC = "server.pcap: the new SYN against the old connection's last segments"


@KEY.cells(*[f"{p}_{c}" for p in CASES for c in ("seq_diff", "ts_diff", "answer", "isn_diff")])
def _syns(run: KeyRun) -> dict:
    out = {}
    for prefix, case in CASES.items():
        v = run.values(f"{case}-syn-judged-by-time-wait")
        ts = (v["syn_tsval"] - v["ts_recent"]) if v.get("timestamps") else "no timestamps"
        out[f"{prefix}_seq_diff"] = Cell(v["seq_minus_rcv_nxt"],
                                         f"{SRC}: SYN seq {v['syn_seq']}, rcv_nxt {v['rcv_nxt']}")
        out[f"{prefix}_ts_diff"] = Cell(ts, f"{SRC}: TSval {v.get('syn_tsval')}, TS.Recent {v.get('ts_recent')}")
        out[f"{prefix}_answer"] = Cell(v["answer"], "server.pcap: the first answer to the SYN")
        out[f"{prefix}_isn_diff"] = _isn_diff(run, case)
    return out


def _isn_diff(run: KeyRun, case: str) -> Cell:
    if f"{case}-new-isn-above-old" in run.checks:
        v = run.values(f"{case}-new-isn-above-old")
        return Cell(v["difference"], f"server.pcap: SYN-ACK ISN {v['new_isn']}, old snd_nxt {v['old_snd_nxt']}")
    v = run.values(f"{case}-refused-syn-recovery")
    return Cell(f"{v['second_isn_minus_old_snd_nxt']} (the listener's ISN, {v['second_syn_after_ms']} ms later)",
                "server.pcap: the SYN-ACK to the client's second SYN, after the RST")


@KEY.cells("dup_tw_left", "dup_answer", "dup_client", "dup_after")
def _old_duplicate(run: KeyRun) -> dict:
    v = next(run.values(name) for name in run.checks if name.startswith("rfc1122-condition-2"))
    after = (", ".join(v["server_states_after_inject"]) or "-") + \
        ("; TIME_WAIT restored" if v["time_wait_restored"] else "; no socket, TIME_WAIT not restored")
    return {
        "dup_tw_left": Cell(v["time_wait_left_s_before"], "sock_diag just before the injected SYN"),
        "dup_answer": Cell(f"{'SYN,ACK' if v['accepted'] else 'no SYN-ACK'}; {v['isn_minus_old_snd_nxt']}",
                           "server.pcap: the answer to the SYN the router held and delivered late"),
        "dup_client": Cell("RST" if v["rst_from_client"] else "no RST", "client.pcap: the client has no such "
                           "connection any more"),
        "dup_after": Cell(after, "sock_diag: the server's states after the injection"),
    }
