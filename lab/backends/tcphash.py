"""A TCP hash table of the lab's own for each netns-backend host.

Every network namespace shares the kernel's one established-socket hash table (ehash) unless it
was created from a namespace whose ``net.ipv4.tcp_child_ehash_entries`` is set: then it gets a
table of its own of that size (Linux 6.1+, net/ipv4/tcp_ipv4.c tcp_set_hashinfo(), which reads the
sysctl of the *creating* process's namespace, ``current->nsproxy->net_ns``). A sock_diag dump walks
every bucket of the table its namespace uses, so on this 24 GB machine (262144 buckets) each dump
cost 2.1 ms of wall time and 1.0 ms of CPU whatever the lab held; in a namespace with 16384 buckets,
71 us and 71 us (a 30x cut, measured with lab.observe.SocketView.sockets(), 200 dumps each). The
sampler dumps every 50 ms per host, so with many labs at once this is most of its cost.

So the netns backend makes a short-lived parent namespace (``twlab-<lab>-parent``), sets the
sysctl there - never in this machine's own namespace - creates the hosts from inside it, and
removes it. The kernel sizes each host's defaults from its table: tcp_max_tw_buckets is half of
it (8192), which report.json lists. Docker's containers get their namespaces from runc in this
machine's namespace, so they keep the shared table.
"""

from __future__ import annotations

__all__ = ["CHILD_EHASH_ENTRIES", "prepare_parent"]

CHILD_EHASH_ENTRIES = 16384


def prepare_parent(nspath: str) -> bool:
    """Give namespaces made from inside *nspath* their own TCP hash tables; False on a kernel
    without per-namespace tables (before 6.1), where they share the global one as before."""
    from ..errors import UsageError
    from ..nsops import write_sysctl

    try:
        write_sysctl(nspath, "net.ipv4.tcp_child_ehash_entries", str(CHILD_EHASH_ENTRIES))
    except UsageError:                  # no such key: an older kernel
        return False
    return True
