"""The Lab: a topology brought up on a backend, with captures, faults and observation attached.

    with Lab(backend="netns", artifacts=Path("out")) as lab:
        server, client = lab.peer("server"), lab.peer("client")
        ...

The lab is dual-stack (lab.topology); ``family`` (4 or 6) is the one its run's traffic uses: each
host's ``address`` is in it, and the peers, faults and observation follow it (lab.family).

Everything a lab makes is named ``twlab-<lab id>-...`` or labelled ``org.twlab.lab=<lab id>``; closing
removes it (closing twice is harmless), and ``lab.cleanup.clean`` finds what a killed run left.
"""

from __future__ import annotations

import os
import platform
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import netem
from .artifacts import check_dir, drop_empty, make_dir
from .aside import load_aside
from .backends import choose
from .backends.links import kernel_has_ipv6, settle
from .capture import Capture, capture_points
from .errors import EnvError, NetemMissing, UsageError, WaitTimeout
from .family import check_family, check_mapped, require_ipv6, require_ipv6_in
from .faults import Faults
from .gvisor import allowed, start_sandboxes
from .health import Health, PauseWatch, ns_identity
from .lab_links import Links
from .netem import NetemProbe
from .observe import Sampler, SocketInfo, SocketView, counters_delta, read_counters
from .peer import Peer
from .sampling import SamplerProcess
from .sysctls import REPORTED_SYSCTLS, SYSCTL_RANGES, SysctlSetting, check_keys, in_force, parse_sysctl
from .sysctls import apply as apply_sysctl
from .teardown import TearDown
from .timeline import Timeline
from .tools import require_tools
from .topology import DEFAULT_COMPOSE, Topology, load
from .waiting import NOT_SHOWN, WaitView
from .watch import Watch

if TYPE_CHECKING:
    from .backends.base import Backend, Host
    from .shaping import Shaping

# SysctlSetting, parse_sysctl, SYSCTL_RANGES and REPORTED_SYSCTLS live in lab.sysctls; re-exported here
__all__ = ["Lab", "SysctlSetting", "parse_sysctl", "SYSCTL_RANGES", "REPORTED_SYSCTLS"]


# a wait that lasts this long is the protocol's own (a timer, a retransmission), not a step's
# answer: the modules a run needs at its end load meanwhile (lab.aside), not beside its first steps
ASIDE_AFTER_S = 0.05
QUICK_POLL_S = 0.002         # wait_for's poll within its first ASIDE_AFTER_S
ENDS = ("client", "server")  # the hosts every scenario drives, by these names
CLOSE_MARGIN_S = 0.02    # how long before and after a wait's due window the sampler polls closely

ROUTER_SNAPLEN = 256     # bytes of each packet the router's capture keeps (headers and options)
END_SNAPLEN = 2048       # the ends': headers and a full-sized segment's payload (a GSO super-packet
                         # is cut there; lab.packets takes its length from the IP header)


