"""Shared test setup: markers, the `backend` fixture, and the guards that the lab leaves this
machine exactly as it found it.

Unit tests (tests/unit) need no root, no network and no Docker. Integration tests
(tests/integration, marked ``integration``) bring up real lab hosts: they need root, and the
docker half of the `backend` fixture needs a Docker daemon.

Two guards run around the tests:

* per integration test: ``lab.cleanup.find()`` is empty afterwards (no namespace, container or
  Docker network of any lab is left), and lab.cleanup's registry holds no record of a dead run;
* per session: the host's own network namespace is unchanged (nft ruleset, qdiscs, interface names,
  IPv4 and IPv6 routes of every table, every file under /proc/sys/net/ipv4 and /proc/sys/net/ipv6,
  ``ip netns list``), the test process's thread is back in it, and no container or network
  labelled ``org.twlab.lab`` exists at the end. (An IPv6 route's "expires NNNsec", which counts
  down by itself on a machine that takes router advertisements, is left out of the comparison.)

Other people's labs on this machine are not ours to judge: a lab the registry - or the lab's own
owner marks (lab.owner) - say another live process is using (a concurrent ``invoke run``) or an
``invoke up`` lab is left out, with its
namespaces, Docker bridges and veths (and the routes, qdiscs and sysctls hanging off them); so is
a lab object that is *gone* at the end. Everything else counts: labs of this process, of dead
runs, unregistered ones (by-hand compose labs), anything new, anything else changed or gone.
The session starts as every run does, by removing the labs of killed runs (clean_dead).
Both guards poll for a while before they fail: Docker removes veths a moment after its API call
returns, and a concurrent run's lab comes and goes in seconds. A real leak never goes away, so
it still fails - after the grace period.
"""

from __future__ import annotations

import errno
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import dpkt  # noqa: F401 - whole, before a lab module leaves it bare (lab/packetlib.py): tests build every kind
import pytest

