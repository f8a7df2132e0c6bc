"""lab.connection.Conn: one connection's share of the evidence, on hand-built evidence."""

from __future__ import annotations

from lab.evidence import Evidence
from lab.records import TimerSample
from lab.timeline import Event

CLI, SRV, PORT = "10.77.1.10", "10.77.2.10", 5000


def _sock(state: str, src: str, sport: int, dst: str, dport: int) -> dict:
    return {"state": state, "src": src, "sport": sport, "dst": dst, "dport": dport, "timer": "off",
            "expires_ms": 0, "retrans": 0, "inode": 0}


def _server_state(t: float, state: str, client_port: int) -> Event:
    return Event(t, "server", "state", state, {"socket": _sock(state, SRV, PORT, CLI, client_port)})


def _evidence(timeline: list[Event], samples: dict | None = None) -> Evidence:
    return Evidence(packets={}, timeline=timeline, counters={}, sysctls={},
                    addresses={"client": CLI, "server": SRV}, faults={}, timer_samples=samples or {})


def test_states_in_the_server_are_this_connections_only():
    """Every connection to the server shares its local end (SRV:PORT): the server's states of one
    connection are those of its 4-tuple, not of every connection to the port (nor the listener)."""
    ev = _evidence([Event(0.0, "server", "state", "LISTEN", {"socket": _sock("LISTEN", "0.0.0.0", PORT, "0.0.0.0", 0)}),
                    _server_state(1.0, "ESTABLISHED", 40001), _server_state(1.1, "ESTABLISHED", 40002),
                    _server_state(2.0, "TIME_WAIT", 40002), _server_state(2.5, "GONE", 40001),
                    _server_state(3.0, "GONE", 40002)])
    one, two = ev.conn(40001, PORT), ev.conn(40002, PORT)
    assert [e.state for e in one.states("server")] == ["ESTABLISHED", "GONE"]
    assert [e.state for e in two.states("server")] == ["ESTABLISHED", "TIME_WAIT", "GONE"]
    assert not one.ever_in("server", "TIME_WAIT") and two.ever_in("server", "TIME_WAIT")
    assert one.gone_at("server") == 2.5 and two.gone_at("server") == 3.0


def test_samples_by_the_connections_key():
    mine = TimerSample(1.0, f"{CLI}:40001-{SRV}:{PORT}", "TIME_WAIT", "timewait", 60000, 0, 1.001)
    other = mine._replace(key=f"{CLI}:40002-{SRV}:{PORT}")
    ev = _evidence([], {"client": [tuple(mine), tuple(other)]})
    assert ev.conn(40001, PORT).samples("client") == [mine]
    assert ev.conn(40001, PORT).samples("client", state="FIN_WAIT2") == []
