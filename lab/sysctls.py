"""--sysctl HOST:KEY=VALUE: parsed, checked against the running kernel before any lab host is made,
and written into a lab host with one line for each way the kernel can say no.

Which keys a lab host has: the per-network-namespace ``net.*`` sysctls, which are not what the
host's own ``/proc/sys/net`` shows. The host's namespace (init_net) has keys no other namespace
has (net.core.netdev_max_backlog, ...), its own interfaces under conf/ (eth0, docker0, other labs'
veths), and different modes: some keys are read-only outside init_net (net.core.rmem_max,
net.ipv4.tcp_allowed_congestion_control). So the keys are listed from a throwaway namespace, which
is what a lab host is when it is made: ``unshare --net find /proc/sys/net`` (a few ms; the
namespace ends with the process and nothing is written anywhere). The listing's mode bits are
what root meets in a lab host: /proc/sys checks even root against the owner bits
(fs/proc/proc_sysctl.c, test_perm()), so 0444 is read-only and 0200 (route.flush) write-only.

A throwaway namespace has only lo, so a key under conf/<interface>/ or neigh/<interface>/ is
checked as its conf/default/ twin; whether the interface exists is seen when the key is written.
A key that appears only once a module is loaded (net.sctp.*) is unknown until it is loaded. Where
the listing cannot be made (no unshare), the keys are checked only when written, after bring-up.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError, quoted
from .nsops import SYSCTL_ROOT, inside, read_sysctl, write_sysctl
from .words import closest

__all__ = ["SysctlSetting", "parse_sysctl", "SYSCTL_RANGES", "REPORTED_SYSCTLS", "KernelKeys", "kernel_keys",
           "check_keys", "apply", "in_force", "host_sysctls", "layer_sysctls"]

# values the kernel accepts but that mean nothing (several of these are plain proc_dointvec
# without bounds, so the kernel stores 7 in tcp_rfc1337 without a word): refused up front
SYSCTL_RANGES: dict[str, tuple[int, int | None, str]] = {
    "net.ipv4.tcp_rfc1337": (0, 1, "0 (RST kills TIME-WAIT) or 1 (ignored)"),
    "net.ipv4.tcp_timestamps": (0, 2, "0, 1 or 2"),
    "net.ipv4.tcp_tw_reuse": (0, 2, "0, 1 or 2"),
    "net.ipv4.tcp_max_tw_buckets": (0, None, "0 or more"),
    "net.ipv4.tcp_fin_timeout": (0, None, "seconds, 0 or more"),
    "net.ipv4.tcp_orphan_retries": (0, 255, "0..255"),
    "net.ipv4.tcp_retries2": (0, 255, "0..255"),
    "net.ipv4.tcp_tw_reuse_delay": (1, None, "milliseconds, 1 or more"),
    "net.ipv4.tcp_invalid_ratelimit": (0, None, "milliseconds, 0 or more"),
    "net.ipv4.ip_forward": (0, 1, "0 or 1"),
}

# what report.json lists per host, besides any sysctl the run set
REPORTED_SYSCTLS = (
    "net.ipv4.tcp_max_tw_buckets", "net.ipv4.tcp_tw_reuse", "net.ipv4.tcp_tw_reuse_delay",
    "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_rfc1337", "net.ipv4.tcp_timestamps",
    "net.ipv4.tcp_orphan_retries", "net.ipv4.tcp_retries2", "net.ipv4.tcp_invalid_ratelimit",
    "net.ipv4.tcp_early_retrans", "net.ipv4.tcp_sack",
    "net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
    # IPv6 as the lab sets it in every host (lab.backends.links.IPV6_QUIET)
    "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.all.accept_ra", "net.ipv6.conf.all.accept_dad",
    "net.ipv4.tcp_ehash_entries",     # read-only: the host's TCP hash table (< 0: the shared one)
)

# where the kernel lists the values a key takes, for the message when it refuses one
CHOICES = {"net.ipv4.tcp_congestion_control": "net.ipv4.tcp_available_congestion_control"}

PER_INTERFACE = ("ipv4.conf", "ipv6.conf", "ipv4.neigh", "ipv6.neigh")   # net.<these>.<ifname>.*


@dataclass(frozen=True)
class SysctlSetting:
    host: str
    key: str
    value: str

    def __str__(self) -> str:
        return f"{self.host}:{self.key}={self.value}"

    @property
    def flag(self) -> str:
        """How messages name it: ``--sysctl 'client:net.ipv4.tcp_rfc1337=1'`` (long ones cut)."""
        return f"--sysctl {quoted(str(self))}"


def parse_sysctl(text: str) -> SysctlSetting:
    """"client:net.ipv4.tcp_max_tw_buckets=0" -> SysctlSetting. Only the syntax and the known
    ranges are checked here; whether the key exists is check_keys' job (it asks the kernel)."""
    host, sep, rest = text.partition(":")
    key, eq, value = rest.partition("=")
    host, key, value = host.strip(), key.strip(), value.strip()
    if not sep or not eq or not host or not key or not value:
        raise UsageError(f"--sysctl {quoted(text)}: write HOST:KEY=VALUE, e.g. client:net.ipv4.tcp_rfc1337=1")
    key = key.replace("/", ".")
    if not key.startswith("net."):
        raise UsageError(f"--sysctl {quoted(text)}: only per-namespace net.* sysctls can be set in a lab host")
    if "" in key.split(".") or any(c.isspace() or not c.isprintable() for c in key):
        raise UsageError(f"--sysctl {quoted(text)}: {quoted(key)} is not a sysctl name; write it as "
                         "`sysctl` does, e.g. net.ipv4.tcp_rfc1337")
    if key in SYSCTL_RANGES:
        low, high, words = SYSCTL_RANGES[key]
        try:
            number = int(value)
        except ValueError:
            raise UsageError(f"--sysctl {quoted(text)}: {key} takes a whole number: {words}") from None
        if number < low or (high is not None and number > high):
            raise UsageError(f"--sysctl {quoted(text)}: out of range; {key} takes {words}")
    return SysctlSetting(host, key, value)


