"""The peer: a small socket program run inside a lab host, driven one step at a time.

It reads one JSON command per line on stdin and answers one JSON line on stdout:

    {"op": "listen", "sock": "L", "port": 5000, "reuseaddr": true}
    {"ok": true, "t": 1732540000.123456, "result": {"local": ["10.77.2.10", 5000]}}
    {"ok": false, "t": ..., "errno": 98, "error": "EADDRINUSE", "message": "Address already in use"}

Operations: socket, bind, listen, accept, connect, send, recv, shutdown, close, info, exit;
blast and drain move many bytes without carrying them over the pipe, in a recognisable pattern
("OLD-"), and count markers in what was read. For many connections at once: connect_many (opens
them concurrently), accept_many, close_many, and close_on_eof (what a plain server does: close
each connection when its peer's FIN has been read).
Sockets are named by the caller. The program uses only the standard library, so it runs with the
python3 of any host image, and is sent as source (``python3 -u -c SOURCE FAMILY``), not installed.
FAMILY (4 or 6, the lab's) is what its sockets are: AF_INET6 for 6, listening on "::" and
connecting to an IPv6 address, IPV6_V6ONLY left at the kernel's default (net.ipv6.bindv6only)
unless a step gives ``v6only``. A step may give its own ``family``; ``mapped: true`` makes an
AF_INET6 socket that reaches an IPv4 address as ``::ffff:a.b.c.d`` (a v4-mapped client).
Addresses come back as [address, port], whatever the family.
"""

import base64
import errno
import json
import os
import select
import socket
import struct
import sys
import time

TCP_STATES = ["", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2", "TIME_WAIT",
              "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"]

socks = {}
FAMILY = int(sys.argv[1]) if len(sys.argv) > 1 else 4     # the lab's: 4 or 6


def tcp_state(s):
    try:
        info = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
    except OSError:
        return None
    return TCP_STATES[info[0]] if info[0] < len(TCP_STATES) else str(info[0])


errors_seen = {}   # socket fd -> the first non-zero SO_ERROR read from it (reading clears it)


def family_of(cmd):
    """The socket family a step asks for: its own, AF_INET6 for a v4-mapped one, else the lab's."""
    if cmd.get("mapped"):
        return socket.AF_INET6
    return socket.AF_INET6 if int(cmd.get("family") or FAMILY) == 6 else socket.AF_INET


def any_addr(s):
    return "::" if s.family == socket.AF_INET6 else "0.0.0.0"


def peer_addr(s, addr):
    """*addr* as *s* reaches it: an IPv4 address as ::ffff:a.b.c.d from an AF_INET6 socket."""
    if s.family == socket.AF_INET6 and "." in addr and ":" not in addr:
        return "::ffff:" + addr
    return addr


def describe(s):
    out = {"state": tcp_state(s)}
    for key, fn in (("local", s.getsockname), ("remote", s.getpeername)):
        try:
            out[key] = list(fn())[:2]           # [address, port]: IPv6's flowinfo and scope left out
        except OSError:
            out[key] = None
    # SO_ERROR is cleared by reading it (sock_error()): a step's reply may read the error a
    # reset left, so the first one seen is kept and reported by every later step as well
    out["so_error"] = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if out["so_error"] and s.fileno() not in errors_seen:
        errors_seen[s.fileno()] = out["so_error"]
    out["so_error_seen"] = errors_seen.get(s.fileno(), 0)
    return out


def forget(s):
    """The socket, its remembered error dropped (its descriptor number will be reused)."""
    errors_seen.pop(s.fileno(), None)
    return s


def new_socket(cmd):
    s = socket.socket(family_of(cmd), socket.SOCK_STREAM)
    if cmd.get("v6only") is not None and s.family == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(bool(cmd["v6only"])))
    if cmd.get("reuseaddr"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if cmd.get("reuseport"):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if cmd.get("linger") is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, int(cmd["linger"])))
    socks[cmd["sock"]] = s
    return s


def get(cmd, key="sock"):
    try:
        return socks[cmd[key]]
    except KeyError:
        raise ValueError(f"no socket named {cmd.get(key)!r}") from None


def op_socket(cmd):
    new_socket(cmd)
    return {}


def op_bind(cmd):
    s = socks.get(cmd["sock"]) or new_socket(cmd)
    s.bind((cmd.get("addr") or any_addr(s), int(cmd.get("port", 0))))
    return {"local": list(s.getsockname())[:2]}


