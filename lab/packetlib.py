"""dpkt's pieces the lab uses, imported without running the package's ``__init__``.

dpkt 1.9's ``__init__`` imports all of its ~60 protocol modules (BGP, DNS, HTTP/2, 802.11, RADIUS,
...) and then lets each fill the dispatch tables; the lab reads and writes IPv4, IPv6 and TCP, in
pcaps and in Ethernet frames. Measured on this 2-core machine: ``import dpkt`` 36-46 ms, these
five modules with the package left bare 13-21 ms (medians of fresh interpreters); in a TCG guest
``import dpkt`` took 1.25 s of a run's judging. The package object is made from its own spec, as
lab/netlink.py does for pyroute2, so every import inside dpkt resolves as usual; the dispatch
entries the lab relies on are registered here (IP protocol 6 is TCP, for IPv4 and IPv6 alike: they
share one table; Ethernet types 0x0800 and 0x86DD are IPv4 and IPv6), and a protocol the lab does
not read stays bytes, as the lab skips it either way. The lab takes ``dpkt`` from here (``from
.packetlib import dpkt``): its ethernet, ip, ip6, pcap and tcp modules and UnpackError. Where dpkt
was already imported whole (a test, a user's script), that copy is used, its tables complete.
"""

from __future__ import annotations

from .barepkg import bare_package

bare_package("dpkt")

import dpkt  # noqa: E402 - the package (bare, or whole when it was imported before)
from dpkt import ethernet, ip, ip6, pcap, tcp  # noqa: E402, F401 - each also an attribute of dpkt now
from dpkt.dpkt import UnpackError  # noqa: E402

if not hasattr(dpkt, "UnpackError"):  # the one name of its __init__'s the lab uses: dpkt.UnpackError
    dpkt.UnpackError = UnpackError

if ip.IP_PROTO_TCP not in ip.IP._protosw:
    ip.IP.set_proto(ip.IP_PROTO_TCP, tcp.TCP)
for _type, _cls in ((ethernet.ETH_TYPE_IP, ip.IP), (ethernet.ETH_TYPE_IP6, ip6.IP6)):
    if _type not in ethernet.Ethernet._typesw:
        ethernet.Ethernet.set_type(_type, _cls)

__all__ = ["dpkt"]
