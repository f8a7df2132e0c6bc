"""Run as root from a checkout: what TIME-WAIT's answers carry in their IPv6 flow label and traffic
class under each net.ipv6.flowlabel_reflect value (docs/reference.md R-TW-FLOWLABEL's table). Not a
test module itself; tests/integration/test_ipv6_findings.py judges the same rows for 0 and 2.

    .venv/bin/python tests/flowlabel_probe.py [--backend netns|docker] [REFLECT ...]   (default 0 1 2 3 4)

For each value, one IPv6 lab (the value set in client and server; the client's sockets
IPV6_TCLASS 0x28, the server's 0x48) and three connections, each closed by the client first:
A - the server closes too, and the client's orphaned FIN-WAIT-2 mini-socket ACKs its FIN
(tcp_v6_timewait_ack()); B - the server sends data instead, which that mini-socket answers with
RST (tcp_v6_send_reset() with it); C - with tcp_max_tw_buckets=0 on the client, the server's FIN
meets a RST from no socket. Prints, per value and connection, each segment of client.pcap:
flags, sender, flow label, traffic class."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from lab.core import Lab, parse_sysctl
from lab.packets import read_pcap
from lab.sysctls import apply as apply_sysctl

PORT = 5000


def probe(reflect: int, backend: str, out: Path) -> dict[str, list[tuple]]:
    settings = [parse_sysctl(f"{h}:net.ipv6.flowlabel_reflect={reflect}") for h in ("client", "server")]
    ports = {}
    with Lab(backend=backend, artifacts=out, sysctls=settings, family=6, port=PORT) as lab:
        server, client = lab.peer("server"), lab.peer("client")
        server.listen("L", PORT, tclass=0x48)
        for name in ("A", "B", "C"):
            if name == "C":
                apply_sysctl(lab.host("client").nspath, parse_sysctl("client:net.ipv4.tcp_max_tw_buckets=0"))
            ports[name] = client.connect(name, lab.host("server").address, PORT, tclass=0x28)["local"][1]
            server.accept("L", as_=name)
            client.close(name)
            lab.wait_for("the client's FIN", lambda p=ports[name]: [s for s in lab.sockets("server", {"CLOSE_WAIT"})
                                                                   if s.dport == p], timeout_s=5)
            lab.wait_for("its ACK", lambda: not lab.sockets("client", {"FIN_WAIT1"}), timeout_s=5)
            if name == "B":
                server.send(name, b"late data")
            else:
                server.close(name)
            lab.wait_for("the server's side to end", lambda p=ports[name]: not [
                s for s in lab.sockets("server") if s.dport == p and s.state in ("CLOSE_WAIT", "LAST_ACK")],
                timeout_s=5)
    segs = read_pcap(out / "client.pcap")
    return {n: [(s.flags, "client" if s.sport == p else "server", f"{s.flow_label:#07x}", f"{s.traffic_class:#04x}")
                for s in segs if p in (s.sport, s.dport)] for n, p in ports.items()}


def main(argv: list[str]) -> None:
    backend = "netns"
    if argv[:1] == ["--backend"]:
        backend, argv = argv[1], argv[2:]
    for reflect in [int(a) for a in argv] or [0, 1, 2, 3, 4]:
        out = Path(tempfile.mkdtemp(prefix="twlab-flowlabel-"))
        try:
            print(f"flowlabel_reflect={reflect}")
            for name, segs in probe(reflect, backend, out).items():
                print(f"  {name}: " + " ".join("/".join(s) for s in segs))
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
