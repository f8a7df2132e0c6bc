"""lab.connection.Conn: the connection-scoped questions scenarios ask of the evidence."""

from __future__ import annotations

from lab.evidence import Evidence
from lab.timeline import Event

CLIENT, SERVER, PORT = "10.77.1.10", "10.77.2.10", 5006


def _state(t: float, host: str, state: str, cport: int) -> Event:
    local, remote = ((CLIENT, cport), (SERVER, PORT)) if host == "client" else ((SERVER, PORT), (CLIENT, cport))
    sock = {"state": state, "src": local[0], "sport": local[1], "dst": remote[0], "dport": remote[1],
            "timer": "off", "expires_ms": 0, "retrans": 0, "inode": 0}
    return Event(t, host, "state", state, {"socket": sock})


def _evidence(timeline: list[Event]) -> Evidence:
    return Evidence(packets={}, timeline=timeline, counters={}, sysctls={},
                    addresses={"client": CLIENT, "server": SERVER}, faults={}, port=PORT)


def test_tuple_states_match_both_ends_where_the_servers_port_is_shared():
    """Two connections to one server port: in the server both sockets have the same local end, so
    only the whole 4-tuple tells A's state changes from B's."""
    ev = _evidence([_state(1.0, "server", "TIME_WAIT", 40006), _state(2.0, "server", "ESTABLISHED", 40106),
                    _state(3.0, "server", "GONE", 40106), _state(4.0, "client", "GONE", 40006),
                    _state(5.0, "server", "GONE", 40006)])
    a = ev.conn(40006)
    assert [(e.t, e.state) for e in a.tuple_states("server")] == [(1.0, "TIME_WAIT"), (5.0, "GONE")]
    assert [(e.t, e.state) for e in a.tuple_states("client")] == [(4.0, "GONE")]
    assert [e.t for e in a.tuple_states("server", after=1.5)] == [5.0]
    assert [e.t for e in a.tuple_states("server", until=4.9)] == [1.0]
    assert [e.t for e in ev.conn(40106).tuple_states("server", after=2.0, until=3.0)] == [2.0, 3.0]
