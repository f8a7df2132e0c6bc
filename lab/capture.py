"""Per-host packet captures: tcpdump run inside each host's namespace, writing a pcap.

tcpdump is the host machine's (scripts/setup installs it), started inside each host's namespace
(lab.nsops.spawn), so captures work the same on both backends and the image need not carry it.
tcpdump writes the pcap to its stdout, which is the artifact file, so no file ownership or
AppArmor rule gets in the way.
"""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

from .artifacts import open_file
from .errors import BackendError
from .nsops import spawn

__all__ = ["Capture", "parse_stats", "capture_points"]

BUFFER_KIB = 16384
# TCP of either family: libpcap's "tcp" looks for TCP right after the IPv6 header (or a fragment
# header) only; "ip6 protochain 6" walks the extension headers to it, so lab.packets sees every
# TCP segment it can decode. The walk runs only for IPv6 packets the cheap test did not take.
TCP_FILTER = "tcp or ip6 protochain 6"


def capture_points(host, members) -> dict[str, dict]:
    """Where a host is captured: one point per interface, each named for what it faces. A host on
    one network is captured as itself ("client"); a host on several (the router) once per
    interface, named by the side it faces ("router-client", "router-server"): one pcap per
    interface, so a forwarded segment appears once in each and Wireshark flags no false
    retransmission. *members(network)* lists the hosts' names on a network. Each point: the host,
    its interface's name and index, the network and the hosts on the far side of that link."""
    from .nsops import inside

    names = {net: host.ifname(net) for net in host.addresses}   # the backend's names, or looked up
    with inside(host.nspath):                  # an ioctl each: no netlink dump (0.4 s a host in a TCG guest)
        index = {net: socket.if_nametoindex(name) for net, name in names.items()}
    points = {}
    for net, addr in host.addresses.items():
        facing = [m for m in members(net) if m != host.name]
        name = host.name if len(host.addresses) == 1 else f"{host.name}-{'+'.join(facing) or net}"
        points[name] = {"file": f"{name}.pcap", "host": host.name, "interface": names[net],
                        "ifindex": index[net], "network": net, "address": str(addr), "faces": facing}
    return points


def parse_stats(text: str) -> dict[str, int]:
    """tcpdump's closing words ("12 packets captured / 12 packets received by filter / 0 packets
    dropped by kernel") as numbers: captured, received, dropped."""
    out = {}
    for key, pattern in (("captured", r"(\d+) packets? captured"),
                         ("received", r"(\d+) packets? received by filter"),
                         ("dropped", r"(\d+) packets? dropped by kernel")):
        m = re.search(pattern, text)
        if m:
            out[key] = int(m.group(1))
    return out


class Capture:
    def __init__(self, nspath: str, interface: str, path: Path, bpf: str = TCP_FILTER,
                 link_type: str | None = None, snaplen: int = 0) -> None:
        self.nspath, self.interface, self.path, self.bpf = nspath, interface, Path(path), bpf
        self.link_type, self.snaplen = link_type, snaplen
        self._proc: subprocess.Popen | None = None
        self._out = None
        self.stats = ""
        self.ended_early: str | None = None    # how tcpdump ended, when it ended before stop()
        self._asked = False                    # interrupt() asked it to end

    def start(self, timeout_s: float = 10.0) -> Capture:
        """Start tcpdump and wait until it listens."""
        return self.launch().ready(timeout_s)

    def launch(self) -> Capture:
        """Start tcpdump; ready() waits until it listens. A lab launches all its captures before
        it waits for any: each tcpdump takes about 40 ms to bind, and four in a row cost a netns
        run 0.17 s (cProfile of lost-ack), about 0.05 s side by side."""
        # --immediate-mode: without it packets of the last buffer timeout (1 s) are lost on stop
        # -Z root: tcpdump must not change its uid, which would clear the parent-death signal
        # Immediate mode takes libpcap's TPACKET_V2 ring: one fixed-size frame per packet, sized
        # by the snaplen (with -s 0 on an interface with offloads, libpcap's 256 KiB maximum), so
        # the ring holds few packets: a burst of 100 closes overflowed the default 2 MiB and then
        # 16 MiB under qemu (TCG), where tcpdump runs slowly. The lab gives a snaplen (2 KiB at the
        # ends) and -B 16 MiB: thousands of frames.
        argv = ["tcpdump", "-i", self.interface, "-n", "-Z", "root", "-U", "--immediate-mode", "-s", str(self.snaplen),
                "-B", str(BUFFER_KIB), "-w", "-"]
        if self.link_type:
            argv += ["-y", self.link_type]
        if self.bpf:
            argv.append(self.bpf)
        self._out = open_file(self.path)           # 0600: lab.artifacts
        try:
            self._proc = spawn(self.nspath, argv, tie=True, stdout=self._out, stderr=subprocess.PIPE,
                               stdin=subprocess.DEVNULL, start_new_session=True)
        except FileNotFoundError as exc:
            self._out.close()
            raise BackendError("tcpdump is not installed; run scripts/setup") from exc
        except BaseException:                  # e.g. the namespace is gone (NamespaceGone)
            self._out.close()
            raise
        return self

    def ready(self, timeout_s: float = 10.0) -> Capture:
        """Wait until tcpdump listens (BackendError, and the capture stopped, if it does not)."""
        # tcpdump says "listening on ..." once the socket is bound: only then is nothing missed
        deadline = time.monotonic() + timeout_s
        said = b""
        fd = self._proc.stderr.fileno()
        while time.monotonic() < deadline and b"listening on" not in said:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk:
                    break
                said += chunk
        if b"listening on" in said:
            return self
        self.stop()
        raise BackendError(f"tcpdump on {self.interface} did not start: "
                           f"{said.decode(errors='replace').strip() or 'no answer'}")

    def alive(self) -> bool:
        """False once tcpdump has ended without being asked to (killed, crashed): the pcap
        then misses the rest of the run. Records how it ended in ``ended_early``."""
        if self._proc is None or self._proc.poll() is None:
            return True
        if self.ended_early is None:
            self.ended_early = _how_it_ended(self._proc.returncode)
        return False

    def interrupt(self) -> None:
        """Ask tcpdump to finish (stop() waits for it): a lab asks all its captures first, then
        waits for each, as it starts them."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            self._asked = True

    def stop(self) -> None:
        if self._proc is not None:
            self.interrupt()                    # asked now, unless interrupt() asked already
            if self._asked:
                try:
                    _, err = self._proc.communicate(timeout=5)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    _, err = self._proc.communicate()
            else:                               # it ended before we asked: an incomplete pcap
                self.alive()
                _, err = self._proc.communicate()
            self.stats = (err or b"").decode(errors="replace").strip()
            self._proc = None
        if self._out is not None:
            self._out.close()
            self._out = None


def _how_it_ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with status {returncode}"