REPO = Path(__file__).resolve().parent.parent
LABEL = "org.twlab.lab"
SETTLE_S = 30.0          # how long the guards wait for the machine to settle before failing


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs root and brings up real lab hosts")
    config.addinivalue_line("markers", "docker: needs a Docker daemon (skipped when none answers)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="integration test: needs root (network namespaces, nft, "
                                   "tcpdump, Docker); run ./twlab test as root")
    for item in items:
        if item.get_closest_marker("integration"):
            item.add_marker(skip)


# -- Docker ------------------------------------------------------------------------------------

_docker_state: dict[str, object] = {}


def docker_why_not() -> str | None:
    """None when a Docker daemon answers, else why not (asked once per session)."""
    if "why" not in _docker_state:
        try:
            from lab.backends.docker import client

            client().close()
            _docker_state["why"] = None
        except Exception as exc:   # EnvError, or the docker package itself failing
            _docker_state["why"] = f"{exc.__class__.__name__}: {exc}"
    return _docker_state["why"]  # type: ignore[return-value]


@pytest.fixture(params=["netns", "docker"])
def backend(request: pytest.FixtureRequest) -> str:
    """The name of a lab backend; the docker one is skipped only when no daemon answers."""
    if request.param == "docker":
        why = docker_why_not()
        if why is not None:
            pytest.skip(f"docker backend: no Docker daemon answers ({why})")
    return request.param


@pytest.fixture
def need_docker() -> None:
    why = docker_why_not()
    if why is not None:
        pytest.skip(f"no Docker daemon answers ({why})")


def _lab_objects() -> list[tuple[str, str]]:
    """(lab id, "what name") for everything lab.cleanup.find() reports: namespaces by their
    name, containers and networks by their label (by-hand compose labs are named otherwise)."""
    from docker.errors import NotFound

    from lab.cleanup import find

    for _ in range(10):
        try:
            left = find()
            break
        except NotFound:      # a container went while find() inspected it (lab/cleanup.py races)
            time.sleep(0.2)
    else:
        left = find()
    out = [(name.split("-")[1], f"namespace {name}") for name in left.namespaces]
    if (left.containers or left.networks) and docker_why_not() is None:
        from lab.backends.docker import client

        dc = client()
        try:
            flt = {"label": LABEL}
            out += [(c.labels.get(LABEL, "?"), f"container {c.name}")
                    for c in dc.containers.list(all=True, filters=flt, ignore_removed=True)]
            out += [(n.attrs.get("Labels", {}).get(LABEL, "?"), f"docker network {n.name}")
                    for n in dc.networks.list(filters=flt)]
        finally:
            dc.close()
    return sorted(out)


def _registry() -> dict[str, dict]:
    """lab.cleanup's registry of labs in use: lab id -> {"pid", "persistent", ...}."""
    from lab.cleanup import RUN_DIR

    out = {}
    for path in sorted(RUN_DIR.glob("*.json")) if RUN_DIR.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and "pid" in rec and "lab_id" in rec:
            out[rec["lab_id"]] = rec
    return out


def _marked_others() -> set[str]:
    """Labs whose own objects say another live process owns them, or that `invoke up` made them
    (lab.owner): someone else's, whichever registry directory they were registered in."""
    from lab import owner
    from lab.cleanup import marks

    out = set()
    for lab_id, ms in marks().items():
        if any(m.up or (owner.alive(m.owner) and not m.owner.startswith(f"{os.getpid()}."))
               for m in ms if m.owner):
            out.add(lab_id)
    return out


def _someone_elses(lab_id: str, registry: dict[str, dict], marked: set[str] = frozenset()) -> bool:
    """A lab that is in use by another process (a concurrent `invoke run`), or an `invoke up`
    lab: not this test session's to judge. Unregistered labs and labs of dead runs are."""
    if lab_id in marked:
        return True
    rec = registry.get(lab_id)
    if rec is None:
        return False
    if rec.get("persistent"):
        return True
    return rec.get("pid") != os.getpid() and os.path.exists(f"/proc/{rec.get('pid')}")


def leftovers() -> list[str]:
    """What lab.cleanup.find() reports, less the labs other processes are using right now, plus
    registry records whose run is gone."""
    registry, marked = _registry(), _marked_others()
    out = [what for lab_id, what in _lab_objects() if not _someone_elses(lab_id, registry, marked)]
    out += [f"registry record {lab_id} (pid {rec.get('pid')} is gone)" for lab_id, rec in registry.items()
            if not rec.get("persistent") and not os.path.exists(f"/proc/{rec.get('pid')}")]
    return out


# -- the host's own network namespace ----------------------------------------------------------

def _run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return f"<{' '.join(argv)} failed with {done.returncode}: {done.stderr.strip()}>"
    return done.stdout


def _lines(text: str) -> list[str]:
    return sorted(line.rstrip() for line in text.splitlines() if line.strip())


def _proc_sys(root: str = "/proc/sys/net/ipv4") -> dict[str, str]:
    """Every file under *root* and its value (or the errno reading it gave)."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            try:
                with open(path) as f:
                    out[path] = f.read()
            except OSError as exc:    # write-only (route/flush) or gone while walking
                out[path] = f"<{errno.errorcode.get(exc.errno or 0, exc.errno)}>"
    return out


_EXPIRES = re.compile(r" expires -?\d+sec")


def _dev(line: str) -> str | None:
    words = line.split()
    return words[words.index("dev") + 1] if "dev" in words[:-1] else None


def _bridge(line: str) -> str | None:
    m = re.search(r'"(br-[0-9a-f]{12})"', line)
    return m.group(1) if m else None


def host_snapshot() -> dict[str, dict[str, tuple[str | None, str]]]:
    """The host namespace as items: section -> {item: (interface or namespace it belongs to,
    value)}, so items of other people's labs can be told apart (see snapshot_diff)."""
    links: dict[str, tuple[str | None, str]] = {}
    for line in _run(["ip", "-o", "link", "show"]).splitlines():
        fields = line.split(": ", 2)
        if len(fields) >= 2:
            name = fields[1].split("@")[0]
            words = line.split()
            master = words[words.index("master") + 1] if "master" in words[:-1] else ""
            links[name] = (name, master)
    sysctls: dict[str, dict[str, tuple[str | None, str]]] = {}
    for family in ("ipv4", "ipv6"):
        root = f"/proc/sys/net/{family}"
        sysctls[root] = {}
        for path, value in _proc_sys(root).items():
            parts = path.split("/")          # /proc/sys/net/ipv6/conf/<if>/x, .../neigh/<if>/x
            owner = parts[6] if len(parts) > 7 and parts[5] in ("conf", "neigh") else None
            sysctls[root][path] = (owner, value)
    return {
        # stateless (-s): counters left out; a Docker lab's rules name its bridge, their owner
        "nft list ruleset": {ln: (_bridge(ln), "") for ln in _lines(_run(["nft", "-s", "list", "ruleset"]))},
        "tc qdisc show": {ln: (_dev(ln), "") for ln in _lines(_run(["tc", "qdisc", "show"]))},
        "interfaces (ip -o link show)": links,
        # a route's "linkdown" follows its device's carrier (docker0 when containers come and
        # go on Docker's default bridge): not a change of the host's configuration
        "ip -4 route show table all": {ln.replace(" linkdown", ""): (_dev(ln), "") for ln in
                                       _lines(_run(["ip", "-4", "route", "show", "table", "all"]))},
        # the kernel's own IPv6 link-local and multicast routes on Docker's default bridge appear
        # when its first container ever attaches (docker0's first carrier: addrconf), Docker's
        # doing, not the lab's (seen in a clean-clone CI whose docker0 had never been up before)
        "ip -6 route show table all": {_EXPIRES.sub("", ln): (_dev(ln), "") for ln in
                                       _lines(_run(["ip", "-6", "route", "show", "table", "all"]))
                                       if not _docker0_link_local(ln)},
        "/proc/sys/net/ipv4": sysctls["/proc/sys/net/ipv4"],
        "/proc/sys/net/ipv6": sysctls["/proc/sys/net/ipv6"],
        "ip netns list": {ln.split()[0]: (ln.split()[0], "") for ln in _lines(_run(["ip", "netns", "list"]))},
    }


def _docker0_link_local(route: str) -> bool:
    """A kernel route of docker0's IPv6 link-local address or multicast (see host_snapshot)."""
    return (_dev(route) == "docker0" and "proto kernel" in route
            and (route.split()[0] == "fe80::/64" or route.startswith(("local fe80:", "multicast ff00::/8"))))


def others_labs() -> set[str]:
    """Interface and namespace names of labs other processes are using right now: their
    namespaces, and the bridges of their Docker networks with the veths attached to them."""
    registry = _registry()
    ids = {lab_id for lab_id in registry if _someone_elses(lab_id, registry)} | _marked_others()
    if not ids:
        return set()
    from lab.backends.netns import lab_namespaces

    names = {ns for ns in lab_namespaces() if ns.split("-")[1] in ids}
    if docker_why_not() is None:
        from lab.backends.docker import client

        dc = client()
        try:
            for net in dc.networks.list(filters={"label": LABEL}):
                if net.attrs.get("Labels", {}).get(LABEL) in ids:
                    names.add(net.attrs.get("Options", {}).get("com.docker.network.bridge.name")
                              or f"br-{net.id[:12]}")
        finally:
            dc.close()
        out = _run(["ip", "-o", "link", "show"])
        for line in out.splitlines():
            words = line.split()
            if "master" in words[:-1] and words[words.index("master") + 1] in names:
                names.add(line.split(": ", 2)[1].split("@")[0])
    return names


def snapshot_diff(before: dict, after: dict, others: set[str] = frozenset()) -> list[str]:
    """Readable differences, one line each. Left out: items of labs other processes are using
    (*others*), and lab objects that are gone (a lab's namespace, a Docker lab's bridge or veth,
    and what hung off them): removing a lab is what it should come to. Anything new, and
    anything else changed or gone, counts."""
    out = []
    for section in before:
        a, b = before[section], after[section]
        for item in sorted(set(a) | set(b)):
            if a.get(item) == b.get(item):
                continue
            owner = (a.get(item) or b.get(item))[0]
            if owner in others:
                continue
            if item not in b and owner and owner.startswith(("twlab-", "br-", "veth")):
                continue
            if item not in a:
                out.append(f"{section}: new {item!r}")
            elif item not in b:
                out.append(f"{section}: gone {item!r}")
            else:
                out.append(f"{section}: {item}: {a[item][1]!r} -> {b[item][1]!r}")
    return out


def _current_netns() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def wait_until(predicate, timeout_s: float = SETTLE_S, interval_s: float = 0.25):
    """Poll *predicate* until it returns something true, or *timeout_s* passes; return its
    last value (a bound on waiting, not a timing assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(interval_s)


@pytest.fixture(scope="session", autouse=True)
def host_unchanged():
    """The session leaves the host's own network namespace exactly as it found it."""
    ns = _current_netns()
    if os.geteuid() == 0:
        from lab.cleanup import clean_dead

        clean_dead()        # what every run does first: the labs of killed runs go
    # someone else's lab may be coming or going: snapshot once it is gone (a stale leftover
    # stays, and then the checks below name it)
    wait_until(lambda: not leftovers())
    others = others_labs()
    before = host_snapshot()
    others |= others_labs()
    yield
    problems = []
    if _current_netns() != ns:
        problems.append("the test process's main thread ended in another network namespace than "
                        "it started in (a lab.netns.inside() that never returned?)")
    diff: list[str] = []

    def same() -> bool:
        now = others_labs()
        after = host_snapshot()
        diff[:] = snapshot_diff(before, after, others | now | others_labs())
        return not diff

    wait_until(same)
    if diff:
        problems.append("the host's own network namespace changed during the session:\n    "
                        + "\n    ".join(diff))
    left: list[str] = []

    def nothing_left() -> bool:
        left[:] = leftovers()
        return not left

    wait_until(nothing_left)
    if left:
        problems.append(f"lab objects left after the session (`./twlab clean` removes them): {left}")
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="session", autouse=True)
def signals_as_a_terminal_gives_them():
    """The suite runs with Ctrl-C, SIGTERM and SIGHUP at their defaults, however it was started:
    a shell's background job (`cmd &` without job control) starts with SIGINT ignored, which
    the lab rightly keeps (lab.interrupts; its own unit test checks that), and which every process
    a test starts would inherit - so a test's Ctrl-C would do nothing. (A clean-clone CI started
    as `(setsid bash -c '...' &)` failed three interrupt tests that way.)"""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield


@pytest.fixture(autouse=True)
def signal_handlers_restored():
    """Each test gets the signal handlers the one before it started with: a stopped task run
    in-process ignores SIGINT, SIGTERM and SIGHUP from then on (lab.interrupts.ignore_while_exiting,
    right for a process about to exit, not for the test session)."""
    kept = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, h in kept.items():
        signal.signal(s, h if h is not None else signal.SIG_DFL)


@pytest.fixture(autouse=True)
def no_lab_leftovers(request: pytest.FixtureRequest):
    """After each integration test, lab.cleanup.find() is empty."""
    if request.node.get_closest_marker("integration") is None or os.geteuid() != 0:
        yield
        return
    before = leftovers()
    yield
    left: list[str] = []

    def nothing_left() -> bool:
        left[:] = leftovers()
        return not left

    wait_until(nothing_left)
    stale = [x for x in left if x in before]
    assert not left, (f"lab leftovers after the test: {left}"
                      + (f" (already there before it: {stale}; `./twlab clean` removes them)"
                         if stale else ""))


@pytest.fixture
def lab_leftovers():
    """The per-test guard's view, for a test to assert on at a point of its choosing: a
    callable returning what lab.cleanup.find() reports (less other processes' live labs)."""
    return leftovers