@dataclass(frozen=True)
class KernelKeys:
    """The net.* sysctls of a fresh network namespace: key -> mode bits, and the groups (dirs)."""

    modes: dict[str, int]
    groups: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def from_listing(cls, text: str) -> KernelKeys:
        """Parse ``find /proc/sys/net -printf '%y %m %P\\n'`` (type, octal mode, relative path)."""
        modes, groups = {}, set()
        for line in text.splitlines():
            kind, _, rest = line.partition(" ")
            mode, _, rel = rest.partition(" ")
            if not rel:
                continue
            key = "net." + rel.replace("/", ".")
            if kind == "d":
                groups.add(key)
            elif kind == "f":
                modes[key] = int(mode, 8)
        return cls(modes, frozenset(groups))

    def refusal(self, key: str, host_root: str = SYSCTL_ROOT) -> str | None:
        """Why *key* cannot be set in a lab host, or None when it can."""
        mode = self.modes.get(key)
        if mode is not None:
            if not mode & 0o400:
                return (f"{key} is write-only: writing it triggers an action (a cache flush) and it "
                        "holds no value a lab host could be set to")
            if not mode & 0o200:
                return f"{key} is read-only in a lab host's network namespace"
            return None
        if key in self.groups or key == "net":
            inside_ = sorted((k.count("."), k) for k in self.modes if k.startswith(key + "."))
            return (f"{key} is a group of sysctls, not one; name a key in it"
                    + (f", e.g. {inside_[0][1]}" if inside_ else ""))
        parts = key.split(".")
        if len(parts) >= 5 and ".".join(parts[1:3]) in PER_INTERFACE and \
                ".".join(parts[:4]) not in self.groups:
            group = ".".join(parts[:3])                                 # the interface is seen later
            twin = ".".join([group, "default", *parts[4:]])
            why = self.refusal(twin, host_root)
            return why.replace(f"{group}.default.", f"{group}.{parts[3]}.") if why else None
        if os.path.isfile(os.path.join(host_root, *parts)):
            return (f"{key} is global to the kernel (only the host's own network namespace has it), "
                    "so a lab host cannot be given a value of its own")
        close = closest(key, self.modes, cutoff=0.8)
        return (f"unknown sysctl {quoted(key)}: a network namespace of this kernel "
                f"({platform.release()}) has no such key"
                + (f"; did you mean {close[0]}?" if close else "; `sysctl net` lists them"))