def op_listen(cmd):
    s = socks.get(cmd["sock"]) or new_socket(cmd)
    if s.getsockname()[1] == 0:
        s.bind((cmd.get("addr") or any_addr(s), int(cmd["port"])))
    s.listen(int(cmd.get("backlog", 16)))
    return {"local": list(s.getsockname())[:2]}


def op_accept(cmd):
    s = get(cmd)
    s.settimeout(float(cmd.get("timeout_s", 10)))
    conn, addr = s.accept()
    conn.settimeout(None)
    socks[cmd["as"]] = conn
    return describe(conn)


def op_connect(cmd):
    s = socks.get(cmd["sock"]) or new_socket(cmd)
    if cmd.get("lport"):
        s.bind((any_addr(s), int(cmd["lport"])))
    s.settimeout(float(cmd.get("timeout_s", 10)))
    s.connect((peer_addr(s, cmd["addr"]), int(cmd["port"])))
    s.settimeout(None)
    return describe(s)


def op_send(cmd):
    s = get(cmd)
    data = base64.b64decode(cmd["data_b64"]) if "data_b64" in cmd else cmd.get("data", "").encode()
    s.sendall(data)
    return {"sent": len(data)}


def op_recv(cmd):
    s = get(cmd)
    ready, _, _ = select.select([s], [], [], float(cmd.get("timeout_s", 5)))
    if not ready:
        return {"timeout": True, "data_b64": "", "len": 0}
    data = s.recv(int(cmd.get("max", 65536)))
    return {"data_b64": base64.b64encode(data).decode(), "len": len(data), "eof": not data}


def op_shutdown(cmd):
    how = {"rd": socket.SHUT_RD, "wr": socket.SHUT_WR, "rdwr": socket.SHUT_RDWR}[cmd.get("how", "wr")]
    get(cmd).shutdown(how)
    return describe(get(cmd))


def op_close(cmd):
    s = socks.pop(cmd["sock"])
    state = tcp_state(s)
    forget(s).close()
    return {"state_before": state}


def op_connect_many(cmd):
    """Open *count* connections at once (non-blocking connects), named PREFIX0, PREFIX1, ...; wait
    until each has connected or failed, or *timeout_s*. Per connection: name, local address, when
    connect() was called and when it completed (a lost SYN or SYN-ACK costs a retransmission)."""
    prefix, n = cmd.get("prefix", "c"), int(cmd["count"])
    pending, out = {}, {}
    for i in range(n):
        name = f"{prefix}{i}"
        s = new_socket(dict(cmd, sock=name))
        s.setblocking(False)
        started = time.time()
        rc = s.connect_ex((peer_addr(s, cmd["addr"]), int(cmd["port"])))
        if rc not in (0, errno.EINPROGRESS):
            out[name] = {"name": name, "started": started, "errno": rc,
                         "error": errno.errorcode.get(rc, str(rc))}
            continue
        out[name] = {"name": name, "started": started, "local": list(s.getsockname())[:2]}
        pending[s.fileno()] = name
    deadline = time.time() + float(cmd.get("timeout_s", 30))
    while pending and time.time() < deadline:
        _, ready, _ = select.select([], list(pending), [], max(0.0, deadline - time.time()))
        now = time.time()
        for fd in ready:
            name = pending.pop(fd)
            rc = socks[name].getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            out[name]["done"] = now
            if rc:
                out[name].update(errno=rc, error=errno.errorcode.get(rc, str(rc)))
    for name in pending.values():
        out[name]["error"] = "pending"
    for name in out:
        if name in socks:
            socks[name].setblocking(True)
    return {"connections": [out[f"{prefix}{i}"] for i in range(n)],
            "failed": sorted(k for k, v in out.items() if "error" in v)}


def op_accept_many(cmd):
    """Accept *count* connections on *sock*, naming them PREFIX0, ... in the order they come;
    stop at *timeout_s*. Per connection: name, remote address, when accept() returned."""
    s, n, prefix = get(cmd), int(cmd["count"]), cmd.get("prefix", "s")
    deadline = time.time() + float(cmd.get("timeout_s", 30))
    got = []
    try:
        while len(got) < n:
            s.settimeout(max(0.001, deadline - time.time()))
            conn, addr = s.accept()
            conn.settimeout(None)
            name = f"{prefix}{len(got)}"
            socks[name] = conn
            got.append({"name": name, "remote": list(addr)[:2], "t": time.time()})
    except TimeoutError:
        pass
    finally:
        s.settimeout(None)
    return {"connections": got, "missing": n - len(got)}


