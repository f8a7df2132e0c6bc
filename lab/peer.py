"""Driving the peer agent (lab/peer_agent.py, the socket program run inside a lab host), one step at
a time."""

from __future__ import annotations

import base64
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import CodeType
from typing import TYPE_CHECKING, Any

from .errors import PeerError
from .forked import Forked

if TYPE_CHECKING:
    from .backends.base import Host
    from .timeline import Timeline

__all__ = ["Peer", "Result"]

_AGENT = Path(__file__).parent / "peer_agent.py"
_SOURCE = _AGENT.read_text()


@cache
def _code() -> CodeType:
    """The agent compiled once, for the peers forked from this process."""
    return compile(_SOURCE, str(_AGENT), "exec")


@dataclass(frozen=True)
class Result:
    """What one peer step did: ok or an errno, when (the host's clock), and what it returned."""

    op: str
    ok: bool
    t: float
    errno: int | None = None
    error: str | None = None
    message: str | None = None
    result: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.result[key]

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.result.get("data_b64", ""))

    def to_json(self) -> dict[str, Any]:
        d = {"op": self.op, "ok": self.ok, "t": self.t, "result": self.result}
        if not self.ok:
            d.update(errno=self.errno, error=self.error, message=self.message)
        return d


class Peer:
    """The peer agent in *host*: its sockets are of the host's family (Host.family, the lab's),
    AF_INET6 reaching IPv4 addresses as ::ffff:a.b.c.d in a v4-mapped host (Host.mapped)."""

    def __init__(self, host: Host, timeline: Timeline, timeout_s: float = 15.0, wait: bool = True) -> None:
        """Start the agent; *wait* False leaves waiting for its hello to ready() (a lab launches
        its ends' peers while its captures start). In a plain namespace it is a fork of this
        process (lab.forked: no interpreter to start); in a container or a sandbox, that host's
        own python3 runs the agent's source."""
        self.host, self.timeline, self.timeout_s = host, timeline, timeout_s
        self.results: list[Result] = []
        self._buf = b""
        self.pid: int | None = None
        try:
            family = f"{host.family}{'m' if host.mapped else ''}"
            if host.plain:          # a copy of this process runs the agent there (lab.forked)
                self._proc: Any = Forked(host.nspath, _code(), [family], name="twlab-peer")
            else:                   # a container's or a sandbox's own python3
                self._proc = host.popen([*host.python, "-c", _SOURCE, family], tie=True, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        except FileNotFoundError as exc:
            raise PeerError(f"{host.name}: cannot start the peer ({exc.filename} not found)") from exc
        if wait:
            self.ready()

    def ready(self) -> Peer:
        """Wait for the agent's hello (once; PeerError if it does not come or is not ok)."""
        if self.pid is None:
            hello = self._read("start", self.timeout_s)
            if not hello.ok:
                raise PeerError(f"{self.host.name}: the peer did not start: {hello.message}")
            self.pid = hello.result.get("pid")
        return self

    def _read(self, op: str, timeout_s: float) -> Result:
        deadline = time.monotonic() + timeout_s
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                raise PeerError(f"{self.host.name}: the peer did not answer {op!r} within {timeout_s:g} s")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    err = self._proc.stderr.read().decode(errors="replace").strip().splitlines()
                    raise PeerError(f"{self.host.name}: the peer died during {op!r}: "
                                    f"{err[-1] if err else 'exit ' + str(self._proc.wait())}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        try:
            doc = json.loads(line)
        except ValueError as exc:
            raise PeerError(f"{self.host.name}: the peer answered {line[:80]!r}") from exc
        return Result(op=op, ok=bool(doc.get("ok")), t=float(doc.get("t", time.time())),
                      errno=doc.get("errno"), error=doc.get("error"), message=doc.get("message"),
                      result=doc.get("result") or {})

    def call(self, op: str, *, wait_s: float | None = None, **args: Any) -> Result:
        """Run one step. An errno is a result (the scenario decides); a dead or silent peer is not.
        *wait_s* bounds how long to wait for the answer; a step's own ``timeout_s`` (accept,
        connect, recv) goes to the peer, and the wait is stretched to cover it."""
        wait = wait_s if wait_s is not None else self.timeout_s
        if "timeout_s" in args:
            wait = max(wait, float(args["timeout_s"]) + 5)
        try:
            self._proc.stdin.write((json.dumps({"op": op, **args}) + "\n").encode())
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise PeerError(f"{self.host.name}: the peer is gone (step {op!r})") from exc
        res = self._read(op, wait)
        self.results.append(res)
        shown = {k: v for k, v in args.items() if k != "data_b64"}
        text = f"{op}({', '.join(f'{k}={v}' for k, v in shown.items())})"
        text += " -> ok" if res.ok else f" -> {res.error}"
        self.timeline.add(res.t, self.host.name, "peer", text, step=res.to_json(), args=shown)
        return res

    # the steps a scenario reads like a timeline
    def listen(self, sock: str, port: int, **opts: Any) -> Result:
        return self.call("listen", sock=sock, port=port, **opts)

    def accept(self, sock: str, as_: str, timeout_s: float = 10) -> Result:
        return self.call("accept", sock=sock, timeout_s=timeout_s, **{"as": as_})

    def connect(self, sock: str, addr: str, port: int, **opts: Any) -> Result:
        """Connect *sock* to *addr*:*port* (opts: lport, reuseaddr, linger, v6only, family, and
        mapped=True: an AF_INET6 socket reaching an IPv4 *addr* as ::ffff:a.b.c.d)."""
        return self.call("connect", sock=sock, addr=str(addr), port=port, **opts)

    def send(self, sock: str, data: bytes) -> Result:
        return self.call("send", sock=sock, data_b64=base64.b64encode(data).decode())

    def recv(self, sock: str, max: int = 65536, timeout_s: float = 5) -> Result:
        return self.call("recv", sock=sock, max=max, timeout_s=timeout_s)

    def shutdown(self, sock: str, how: str = "wr") -> Result:
        return self.call("shutdown", sock=sock, how=how)

    def close(self, sock: str) -> Result:
        return self.call("close", sock=sock)

    def info(self, sock: str) -> Result:
        return self.call("info", sock=sock)

    def blast(self, sock: str, nbytes: int, pattern: str, offset: int = 0,
              timeout_s: float = 30) -> Result:
        """Send *nbytes* bytes of *pattern* repeated (phased from stream offset *offset*)."""
        return self.call("blast", sock=sock, bytes=nbytes, pattern=pattern, offset=offset,
                         timeout_s=timeout_s)

    def drain(self, sock: str, nbytes: int, timeout_s: float = 30, keep: int = 0,
              markers: tuple[str, ...] = ()) -> Result:
        """Read *nbytes* bytes (or until EOF/timeout): result len, the first *keep* bytes
        (Result.data) and the count of each marker in what was read."""
        return self.call("drain", sock=sock, bytes=nbytes, timeout_s=timeout_s, keep=keep,
                         markers=list(markers))

    # many connections at once
    def connect_many(self, prefix: str, count: int, addr: str, port: int, timeout_s: float = 30,
                     **opts: Any) -> Result:
        """Open *count* connections concurrently (sockets PREFIX0...); result["connections"]."""
        return self.call("connect_many", prefix=prefix, count=count, addr=str(addr), port=port,
                         timeout_s=timeout_s, **opts)

    def accept_many(self, sock: str, prefix: str, count: int, timeout_s: float = 30) -> Result:
        return self.call("accept_many", sock=sock, prefix=prefix, count=count, timeout_s=timeout_s)

    def close_many(self, socks: list[str]) -> Result:
        return self.call("close_many", socks=list(socks))

    def close_on_eof(self, socks: list[str], timeout_s: float = 60) -> Result:
        """Read each socket to end of stream, then close it (a plain server's loop)."""
        return self.call("close_on_eof", socks=list(socks), timeout_s=timeout_s)

    def kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def ask_to_exit(self) -> None:
        """Ask the peer to exit, without waiting (stop() waits): a lab asks all its peers first."""
        if self._proc.poll() is None and not self._proc.stdin.closed:
            try:
                self._proc.stdin.write(b'{"op": "exit"}\n')
                self._proc.stdin.close()
            except OSError:
                pass

    def stop(self) -> None:
        """Ask the peer to exit (its sockets close as a process exit closes them); kill if it lingers."""
        if self._proc.poll() is None:
            try:
                self.ask_to_exit()
                self._proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.kill()
        for stream in (self._proc.stdout, self._proc.stderr):
            if stream and not stream.closed:
                stream.close()
