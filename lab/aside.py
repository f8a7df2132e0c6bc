"""What a run needs only once it is over - the capture reader (lab.pcap, with dpkt) and the
terminal view (lab.report, with rich) - imported in a thread of its own while the run waits on the
protocol, so that reading the captures and drawing the result do not wait for it: together about
45-55 ms of a lost-ack run's 0.5 s beyond waiting here (python -X importtime).

A lab calls ``load_aside()`` in the first of its waits that lasts 50 ms (lab.core.Lab.wait_for):
the protocol's own waiting, a timer or a retransmission, while the lab's main thread sleeps. Started
with the lab instead, the imports slowed the scenario's first steps (the GIL): the connection and
close before lost-ack's dropped ACK took 60 ms, not 45. That is after the lab's one fork (its
sampler process): a fork while another thread imports could leave a module's import lock held in
the child. In a process that froze what it
had loaded (gc.freeze: a single `invoke run`, which then exits), what this loads is frozen with it:
a full collection otherwise walks every object imported - 18-19 ms, once in every lost-ack run
here - and finds no garbage among them.
"""

from __future__ import annotations

import gc
import importlib
import os
import sys
import threading

__all__ = ["AFTER_THE_RUN", "IN_A_VM", "load_aside"]

AFTER_THE_RUN = ("lab.pcap", "lab.report", "rich.rule")
# inside a VM guest no terminal view is drawn (this machine draws it from report.json), and under
# TCG rich's import is about 0.8 s of the emulated CPU the run's own processes share
IN_A_VM = ("lab.pcap",)


def load_aside(names: tuple[str, ...] | None = None) -> threading.Thread | None:
    """Import *names* (what the run needs once it is over) in a daemon thread (None when all are
    loaded already)."""
    if names is None:
        names = IN_A_VM if os.environ.get("TWLAB_IN_VM") else AFTER_THE_RUN
    missing = [n for n in names if n not in sys.modules]
    if not missing:
        return None
    thread = threading.Thread(target=_load, args=(missing,), name="twlab-load-aside", daemon=True)
    thread.start()
    return thread


def _load(names: list[str]) -> None:
    for name in names:
        importlib.import_module(name)
    if gc.get_freeze_count():
        gc.freeze()
