"""The kernel options the lab needs, and what a given kernel's config lacks of them.

The config is read from the file beside the kernel (boot/config-RELEASE, a build tree's .config)
or, where there is none, from the image itself (CONFIG_IKCONFIG keeps it gzipped between the
markers IKCFG_ST and IKCFG_ED). ``y`` and ``m`` both count; a module must then be in the tree.
"""

from __future__ import annotations

import re
import zlib
from pathlib import Path

__all__ = ["NEEDED", "OPTIONAL", "DOCKER", "embedded_config", "parse", "missing", "summary", "line"]

# option -> why the lab needs it (README "Kernel options the lab needs" lists the same)
NEEDED: dict[str, str] = {
    "BLK_DEV_INITRD": "the initramfs",
    "DEVTMPFS": "/dev in the guest",
    "TMPFS": "the overlay's upper layer and /run",
    "SERIAL_8250_CONSOLE": "the console on ttyS0 (progress, markers)",
    "MAGIC_SYSRQ": "power-off through /proc/sysrq-trigger",
    "VIRTIO_PCI": "virtio devices",
    "NET_9P_VIRTIO": "9p over virtio (the shared root and artifacts)",
    "9P_FS": "9p file systems",
    "OVERLAY_FS": "the throwaway root overlay",
    "UNIX": "Unix sockets",
    "NET_NS": "network namespaces (the lab's hosts)",
    "VETH": "veth pairs (the lab's links)",
    "NF_TABLES": "nftables (faults in the router)",
    "NF_TABLES_INET": "the inet table the faults use",
    "NFT_LOG": "nft log (faults hand packets to NFLOG)",
    "NETFILTER_NETLINK_LOG": "NFLOG (faults.pcap, held packets)",
    "PACKET": "AF_PACKET (tcpdump)",
    "INET_DIAG": "sock_diag (socket states and timers)",
    "INET_TCP_DIAG": "sock_diag for TCP",
}
OPTIONAL: dict[str, str] = {
    "NET_SCH_NETEM": "netem (lossy-link and every --shape; without it they are skipped)",
    "IPV6": "IPv6 (--family 6)",
}
DOCKER: dict[str, str] = {
    "CGROUPS": "cgroups (the guest's Docker engine)",
    "VIRTIO_BLK": "the engine's data disk",
    "EXT4_FS": "the engine's ext4 data disk",
    "PID_NS": "containers' PID namespaces",
}


def embedded_config(vmlinux: bytes) -> str | None:
    """The config CONFIG_IKCONFIG built into the image, if any."""
    start = vmlinux.find(b"IKCFG_ST")
    if start < 0:
        return None
    try:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(vmlinux[start + 8:]).decode(errors="replace")
    except zlib.error:
        return None


def parse(text: str) -> dict[str, str]:
    """CONFIG_X=value lines -> {X: value} (``# CONFIG_X is not set`` and absent are the same)."""
    return {m.group(1): m.group(2) for m in re.finditer(r"^CONFIG_(\w+)=(.*)$", text, re.M)}


def missing(opts: dict[str, str], wanted: dict[str, str], module_tree: Path | None) -> list[str]:
    """The options of *wanted* the config has neither built in nor as a module (a module needs a
    module tree to come from)."""
    return [name for name in wanted
            if not (opts.get(name) == "y" or (opts.get(name) == "m" and module_tree is not None))]


def summary(opts: dict[str, str], module_tree: Path | None, docker: bool = False) -> tuple[list[str], list[str]]:
    """(options the lab cannot do without that are missing, optional ones that are missing)."""
    needed = {**NEEDED, **(DOCKER if docker else {})}
    return missing(opts, needed, module_tree), missing(opts, OPTIONAL, module_tree)


def line(name: str, lacks: list[str], wanted: dict[str, str]) -> str:
    """One line naming what *name*'s config lacks and what each is for."""
    return (f"the kernel {name} lacks " + ", ".join(f"CONFIG_{o} ({wanted.get(o, '?')})" for o in lacks))
