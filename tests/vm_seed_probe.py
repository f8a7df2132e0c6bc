"""Run as root inside a kernel with netem (the VM tests boot one): does netem's seed, sent by
lab.shaping, replay the same losses? Not a test module itself (tests/integration/test_vm.py runs
it and judges what it prints).

Two fresh namespaces joined by a veth; IPv6 off and the neighbours pinned, so nothing but our
datagrams passes the qdisc (netem draws one random number per packet for loss, none for a zero
delay or duplication); netem with 50 % loss on A's end, then N UDP datagrams A -> B, one at a
time. For each trial (seed S, S again, S+1, no seed) it prints which datagrams arrived and the seed
the kernel reported, as one JSON document."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

from lab.backends.base import Host
from lab.netem import apply, read_back
from lab.nsops import inside
from lab.shaping import LinkProfile

N = 400
SEED = 20261125


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def trial(seed: int | None) -> dict:
    for ns in ("twseed-a", "twseed-b"):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        sh("ip", "netns", "add", ns)
        sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1",
           "net.ipv6.conf.default.disable_ipv6=1")
    sh("ip", "-n", "twseed-a", "link", "add", "va", "address", "02:00:00:00:00:0a", "type", "veth",
       "peer", "name", "vb", "address", "02:00:00:00:00:0b", "netns", "twseed-b")
    for ns, dev, mine, peer, mac in (("twseed-a", "va", "10.99.0.1", "10.99.0.2", "02:00:00:00:00:0b"),
                                     ("twseed-b", "vb", "10.99.0.2", "10.99.0.1", "02:00:00:00:00:0a")):
        sh("ip", "-n", ns, "addr", "add", f"{mine}/24", "dev", dev)
        sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", ns, "neigh", "replace", peer, "lladdr", mac, "dev", dev, "nud", "permanent")
    host = Host(name="a", spec=None, nspath="/run/netns/twseed-a", exec_prefix=[], python=[])
    apply(host, "va", LinkProfile(loss_pct=50, seed=seed))
    reported = (read_back(host, "va") or {}).get("seed")
    with inside("/run/netns/twseed-b"):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("10.99.0.2", 9000))
    rx.settimeout(0.2)
    with inside("/run/netns/twseed-a"):
        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    arrived = []
    for i in range(N):
        tx.sendto(str(i).encode(), ("10.99.0.2", 9000))
        time.sleep(0.001)
    deadline = time.time() + 2
    while time.time() < deadline:
        try:
            arrived.append(int(rx.recv(64)))
        except TimeoutError:
            break
    tx.close()
    rx.close()
    for ns in ("twseed-a", "twseed-b"):
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    return {"seed": seed, "reported_seed": reported, "arrived": sorted(arrived)}


def main() -> None:
    trials = [trial(SEED), trial(SEED), trial(SEED + 1), trial(None)]
    json.dump({"kernel": subprocess.run(["uname", "-r"], capture_output=True, text=True).stdout.strip(),
               "sent": N, "trials": trials}, sys.stdout)


if __name__ == "__main__":
    main()
