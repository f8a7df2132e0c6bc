"""Acting inside a network namespace from the host process: sysctls, counters, sockets.

A lab host is "a network namespace plus a way to run a process in it". Everything here takes the
namespace's path (``/run/netns/<name>`` or ``/proc/<pid>/ns/net``), so it works the same for a
container and for a plain namespace. The calling thread enters the namespace only for as long as
it opens a file or a socket (a socket stays in the namespace it was made in) and always returns
to where it was, so the host's own namespace is never changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import signal
import subprocess
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .errors import BackendError, EnvError, NamespaceGone, UsageError, quoted

if TYPE_CHECKING:
    from .netlink import IPRoute

__all__ = [
    "inside",
    "iproute",
    "read_sysctl",
    "write_sysctl",
    "read_counters",
    "nsenter",
    "spawn",
    "libc",
    "tied",
    "SYSCTL_ROOT",
]

SYSCTL_ROOT = "/proc/sys"


@contextlib.contextmanager
def inside(nspath: str) -> Iterator[None]:
    """Run the block with the calling thread in the network namespace at *nspath*, then return
    the thread to the namespace it was in.

    Written here rather than with pyroute2's pushns/popns, for two measured reasons: pushns
    *creates* a namespace that is missing (setns' default O_CREAT, by forking the Python process),
    so a lab host whose namespace vanished mid-run was silently replaced by a new, empty one and
    its counters read from there; and it saves the *process's* namespace (/proc/self) on one global
    stack shared by all threads, not the calling thread's. Here the target is only ever opened
    (a vanished host is a BackendError), and the thread's own namespace is saved."""
    try:
        target = os.open(nspath, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NamespaceGone(nspath, exc.strerror or str(exc)) from exc
    try:
        saved = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, nspath)
        except BaseException:
            os.close(saved)
            raise
    finally:
        os.close(target)
    try:
        yield
    finally:
        try:
            _setns(saved, "the thread's own namespace")
        finally:
            os.close(saved)


def _setns(fd: int, what: str) -> None:
    from .netlink import netns as _pnetns  # here, not at the top: `invoke list` loads no netlink code

    try:
        _pnetns.setns(fd, flags=0, libc=libc())
    except OSError as exc:
        raise BackendError(f"cannot enter network namespace {what}: {exc.strerror or exc}") from exc


@contextlib.contextmanager
def iproute(nspath: str) -> Iterator[IPRoute]:
    """An IPRoute whose netlink socket lives in the namespace at *nspath*.

    pyroute2's own ``IPRoute(netns=...)`` forks the Python process to make the socket; a forked
    copy of the lab inherits its signal handlers and state, so we make the socket ourselves.
    Making it is shielded: a Ctrl-C inside pyroute2's constructor left its asyncio event loop
    half made, and the interpreter later printed that loop's failing ``__del__`` as a traceback
    (seen once in a stopped `run all`); held, the signal is raised once the socket exists, and
    the socket is closed."""
    from .interrupts import shielded
    from .netlink import IPRoute

    ipr = None
    try:
        with inside(nspath), shielded():
            ipr = IPRoute()
        yield ipr
    finally:
        if ipr is not None:
            ipr.close()


def _sysctl_path(key: str) -> str:
    if not key.startswith("net.") or "/" in key or ".." in key:
        raise UsageError(
            f"sysctl {key!r} is not a per-namespace network sysctl; give a net.* key such as "
            "net.ipv4.tcp_rfc1337"
        )
    return os.path.join(SYSCTL_ROOT, *key.split("."))


def read_sysctl(nspath: str, key: str) -> str:
    path = _sysctl_path(key)
    with inside(nspath):
        try:
            with open(path) as f:
                return f.read().strip()
        except OSError as exc:
            raise UsageError(_refusal(key, path, exc)) from None


def write_sysctl(nspath: str, key: str, value: str) -> None:
    path = _sysctl_path(key)
    with inside(nspath):
        try:
            with open(path, "w") as f:
                f.write(str(value))
        except OSError as exc:                   # from open(), or from the write at close()
            raise UsageError(_refusal(key, path, exc, str(value))) from None


def _refusal(key: str, path: str, exc: OSError, value: str | None = None) -> str:
    """Why reading (*value* None) or writing *key* failed, in words; called inside the namespace.
    A key that exists is never "unknown": the kernel refused the value (EINVAL, or ENOENT from
    tcp_congestion_control for a name it does not know) or the access (the key's mode)."""
    if os.path.isdir(path):
        return f"{key} is a group of sysctls, not one; name a key in it"
    if not os.path.isfile(path):
        return f"unknown sysctl {key!r} (no {path} there)"
    if isinstance(exc, PermissionError):
        return (f"sysctl {key} is write-only (an action, such as a cache flush): it holds no value"
                if value is None else f"sysctl {key} is read-only; choose a writable net.* key")
    if value is None:
        return f"cannot read sysctl {key} ({exc.strerror or exc})"
    why = "the kernel has no such choice" if exc.errno == errno.ENOENT else \
        (exc.strerror or str(exc)).lower()
    return f"bad value for {key}: the kernel refused {quoted(value)} ({why})"


def _parse_pairs(text: str) -> dict[str, int]:
    """/proc/net/netstat and /proc/net/snmp: header line, value line, per prefix."""
    out: dict[str, int] = {}
    lines = text.splitlines()
    for head, vals in zip(lines[::2], lines[1::2]):
        prefix, _, names = head.partition(":")
        _, _, values = vals.partition(":")
        for name, value in zip(names.split(), values.split()):
            try:
                out[prefix + name] = int(value)
            except ValueError:
                pass
    return out


def _parse_lines(text: str) -> dict[str, int]:
    """/proc/net/snmp6: one "Name value" per line (Ip6InReceives, Icmp6OutMsgs, Udp6InErrors ...)."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) == 2 and words[1].lstrip("-").isdigit():
            out[words[0]] = int(words[1])
    return out


def _parse_sockstat(text: str, tag: str, prefix: str) -> dict[str, int]:
    """The *tag* line of sockstat(6) ("TCP: inuse 1 orphan 0 tw 2 ..."): {prefix + Key: value}."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        if line.startswith(tag):
            words = line.split()[1:]
            for k, v in zip(words[::2], words[1::2]):
                out[prefix + k.capitalize()] = int(v)
    return out


def _read_optional(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:             # a kernel without IPv6 has no snmp6, no sockstat6
        return ""


def read_counters(nspath: str) -> dict[str, int]:
    """All nstat-style counters of the namespace (TcpExtTW, TcpOutRsts, ...), the sockstat
    TIME-WAIT count as ``SockstatTcpTw``; and IPv6's own, where the kernel keeps them per family:
    Ip6*, Icmp6*, Udp6* (/proc/net/snmp6) and the AF_INET6 TCP sockets in use,
    ``SockstatTcp6Inuse``. TCP's counters (Tcp*, TcpExt*) and the TIME-WAIT count are the same
    for both families: the kernel keeps one set per namespace."""
    with inside(nspath):
        texts = []
        for name in ("netstat", "snmp"):
            with open(f"/proc/thread-self/net/{name}") as f:
                texts.append(f.read())
        with open("/proc/thread-self/net/sockstat") as f:
            sockstat = f.read()
        snmp6 = _read_optional("/proc/thread-self/net/snmp6")
        sockstat6 = _read_optional("/proc/thread-self/net/sockstat6")
    counters: dict[str, int] = {}
    for text in texts:
        counters.update(_parse_pairs(text))
    counters.update(_parse_lines(snmp6))
    counters.update(_parse_sockstat(sockstat, "TCP:", "SockstatTcp"))
    counters.update(_parse_sockstat(sockstat6, "TCP6:", "SockstatTcp6"))
    return counters


def nsenter(nspath: str, argv: list[str]) -> list[str]:
    """argv that runs a host program inside the namespace."""
    return ["nsenter", f"--net={nspath}", "--", *argv]


def tied(argv: list[str]) -> list[str]:
    """argv whose process is killed when the lab process dies, even by SIGKILL (so no tcpdump
    or peer outlives a killed run). Start it with start_new_session=True as well, so a Ctrl-C
    at the terminal reaches only the lab, which then stops its children in order."""
    return ["setpriv", "--pdeathsig", "KILL", "--", *argv]


def spawn(nspath: str, argv: list[str], tie: bool = False, **popen: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, **popen)`` with the child in the namespace at *nspath*, forked
    while the calling thread is inside it (a child starts in the namespaces of the thread that
    forks it). The same as ``nsenter --net=NS -- argv`` without nsenter's exec: under TCG each
    exec costs 0.1-0.2 s, and each capture's tcpdump starts this way. *tie*: the child is killed
    when the forking thread ends (PR_SET_PDEATHSIG, set in the child before its exec: what
    ``setpriv --pdeathsig KILL`` does, without setpriv's exec; measured in a TCG guest, a spawn
    took 96 ms so against 185 ms through setpriv)."""
    if tie:
        prctl, kill = libc().prctl, signal.SIGKILL      # resolved here: the child only calls it
        popen["preexec_fn"] = lambda: prctl(_PR_SET_PDEATHSIG, kill)
    with inside(nspath):
        return subprocess.Popen(argv, **popen)


_PR_SET_PDEATHSIG = 1


@functools.cache
def libc() -> ctypes.CDLL:
    """This process's C library (the symbols already loaded: no ctypes.util.find_library, which
    execs ldconfig), errno kept: for pyroute2's netns calls and the few syscalls made here."""
    return ctypes.CDLL(None, use_errno=True)


def run_in(nspath: str, argv: list[str], input: str | None = None, timeout_s: float = 10.0) -> str:
    """Run a host tool in the namespace (lab.nsops.run_tool), forked there as spawn() is."""
    with inside(nspath):
        return run_tool(argv, input=input, timeout_s=timeout_s)


def run_tool(argv: list[str], input: str | None = None, timeout_s: float = 10.0, env: dict | None = None,
             detached: bool = False, shown: list[str] | None = None) -> str:
    """Run a tool of this machine; its stdout. BackendError with the last line of its stderr when
    it fails or hangs, EnvError when it is not installed. *detached*: in a session of its own, so a
    Ctrl-C at the terminal does not reach it (removals). *shown*: the words messages name."""
    shown = shown or argv
    try:
        done = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout_s,
                              env=env, start_new_session=detached)
    except FileNotFoundError as exc:
        raise EnvError(f"{shown[0]} is not installed; run scripts/setup") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"{' '.join(shown)} did not finish within {timeout_s:g} s") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BackendError(f"{' '.join(shown[:4])} failed: {tail}")
    return done.stdout