class Lab(Links, TearDown, Watch):
    def __init__(self, backend: str = "auto", artifacts: Path | str = "artifacts/run",
                 sysctls: list[SysctlSetting] = (), compose: Path | str = DEFAULT_COMPOSE,
                 port: int = 5000, progress: Callable[[str], None] = lambda s: None,
                 capture: bool = True, persistent: bool = False, shaping: list[Shaping] = (),
                 needs_netem: str | None = None, premise: Callable[[dict[str, dict[str, str]]], None] | None = None,
                 family: int = 4, scenario: str | None = None, waiting: WaitView | None = None,
                 stacks: dict[str, str] | None = None, mapped: bool = False) -> None:
        self.family = check_family(family)    # the run's address family: 4 or 6
        self.stacks = dict(stacks or {})      # host -> "linux" | "gvisor" (lab.gvisor); default linux
        self.sandboxes: dict = {}             # host -> lab.gvisor.Sandbox, for its gVisor hosts
        self.mapped = check_mapped(mapped, self.family)   # the client's sockets v4-mapped (Host.mapped)
        self.scenario = scenario or "the lab"  # what a refusal names
        self.backend_name, self.artifacts = backend, Path(artifacts)
        self.requested_sysctls, self.compose, self.port = list(sysctls), Path(compose), port
        self.progress, self.capture_enabled = progress, capture
        self.waiting = waiting                # shows long waits (wait_for) to the people watching
        self.persistent = persistent          # an `invoke up` lab: outlives this process
        self.shaping = list(shaping)
        self.needs_netem = needs_netem        # the scenario that cannot run without netem, if any
        self.premise = premise                # given the sysctls in force, raises when the run cannot
                                              # show its scenario (lab.errors.CannotShow)
        self._made_dirs: list[Path] = []      # the artifacts directories start() created
        self.options: dict = {}               # run options a scenario may read (e.g. strict_rfc)
        self.facts: dict = {}                 # what a scenario recorded as it went: judged even
                                              # when a later step times out
        self.lab_id = secrets.token_hex(3)
        self.timeline = Timeline()
        self.backend: Backend | None = None
        self.topology: Topology | None = None
        self.hosts: dict[str, Host] = {}
        self.views: dict[str, SocketView] = {}
        self.captures: dict[str, Capture] = {}
        self.capture_points: dict[str, dict] = {}   # capture name -> host, interface, side (lab.capture)
        self.peers: dict[str, Peer] = {}
        self.faults: Faults | None = None
        self.sampler: SamplerProcess | None = None
        self.sysctls: dict[str, dict[str, str]] = {}
        self.counters_before: dict[str, dict[str, int]] = {}
        self.counters_after: dict[str, dict[str, int]] = {}
        self.netem = NetemProbe(False, "not probed")
        self.t0 = 0.0
        self.timings: dict[str, float] = {}
        self.health = Health()                # what broke in the lab's own observation
        self._ns_ids: dict[str, tuple[int, int] | None] = {}
        self._pauses: PauseWatch | None = None
        self._closed = False

    # -- bring-up -------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        try:
            self.start()
        except BaseException as exc:
            try:
                self._close_surely(failing=type(exc))
            finally:
                drop_empty(self._made_dirs)      # a refused run leaves no empty directory
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close_surely(failing=exc_type)
        if exc_type is not None:
            drop_empty(self._made_dirs)

    def discard_artifacts(self) -> None:
        """Remove what this lab wrote (its pcaps) and the directories it made: for a run whose
        results cannot be kept (report.json could not be written), so no stub is left behind."""
        for path in [c.path for c in self.captures.values()] + [self.artifacts / "faults.pcap"]:
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
        drop_empty(self._made_dirs)

    def start(self) -> None:
        """Bring the lab up and start watching it: the backend, the hosts, their sysctls, the
        shaping, the captures, the faults and the sampler - refused, with nothing left, where the
        kernel (netem) or the sysctls (the scenario's premise) cannot show the scenario."""
        t_start = time.monotonic()
        self._claim()
        topo = self._validated()
        if hasattr(self.backend, "plan"):
            topo = load(self.compose, self.backend.plan(topo))       # this instance's subnets
        self.topology = topo
        self._made_dirs = make_dir(self.artifacts)                   # removed again if the run fails
        t = time.monotonic()
        self.hosts = self.backend.up(topo)
        self.sandboxes = start_sandboxes(self, self._gvisor_hosts)   # gVisor hosts' sockets: lab.gvisor
        self.timings["bring_up_s"] = time.monotonic() - t
        self.timings["ipv6_settle_s"] = self.backend.ipv6_settle_s     # within bring_up_s
        for host in self.hosts.values():
            host.family, host.mapped = self.family, self.mapped and host.name == "client"
        self._ns_ids = {name: ns_identity(h.nspath) for name, h in self.hosts.items()}
        # the addresses on a line of their own: three IPv6 ones fit in 100 columns, and a terminal
        # would cut one at its edge (lab.report does the same)
        self.progress(f"lab {self.lab_id} up on {self.backend.name} in {self.timings['bring_up_s']:.2f} s, "
                      f"IPv{self.family}{' (client v4-mapped)' if self.mapped else ''}:")
        self.progress("  " + ", ".join(f"{h.name} {h.address}" for h in self.hosts.values()))
        self._settle()
        self._observe()
        self.t0 = time.time()
        self.timings["start_s"] = time.monotonic() - t_start

    def _claim(self) -> None:
        """The backend, and this lab's name in the registry - after the labs of killed runs go."""
        from . import cleanup

        cls, why = choose(self.backend_name)
        require_tools(cls.name)                     # all that are missing, in one line
        self._gvisor_hosts = allowed(self, ENDS, cls.name)   # --stack: refused here where it cannot be
        self.progress(why)
        self.backend = cls(self.lab_id, self.progress)
        try:
            gone = cleanup.clean_dead()             # what killed runs left behind
        except Exception as exc:                    # theirs, not ours: say so and go on
            self.progress(f"could not remove leftovers of killed runs ({exc}); `invoke clean` will")
        else:
            if gone:
                self.progress(f"removed leftovers of killed runs: {', '.join(gone.lines())}")
        self.backend.persistent = self.persistent
        cleanup.register(self.lab_id, self.backend.name, persistent=self.persistent)

    def _settle(self) -> None:
        """The sysctls asked for, those in force read back, netem probed; the scenario refused
        here, before anything is captured, when netem or the sysctls rule it out; the shaping."""
        for s in self.requested_sysctls:
            apply_sysctl(self.hosts[s.host].nspath, s)
        if self.family == 6:
            # e.g. disable_ipv6 set by --sysctl; a gVisor host's addresses are gVisor's (lab.gvisor)
            linux = {n: h for n, h in self.hosts.items() if n not in self.sandboxes}
            require_ipv6_in(linux, self.scenario)
            self.timings["ipv6_settle_s"] += settle(linux, link_local=True)     # NDP's link-locals
        for name, host in self.hosts.items():
            self.sysctls[name] = in_force(host.nspath, list(REPORTED_SYSCTLS) + list(host.spec.sysctls)
                                          + [s.key for s in self.requested_sysctls if s.host == name])
        router = self.topology.router
        if router is not None:
            self.netem = netem.probe(self.hosts[router.name])
        if self.needs_netem and not self.netem.available:
            raise NetemMissing(self.needs_netem, self.netem.reason)
        if self.premise is not None:
            self.premise(self.sysctls)
        if self.shaping:
            if not self.netem.available:
                raise EnvError(f"link shaping was asked for, but {self.netem.reason}; run without --shape "
                               "or on a kernel with sch_netem")
            self._shape(self.shaping)

    def _observe(self) -> None:
        """Socket views and counters of every host, a capture in each, the router's fault layer,
        and the sampler of the ends' sockets (the router holds none of the lab's)."""
        for name, host in self.hosts.items():
            self.views[name] = SocketView(host)
            self.counters_before[name] = read_counters(host.nspath)
        router = self.topology.router
        self._launch_peers()                            # they start while the captures do
        if self.capture_enabled:
            members = lambda net: [h.name for h in self.topology.members(net)]
            for host in self.hosts.values():
                # one capture per interface (lab.capture.capture_points): the router's two, named
                # by side; a snaplen keeps libpcap's ring frames small, the router's headers only
                for name, point in capture_points(host, members).items():
                    self.capture_points[name] = point
                    snaplen = ROUTER_SNAPLEN if host.spec.forwards else END_SNAPLEN
                    self.captures[name] = Capture(host.nspath, point["interface"], self.artifacts / point["file"],
                                                  snaplen=snaplen).launch()
            if router is not None:                      # its NFLOG capture launched with the rest
                self.faults = Faults(self.hosts[router.name], self.timeline,
                                     self.artifacts / "faults.pcap").start(wait=False)
            for cap in self.all_captures():             # all launched, then each waited for
                cap.ready()
        ends = {n: v for n, v in self.views.items() if not self.hosts[n].spec.forwards}
        self.sampler = SamplerProcess(Sampler(ends or self.views, self.port, self.timeline),
                                      watch=self.watch).start()
        self._pauses = PauseWatch().install()

    def _launch_peers(self) -> None:
        """Each end's main peer launched now, its hello read when a step first asks for it
        (peer()): it starts while the captures do, not between a scenario's first steps. Not in
        a gVisor host (started there as before, on demand: runsc's exec is heavier)."""
        for name, host in self.hosts.items():
            if not host.spec.forwards and name not in self.sandboxes and name not in self.peers:
                self.peers[name] = Peer(host, self.timeline, wait=False)

    def all_captures(self) -> list[Capture]:
        """Every running capture: one per interface, and the fault log's."""
        fcap = self.faults.capture if self.faults is not None else None
        return list(self.captures.values()) + ([fcap] if fcap is not None else [])

    def _validated(self) -> Topology:
        """The topology, and everything asked of it, checked before anything is made: the hosts
        the scenarios drive, the hosts named by --sysctl and --shape, the sysctl keys (against
        this kernel), the artifacts directory."""
        topo = load(self.compose)
        missing = [name for name in ENDS if name not in topo.hosts]
        if missing:
            raise UsageError(f"{self.compose}: no service {' or '.join(map(repr, missing))}; the scenarios "
                             f"drive hosts named {' and '.join(ENDS)}, with a router between them")
        for s in self.requested_sysctls:
            topo.host(s.host)
        for sh in self.shaping:
            topo.host(sh.src), topo.host(sh.dst)
        check_keys(self.requested_sysctls)
        if self.family == 6:
            require_ipv6(self.scenario, kernel_has_ipv6(), topo.without_ipv6())
        check_dir(self.artifacts)
        return topo

    # -- what scenarios use -----------------------------------------------------------------
    def host(self, name: str) -> Host:
        if name not in self.hosts:
            raise UsageError(f"unknown host {name!r}: this lab has {', '.join(self.hosts)}")
        return self.hosts[name]

    def peer(self, name: str, process: str = "main") -> Peer:
        """The peer program running in host *name*; another *process* name starts another
        program there (a restarted server is a new process)."""
        key = name if process == "main" else f"{name}/{process}"
        if key not in self.peers:
            self.peers[key] = Peer(self.host(name), self.timeline)
        return self.peers[key].ready()       # one launched with the lab (_launch_peers) says hello now

    def stop_peer(self, name: str, process: str = "main") -> None:
        """End that program, as a process exit does: the kernel closes its sockets."""
        key = name if process == "main" else f"{name}/{process}"
        peer = self.peers.get(key)
        if peer is not None:
            peer.stop()
            self.note(name, f"peer process {process} exited")

    def sockets(self, host: str, states: set[str] | None = None) -> list[SocketInfo]:
        return self.views[host].sockets(port=self.port, states=states)

    def sampled(self) -> None:
        """Return once the sampler has taken a whole dump after this call: the sockets that exist
        now are followed from here on (e.g. a connection just accepted)."""
        why = self.sampler.sync() if self.sampler is not None else None
        if why is not None:
            raise EnvError(why)

    def sample_closely(self, start: float, until: float) -> None:
        """Have the sampler poll every 0.5 ms from *start* to *until* (time.time()): around an
        edge a check will bound from samples (a state a close is about to cause, a timer due)."""
        if self.sampler is not None:
            self.sampler.closely(start, until)

    def wait_for(self, what: str, predicate: Callable[[], object], timeout_s: float,
                 interval_s: float = 0.01, due: tuple[float, float] | None = None,
                 closely: bool = False) -> object:
        """Poll *predicate* until it returns something true; raise LabError after *timeout_s*.
        *due* (the earliest and latest time.time() the event should come) changes none of that:
        it tells the people watching when to expect it (lab.waiting: a countdown, or a line
        every 10 s when piped); a wait without it is shown once it has lasted 5 s. *closely*
        (with *due*): the sampler polls closely through the due window (sample_closely) - for a
        window of a second or two, where a check bounds the moment from samples."""
        deadline = time.monotonic() + timeout_s
        if due is not None and closely:
            self.sample_closely(due[0] - CLOSE_MARGIN_S, due[1] + CLOSE_MARGIN_S)
        shown = self.waiting.wait(what, timeout_s, due) if self.waiting is not None else NOT_SHOWN
        came: bool | None = None           # None: stopped by something else (an interrupt)
        quick, loaded = time.monotonic() + ASIDE_AFTER_S, False
        try:
            while True:
                value = predicate()
                if value:
                    came = True
                    return value
                now = time.monotonic()
                if now > deadline:
                    came = False
                    raise WaitTimeout(f"timed out after {timeout_s:g} s waiting for {what}")
                if now > quick and not loaded:
                    load_aside()             # a protocol's wait: the imports its end needs, now
                    loaded = True
                shown.tick()
                # a step's answer comes within milliseconds: polled every 2 ms at first, then at
                # *interval_s* (a protocol's timer: no sooner noticed for polling more)
                time.sleep(interval_s if now > quick else min(interval_s, QUICK_POLL_S))
        finally:
            shown.close(came)

    def note(self, host: str, text: str, **data) -> None:
        self.timeline.add(time.time(), host, "note", text, **data)

    def counters_delta(self, host: str) -> dict[str, int]:
        return counters_delta(self.counters_before.get(host, {}), self.counters_after.get(host, {}))

    def describe(self) -> dict:
        return {
            "lab_id": self.lab_id,
            "backend": self.backend.name if self.backend else None,
            "kernel": platform.release(),
            "family": self.family,
            "mapped_client": self.mapped,
            "stacks": {n: h.stack for n, h in self.hosts.items()},
            "hosts": {n: {"addresses": {k: str(v) for k, v in h.addrs().items()},   # the run's family's
                          "addresses4": {k: str(v) for k, v in h.addresses.items()},
                          "addresses6": {k: str(v) for k, v in h.addresses6.items()},
                          "sysctls": self.sysctls.get(n, {})} for n, h in self.hosts.items()},
            "netem": {"available": self.netem.available, "reason": self.netem.reason},
            "shaping": [str(sh) for sh in self.shaping],
            "capture_points": self.capture_points,
            "compose": str(self.compose),
            "pid": os.getpid(),
        }
