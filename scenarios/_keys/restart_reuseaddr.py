"""restart-reuseaddr's key: each case's bind() and what sock_diag saw on the port, from the checks'
values and the facts."""

from __future__ import annotations

from lab.sheetkey import Cell, Key, KeyRun

KEY = Key()
CASES = {"neither": "neither", "both": "both", "newonly": "old-without-new-with",
         "oldonly": "old-with-new-without", "live": "live-listener"}


def _held(sockets: list[dict]) -> str:
    return ", ".join(s["state"] + (f" {s['expires_ms']}" if s.get("timer") == "timewait" else "")
                     for s in sockets) or "nothing"


@KEY.cells(*[f"{p}_{c}" for p in CASES for c in ("held", "bind")])
def _binds(run: KeyRun) -> dict:
    out = {}
    for prefix, case in CASES.items():
        v = run.values(f"{case}-bind")
        facts = run.facts["cases"][case]
        out[f"{prefix}_held"] = Cell(_held(facts["server_sockets_before_bind"]),
                                     f"sock_diag on the server just before the bind on :{v['port']}")
        out[f"{prefix}_bind"] = Cell(f"{v['error']} ({v['errno']})" if v["errno"] else "ok",
                                     f"the new process's bind() on :{v['port']}")
    return out


@KEY.cells("tw_host", "errno", "both_reconnect")
def _around(run: KeyRun) -> dict:
    cases = [run.values(f"{c}-time-wait-holds-port") for c in CASES.values()]
    server = sum(v["server_time_wait_before"] for v in cases)
    client = sum(v["client_time_wait"] for v in cases)
    failed = {(v["errno"], v["error"]) for c in CASES.values() if (v := run.values(f"{c}-bind"))["errno"]}
    return {
        "tw_host": Cell(f"server ({server} TIME_WAIT sockets; the client {client})",
                        "sock_diag on both hosts at each bind"),
        "errno": Cell(", ".join(f"{n} {name}" for n, name in sorted(failed)) or "none failed",
                      "the failed bind() calls"),
        "both_reconnect": Cell(run.values("both-bind").get("reconnect_ok"),
                               "the restarted listener accepted a new connection (facts.cases.both)"),
    }
