"""Two read-only questions to the Docker engine, asked over its socket: which containers and
which networks carry a label.

Why not the Docker SDK, which lab.backends.docker uses for everything else: every run asks these
first (lab.cleanup: did a killed run leave a lab behind?), netns runs included, which need nothing
else from Docker; importing the SDK and pinging the engine cost those runs 0.13-0.24 s (about 7 %
of a netns lost-ack run), these two GETs about 3 ms. Anything that changes the engine still goes
through the SDK. An engine reached other than by a local socket (DOCKER_HOST tcp:// or ssh://)
is asked through the SDK as before.

    got = labelled("org.twlab.lab")       # None: no engine answers here
    if got is not None:
        containers, networks = got        # [Named(name, labels)], one per object
"""

from __future__ import annotations

import json
import os
import socket
from functools import cache
from typing import NamedTuple
from urllib.parse import quote

__all__ = ["Named", "labelled", "SOCKET"]

SOCKET = "/var/run/docker.sock"
_TIMEOUT_S = 30


class Named(NamedTuple):
    name: str
    labels: dict


@cache
def _unix_connection() -> type:
    """http.client's connection over the engine's socket. Made on first use: http.client (and
    the email package under it) is most of this module's import, and a machine with no engine
    (a VM guest: 0.4 s under TCG) never asks."""
    import http.client

    class _UnixConnection(http.client.HTTPConnection):
        def __init__(self, path: str):
            super().__init__("localhost", timeout=_TIMEOUT_S)
            self._path = path

        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(_TIMEOUT_S)
            self.sock.connect(self._path)

    return _UnixConnection


def _socket_path() -> str | None:
    """The engine's local socket, or None where DOCKER_HOST names another kind of endpoint."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host:
        return SOCKET
    return host[len("unix://"):] if host.startswith("unix://") else None


def labelled(label: str) -> tuple[list[Named], list[Named]] | None:
    """The containers (stopped ones too) and networks whose labels match *label* ("key" or
    "key=value"); None when no engine answers on the socket. An engine that answers with an
    error raises OSError."""
    path = _socket_path()
    if path is None:
        return _through_sdk(label)
    if not os.path.exists(path):
        return None
    query = quote(json.dumps({"label": [label]}))
    try:
        ctrs = _get(path, f"/containers/json?all=1&filters={query}")
        nets = _get(path, f"/networks?filters={query}")
    except (ConnectionError, FileNotFoundError, PermissionError):
        return None                          # a socket left behind by an engine that is gone
    return ([Named(c["Names"][0].lstrip("/") if c.get("Names") else c["Id"][:12], c.get("Labels") or {})
             for c in ctrs],
            [Named(n["Name"], n.get("Labels") or {}) for n in nets])


def _get(path: str, url: str) -> list[dict]:
    conn = _unix_connection()(path)
    try:
        conn.request("GET", url)
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    if resp.status != 200:
        raise OSError(f"the Docker engine answered {resp.status} to GET {url.split('?')[0]}: "
                      f"{body[:200].decode(errors='replace')}")
    return json.loads(body)


def _through_sdk(label: str) -> tuple[list[Named], list[Named]] | None:
    from .backends.docker import client

    try:
        dc = client()
    except Exception:
        return None
    try:
        flt = {"label": label}
        return ([Named(c.name, c.labels) for c in dc.containers.list(all=True, filters=flt, ignore_removed=True)],
                [Named(n.name, n.attrs.get("Labels") or {}) for n in dc.networks.list(filters=flt)])
    finally:
        dc.close()