def op_close_many(cmd):
    """close() each socket in *socks*, in order; when each was closed."""
    out = []
    for name in cmd["socks"]:
        s = socks.pop(name)
        state = tcp_state(s)
        forget(s).close()
        out.append({"name": name, "t": time.time(), "state_before": state})
    return {"closed": out}


def op_close_on_eof(cmd):
    """What a plain server does: read each socket in *socks* until end of stream (the peer's FIN),
    then close() it. Until every socket is closed or *timeout_s*. Per socket: when EOF was read
    and close() called, how many bytes came before it, or the error that ended it."""
    left = {socks[name].fileno(): name for name in cmd["socks"]}
    out = {name: {"name": name, "bytes": 0} for name in cmd["socks"]}
    deadline = time.time() + float(cmd.get("timeout_s", 60))
    while left and time.time() < deadline:
        ready, _, _ = select.select(list(left), [], [], max(0.0, deadline - time.time()))
        for fd in ready:
            name = left[fd]
            s = socks[name]
            try:
                data = s.recv(65536)
            except OSError as exc:
                out[name].update(errno=exc.errno, error=errno.errorcode.get(exc.errno, str(exc)))
                data = None
            if data:
                out[name]["bytes"] += len(data)
                continue
            if data is not None:
                out[name]["eof"] = time.time()
            del left[fd]
            forget(socks.pop(name)).close()
            out[name]["closed"] = time.time()
    return {"connections": [out[n] for n in cmd["socks"]], "open": sorted(left.values())}


def op_info(cmd):
    return describe(get(cmd))


def op_blast(cmd):
    """Send *bytes* bytes of *pattern* repeated (e.g. "OLD-"), phased as if the stream had begun
    *offset* bytes earlier, so the bytes tell which send they came from; the data is made here,
    not carried over the control pipe. Returns when all of it is in the socket's send buffer."""
    s, n = get(cmd), int(cmd["bytes"])
    pat = cmd.get("pattern", "DATA").encode() or b"DATA"
    size = len(pat) * max(1, (1 << 20) // len(pat))
    off = int(cmd.get("offset", 0)) % len(pat)
    chunk = memoryview((pat * (size // len(pat) + 2))[off:off + size])
    s.settimeout(float(cmd.get("timeout_s", 30)))
    sent = 0
    try:
        while sent < n:
            piece = chunk[: min(size, n - sent)]
            s.sendall(piece)
            sent += len(piece)
    finally:
        s.settimeout(None)
    return {"sent": sent}


def op_drain(cmd):
    """Read until *bytes* bytes arrived, EOF or *timeout_s*; returns how many, the first *keep*
    of them (data_b64), and how often each of *markers* occurs in all that was read."""
    s, n = get(cmd), int(cmd["bytes"])
    keep = int(cmd.get("keep", 0))
    markers = [m.encode() for m in cmd.get("markers", [])]
    tail = max([len(m) for m in markers] or [1]) - 1
    counts, carry, kept = [0] * len(markers), b"", b""
    deadline = time.time() + float(cmd.get("timeout_s", 30))
    got, eof = 0, False
    while got < n:
        ready, _, _ = select.select([s], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        data = s.recv(min(1 << 20, n - got))
        if not data:
            eof = True
            break
        got += len(data)
        if len(kept) < keep:
            kept += data[: keep - len(kept)]
        if markers:
            buf = carry + data
            for i, m in enumerate(markers):
                counts[i] += buf.count(m) - carry.count(m)
            carry = buf[-tail:] if tail else b""
    return {"len": got, "eof": eof, "timeout": got < n and not eof,
            "data_b64": base64.b64encode(kept).decode(),
            "markers": {m.decode(): c for m, c in zip(markers, counts)}}


OPS = {k[3:]: v for k, v in globals().items() if k.startswith("op_")}


def answer(obj):
    obj["t"] = time.time()
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    answer({"ok": True, "result": {"pid": os.getpid(), "ready": True}})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            cmd = json.loads(line)
            op = cmd.get("op")
            if op == "exit":
                answer({"ok": True, "result": {}})
                return
            result = OPS[op](cmd)
            answer({"ok": True, "result": result})
        except OSError as exc:
            code = exc.errno if exc.errno is not None else (errno.ETIMEDOUT if isinstance(exc, socket.timeout) else 0)
            answer({"ok": False, "errno": code, "error": errno.errorcode.get(code, type(exc).__name__),
                    "message": exc.strerror or str(exc) or type(exc).__name__})
        except Exception as exc:  # a bad command: report, keep serving
            answer({"ok": False, "errno": None, "error": type(exc).__name__, "message": str(exc)})


if __name__ == "__main__":
    main()
