"""nftables in a lab host's network namespace, from this process: libnftables, through its Python
binding (the ``nftables`` module of pip-nftables, a copy of nftables' own py/ binding), not the
``nft`` program.

Why not ``nsenter --net=NS -- nft ...``: each command was two execs. A lost-ack run gives five
commands (the fault table, the rule, and lifting it: delete, read the counter, delete it). Measured
in Debian 12's kernel under TCG (this 2-CPU machine), each took 0.45-0.65 s, 3.3 s of the run's
12 s; here about 10 ms each. The library runs the same parser and the same netlink transactions as
the program, so a rule means what it meant.

The context is made, and every command run, with the calling thread inside the namespace
(lab.nsops.inside): libnftables opens its netlink socket in whichever namespace the thread is in
when it first needs one, and the socket stays there.
"""

from __future__ import annotations

import threading

from .errors import BackendError, EnvError
from .nsops import inside

__all__ = ["Nft"]


class Nft:
    """One libnftables context in the namespace at *nspath*; ``run`` is ``nft -f -`` there."""

    def __init__(self, nspath: str) -> None:
        try:
            from nftables import Nftables
        except ImportError as exc:               # the binding: a pinned dependency (pyproject.toml)
            raise EnvError("the nftables Python module is missing; run scripts/setup") from exc
        self.nspath = nspath
        self._lock = threading.Lock()
        try:
            with inside(nspath):
                self._ctx = Nftables()
        except OSError as exc:                   # libnftables.so.1: the nftables package's library
            raise EnvError(f"libnftables cannot be loaded ({exc}); run scripts/setup") from exc

    def run(self, script: str, echo: bool = False, json: bool = False) -> str:
        """Run *script* (nft's own syntax, one command a line) as one transaction; what nft would
        print. *echo*: the added objects printed back with their handles (``--echo --handle``);
        *json*: the output as JSON (``--json``). BackendError with nft's last error line."""
        with self._lock, inside(self.nspath):
            self._ctx.set_echo_output(echo)
            self._ctx.set_handle_output(echo)
            self._ctx.set_json_output(json)
            rc, out, err = self._ctx.cmd(script)
        if rc != 0:
            tail = [ln for ln in err.strip().splitlines() if ln.strip()]
            first = script.strip().splitlines()[0] if script.strip() else ""
            raise BackendError(f"nft {first[:60]!r} failed: {tail[0] if tail else f'exit {rc}'}")
        return out
