"""pyroute2's pieces the lab uses, imported without running the package's ``__init__``.

pyroute2 0.9's ``__init__`` imports every one of its sockets and databases (NDB, IPDB, conntrack,
nl80211, wireguard, plan9, ...) whatever the caller asks for; a run needs IPRoute, netns, the tc
and neighbour messages and NetlinkError. Measured on this 2-core machine, medians of 5 fresh
interpreters: ``from pyroute2 import IPRoute, netns`` plus the tc plugins 0.21 s, the same
submodules with the package left bare 0.07 s - saved by every netns run. The package object is
made from its own spec (its ``__path__`` intact), so ``from pyroute2 import config`` and every
submodule import inside pyroute2 resolve as usual; only the names its ``__init__`` would have
re-exported are missing from it, which is why the lab imports from here and nowhere else. Where
pyroute2 was already imported whole (a test, a user's script), that copy is used.
"""

from __future__ import annotations

from .barepkg import bare_package

bare_package("pyroute2")

from pyroute2 import netns  # noqa: E402
from pyroute2.iproute.linux import IPRoute  # noqa: E402
from pyroute2.netlink.exceptions import NetlinkError  # noqa: E402
from pyroute2.netlink.rtnl.ndmsg import states as neighbour_states  # noqa: E402
from pyroute2.netlink.rtnl.tcmsg import plugins as tc_plugins  # noqa: E402
from pyroute2.netlink.rtnl.tcmsg import sched_netem  # noqa: E402
from pyroute2.netlink.rtnl.tcmsg.common import tick_in_usec  # noqa: E402

__all__ = ["IPRoute", "NetlinkError", "netns", "neighbour_states", "sched_netem", "tc_plugins", "tick_in_usec"]
