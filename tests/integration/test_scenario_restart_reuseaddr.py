"""restart-reuseaddr on both backends: the verdict, each case's errno, and the setup (the server,
not the client, holds TIME-WAIT) read again from the pcaps."""

from __future__ import annotations

import errno

import pytest

from lab.packets import read_pcap
from lab.runner import run_scenario
from scenarios.restart_reuseaddr import CASES, PORT

pytestmark = pytest.mark.integration

# what Linux does (reference R-REUSEADDR-BIND), case by case
EXPECTED = {"neither": errno.EADDRINUSE, "both": None, "old-without-new-with": errno.EADDRINUSE,
            "old-with-new-without": errno.EADDRINUSE, "live-listener": errno.EADDRINUSE}


def test_restart_reuseaddr(backend, tmp_path):
    report = run_scenario("restart-reuseaddr", backend=backend, artifacts=tmp_path)
    assert report["verdict"] == "pass", [c["observed"] for c in report["checks"] if not c["passed"]]
    assert report["error"] is None
    cases = report["facts"]["cases"]
    assert set(cases) == {c[0] for c in CASES}
    for name, want in EXPECTED.items():
        case = cases[name]
        assert case["bind_errno"] == want, (name, case["bind_error"])
        assert (want is None) == case["bind_ok"], name
        states = [s["state"] for s in case["server_sockets_before_bind"]]
        assert "TIME_WAIT" in states, (name, states)
        assert ("LISTEN" in states) == (name == "live-listener"), (name, states)
        check = next(c for c in report["checks"] if c["name"] == f"{name}-bind")
        assert check["values"]["errno"] == want
    assert cases["both"]["reconnect_ok"] is True

    # from the pcaps: on every case's port the server sent the first FIN (it closed first), and
    # the port got a second connection only where the restart succeeded
    at_server = read_pcap(tmp_path / "server.pcap")
    for i, (name, *_rest) in enumerate(CASES):
        port = PORT + i
        segs = [s for s in at_server if port in (s.sport, s.dport)]
        first_fin = next(s for s in segs if s.has("FIN"))
        assert first_fin.sport == port, f"{name}: the client closed first"
        syns = [s for s in segs if s.flags == "SYN"]
        assert len(syns) == (2 if EXPECTED[name] is None else 1), (name, len(syns))
