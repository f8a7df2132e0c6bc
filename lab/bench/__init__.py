"""How long the lab takes, and how much of that is the lab: `invoke bench [--runs N] [--backend B]`.

Three measurements, each repeated *runs* times (interleaved per backend, so drift on the machine
hits all of them alike) and summarised as median, min and max:

1. **Bring-up and tear-down** of the compose.yaml topology by each backend class, used directly
   (``backend.up(topology)`` and ``backend.down()``, timed separately; ``plan()``, which picks the
   subnets and makes sure the image exists, is not timed).
2. **The raw floor** for the same topology on this machine, made with the plainest tools:
   docker: ``docker compose -p twlab-<id> -f compose.yaml up -d`` then ``down`` (with the
   variables ``DockerBackend.plan`` chose, so the subnets are free); netns: one ``ip`` command
   per namespace, link, address, route and sysctl, then ``ip netns del``. Lab minus raw is what
   the backend itself adds.
3. **A whole lost-ack run** (``lab.runner.run_scenario``): its wall time split into *protocol
   waiting*, from the server's first FIN to its last in the server's capture (the kernel's
   retransmission backoff, which no lab can shorten), and *lab overhead*, everything else; plus
   the run's own ``timings_s``.

Everything made is named ``twlab-<6 hex>-...`` or labelled ``org.twlab.lab=<id>`` and registered
in the live-lab registry for the duration, and removed in ``finally`` with Ctrl-C (and SIGTERM)
deferred until the removal is done, so an interrupted benchmark leaves nothing behind; a killed
one (SIGKILL) is cleaned by the next run's start or ``invoke clean``.

``main`` returns every figure (samples too) as a JSON-ready dict, and writes it to *json_out*::

    python -m lab.bench --runs 5 --backend netns --json bench.json

The modules: common (the summary of samples, running and timing a command, the sweeper), updown
(measurements 1 and 2), wholerun (3), printout (the table, its explanation, the notes) and driver
(``main``: the rounds, the figures, the JSON).
"""

from __future__ import annotations

from .common import BACKEND_NAMES, SCENARIO, summarize
from .driver import main
from .updown import netns_commands

__all__ = ["main", "BACKEND_NAMES", "SCENARIO", "summarize", "netns_commands"]
