"""lab.connection.Conn: one connection's segments, states and samples, picked out of a run with
several connections on the same server port."""

from __future__ import annotations

from lab.evidence import Evidence
from lab.packets import Segment
from lab.timeline import Event

CLI, SRV, PORT = "10.77.1.10", "10.77.2.10", 5000


def _state(t, host, local, lport, remote, rport, state):
    sock = {"state": state, "src": local, "sport": lport, "dst": remote, "dport": rport, "timer": "off",
            "expires_ms": 0, "retrans": 0, "inode": 0}
    return Event(t, host, "state", f"{state}", {"socket": sock})


def _seg(t, src, sport, dst, dport, flags):
    return Segment(t=t, src=src, sport=sport, dst=dst, dport=dport, flags=flags, seq=1, ack=1, length=0,
                   tsval=None, tsecr=None)


def _ev() -> Evidence:
    timeline = []
    for i, port in enumerate((41001, 41002, 41003)):
        timeline += [_state(1.0 + i, "server", SRV, PORT, CLI, port, "ESTABLISHED"),
                     _state(2.0 + i, "server", SRV, PORT, CLI, port, "GONE"),
                     _state(1.5 + i, "client", CLI, port, SRV, PORT, "TIME_WAIT")]
    timeline.append(_state(0.5, "server", SRV, PORT, "0.0.0.0", 0, "LISTEN"))
    packets = {"client": [_seg(1.0 + i, CLI, p, SRV, PORT, "FIN,ACK") for i, p in enumerate((41001, 41002))],
               "server": []}
    return Evidence(packets=packets, timeline=sorted(timeline, key=lambda e: e.t), counters={}, sysctls={},
                    addresses={"client": CLI, "server": SRV}, faults={}, port=PORT)


def test_each_connection_has_its_own_states_at_the_shared_server_port():
    ev = _ev()
    assert [e.state for e in ev.conn(41003).states("server")] == ["ESTABLISHED", "GONE"]
    assert ev.conn(41003).gone_at("server") == 4.0          # not 41001's (2.0)
    assert ev.conn(41002).first_in("client", "TIME_WAIT").t == 2.5
    assert not ev.conn(41001).ever_in("server", "LISTEN")    # the listener is no connection's


def test_segments_by_connection_and_sender():
    ev = _ev()
    assert [s.sport for s in ev.conn(41002).segments("client", sender="client", flag="FIN")] == [41002]
    assert ev.conn(41003).segments("client") == []
    assert ev.conn(41001, PORT).key("client") == f"{CLI}:41001-{SRV}:{PORT}"
    assert ev.conn(41001).key("server") == f"{SRV}:{PORT}-{CLI}:41001"