@functools.lru_cache(maxsize=1)
def kernel_keys() -> KernelKeys | None:
    """The keys of a throwaway network namespace of the running kernel, or None when one cannot
    be made here (the keys are then checked when they are written)."""
    try:
        done = subprocess.run(["unshare", "--net", "--", "find", "/proc/sys/net", "-printf", r"%y %m %P\n"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    keys = KernelKeys.from_listing(done.stdout) if done.returncode == 0 else None
    return keys if keys and keys.modes else None


def check_keys(settings: Iterable[SysctlSetting], keys: KernelKeys | None = None,
               host_root: str = SYSCTL_ROOT) -> None:
    """Refuse, before anything is made, a setting whose key a lab host does not have or cannot
    write (UsageError naming the setting, with a did-you-mean for a typo)."""
    settings = list(settings)
    if not settings:
        return
    keys = keys or kernel_keys()
    if keys is None:
        return
    for s in settings:
        why = keys.refusal(s.key, host_root)
        if why:
            raise UsageError(f"{s.flag}: {why}")


def apply(nspath: str, s: SysctlSetting) -> None:
    """Write *s* in the lab host at *nspath* and read it back; a refusal is one line naming the
    setting: an unknown key (or interface), a read-only key, or a bad value for a key that exists."""
    try:
        write_sysctl(nspath, s.key, s.value)
        got = read_sysctl(nspath, s.key)
    except UsageError as exc:
        raise UsageError(f"{s.flag}: {exc}{_hint(nspath, s, str(exc))}") from None
    if got.split() != s.value.split():
        raise UsageError(f"{s.flag}: the kernel keeps {quoted(got)} instead; give a value it accepts")


def in_force(nspath: str, keys: Iterable[str]) -> dict[str, str]:
    """The values of *keys* in the lab host at *nspath*; a key this kernel lacks is left out
    (e.g. tcp_tw_reuse_delay before 6.14)."""
    out = {}
    for key in dict.fromkeys(keys):
        try:
            out[key] = read_sysctl(nspath, key)
        except UsageError:
            pass
    return out


def _hint(nspath: str, s: SysctlSetting, why: str) -> str:
    """What the host offers instead: its interfaces, or the values the kernel lists for the key."""
    parts = s.key.split(".")
    try:
        if why.startswith("unknown") and len(parts) >= 5 and ".".join(parts[1:3]) in PER_INTERFACE:
            with inside(nspath):
                names = os.listdir(os.path.join(SYSCTL_ROOT, *parts[:3]))
            return f"; {s.host}'s interfaces: {', '.join(sorted(set(names) - {'all', 'default'}))}"
        if why.startswith("bad value") and s.key in CHOICES:
            return f"; available now: {read_sysctl(nspath, CHOICES[s.key])}"
    except (OSError, UsageError):
        pass
    return ""


LAB_TCP_HOSTS = ("client", "server")             # where --from-host puts the host's values
# the host's routing role is not the ends': only the router forwards
HOST_SKIPPED_KEYS = ("net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding",
                     "net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.all.accept_ra",
                     "net.ipv6.conf.all.accept_dad",   # the lab's own IPv6 set-up, not TCP's
                     "net.ipv4.tcp_ehash_entries")     # the routing role; a read-only size

def host_sysctls(proc: Path = Path("/proc/sys"), hosts: tuple[str, ...] = LAB_TCP_HOSTS) -> list[SysctlSetting]:
    """This machine's current values of the lab's TCP keys (read only), for each lab end."""
    out = []
    for key in REPORTED_SYSCTLS:
        if key in HOST_SKIPPED_KEYS:
            continue
        try:
            value = " ".join((proc / key.replace(".", "/")).read_text().split())
        except OSError:
            continue                        # this kernel lacks the key (e.g. tcp_tw_reuse_delay)
        out.extend(SysctlSetting(h, key, value) for h in hosts)
    return out


def layer_sysctls(own: Iterable[tuple[str, str, str]], from_host: Iterable[SysctlSetting] = (),
                  explicit: Iterable[SysctlSetting] = ()) -> list[SysctlSetting]:
    """What one scenario is run with, the later winning: its *own* settings ((host, key, value):
    Scenario.own_sysctls()), this machine's values (--from-host) where the scenario sets nothing
    itself - the experiment stays the experiment - and the explicit settings (a profile's, then the
    command line's). The one place the layers meet: run, run all, --repeat, check, matrix."""
    own = [SysctlSetting(h, k, str(v)) for h, k, v in own]
    mine = {(s.host, s.key) for s in own}
    merged: dict[tuple[str, str], SysctlSetting] = {}
    for s in own + [s for s in from_host if (s.host, s.key) not in mine] + list(explicit):
        merged.pop((s.host, s.key), None)
        merged[(s.host, s.key)] = s
    return list(merged.values())


