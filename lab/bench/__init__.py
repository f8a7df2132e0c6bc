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
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from rich.console import Console
from rich.table import Table

from . import cleanup
from .artifacts import write_text
from .backends.base import PREFIX
from .errors import BackendError, EnvError, UsageError
from .topology import DEFAULT_COMPOSE, Topology, load

__all__ = ["main", "BACKEND_NAMES", "SCENARIO", "summarize", "netns_commands"]

BACKEND_NAMES = ("netns", "docker")
SCENARIO = "lost-ack"
TIMINGS = ("bring_up_s", "start_s", "scenario_s", "tear_down_s")   # report["timings_s"] keys
_CMD_TIMEOUT_S = 120

Stats = dict[str, Any]          # {"median", "min", "max", "n", "samples"}


# -- small helpers ----------------------------------------------------------------------------

def summarize(samples: Sequence[float | None]) -> Stats:
    """Median, min and max of the samples that exist (None = not measured in that run)."""
    xs = [float(x) for x in samples if x is not None]
    return {
        "median": round(statistics.median(xs), 4) if xs else None,
        "min": round(min(xs), 4) if xs else None,
        "max": round(max(xs), 4) if xs else None,
        "n": len(xs),
        "samples": [None if x is None else round(float(x), 4) for x in samples],
    }


@contextlib.contextmanager
def _deferred_interrupts() -> Iterator[None]:
    """Hold Ctrl-C / SIGTERM / SIGHUP until the block (a tear-down) is done, then raise
    KeyboardInterrupt, so a second Ctrl-C cannot cut a removal in half."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, lambda signum, frame: pending.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if pending:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(pending[0]).name}")


def _run(argv: list[str], env: dict[str, str] | None = None, detached: bool = False) -> None:
    """Run one command; BackendError with its stderr if it fails. *detached* puts it in its own
    session, so a Ctrl-C typed at the terminal does not reach it (used for removals)."""
    try:
        done = subprocess.run(argv, env=env, capture_output=True, text=True,
                              timeout=_CMD_TIMEOUT_S, start_new_session=detached)
    except FileNotFoundError as exc:
        raise EnvError(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise BackendError(f"{' '.join(argv[:4])} did not finish within {_CMD_TIMEOUT_S} s") from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise BackendError(f"{' '.join(argv)} failed: {tail}")


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _mine_in_registry() -> set[str]:
    """Lab ids the live-lab registry holds for this process (non-persistent)."""
    out = set()
    for path in cleanup.RUN_DIR.glob("*.json") if cleanup.RUN_DIR.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("pid") == os.getpid() and not rec.get("persistent"):
            out.add(str(rec.get("lab_id")))
    return out


class _Sweeper:
    """Makes sure every lab id the benchmark used is gone; remembers what it had to remove
    (something left behind by a timed tear-down is a finding, not a detail)."""

    def __init__(self) -> None:
        self.leftovers: list[str] = []

    def sweep(self, lab_id: str) -> None:
        with _deferred_interrupts():
            left = cleanup.find(lab_id)
            if left:
                self.leftovers += [f"{lab_id}: {line}" for line in left.lines()]
                cleanup.clean(lab_id)
            cleanup.unregister(lab_id)


# -- 1. lab bring-up / tear-down ---------------------------------------------------------------

def _backend(name: str, lab_id: str):
    from .backends.docker import DockerBackend
    from .backends.netns import NetnsBackend

    return {"netns": NetnsBackend, "docker": DockerBackend}[name](lab_id)


def _topology_for(backend) -> Topology:
    topo = load()
    if hasattr(backend, "plan"):
        topo = load(env=backend.plan(topo))
    return topo


def bench_lab(name: str, sweeper: _Sweeper) -> dict[str, float]:
    """``backend.up(topology)`` and ``backend.down()`` of one fresh lab, in seconds."""
    lab_id = secrets.token_hex(3)
    backend = _backend(name, lab_id)
    cleanup.register(lab_id, name)
    out: dict[str, float] = {}
    try:
        topo = _topology_for(backend)
        out["up_s"] = _timed(lambda: backend.up(topo))
    finally:
        try:
            with _deferred_interrupts():
                out["down_s"] = _timed(backend.down)
        finally:
            sweeper.sweep(lab_id)
    return out


# -- 2. the raw floor --------------------------------------------------------------------------

def netns_commands(topo: Topology, lab_id: str) -> tuple[list[list[str]], list[str]]:
    """The plain ``ip`` commands that build *topo* as namespaces ``twlab-<lab_id>-<host>``
    (same interface names, links, addresses, routes and sysctls as the netns backend; every
    link is made inside a lab namespace, nothing in the host's own), and the namespaces."""
    ns = {h: f"{PREFIX}{lab_id}-{h}" for h in topo.hosts}
    ifname = {(h.name, net): f"eth{i}" for h in topo.hosts.values() for i, net in enumerate(h.addresses)}
    names = list(ns.values())
    cmds: list[list[str]] = [["ip", "netns", "add", n] for n in names]
    cmds += [["ip", "-n", n, "link", "set", "lo", "up"] for n in names]
    for net in topo.networks.values():
        members = topo.members(net.name)
        if len(members) == 2:
            a, b = members
            cmds.append(["ip", "-n", ns[a.name], "link", "add", ifname[a.name, net.name], "type", "veth",
                         "peer", "name", ifname[b.name, net.name], "netns", ns[b.name]])
        elif len(members) > 2:
            sw = f"{PREFIX}{lab_id}-sw-{net.name}"
            names.append(sw)
            cmds += [["ip", "netns", "add", sw],
                     ["ip", "-n", sw, "link", "add", "br0", "type", "bridge"],
                     ["ip", "-n", sw, "link", "set", "br0", "up"]]
            for i, m in enumerate(members):
                cmds += [["ip", "-n", ns[m.name], "link", "add", ifname[m.name, net.name], "type", "veth",
                          "peer", "name", f"p{i}", "netns", sw],
                         ["ip", "-n", sw, "link", "set", f"p{i}", "master", "br0", "up"]]
    for h in topo.hosts.values():
        for net, addr in h.addresses.items():
            dev = ifname[h.name, net]
            cmds += [["ip", "-n", ns[h.name], "addr", "add", f"{addr}/{topo.networks[net].subnet.prefixlen}",
                      "dev", dev],
                     ["ip", "-n", ns[h.name], "link", "set", dev, "up"]]
        cmds += [["ip", "-n", ns[h.name], "route", "replace", str(r.dest), "via", str(r.via)]
                 for r in h.routes]
        cmds += [["ip", "netns", "exec", ns[h.name], "sysctl", "-qw", f"{k}={v}"]
                 for k, v in h.sysctls.items()]
    return cmds, names


def bench_raw_netns(sweeper: _Sweeper) -> dict[str, float]:
    """The topology by ``ip`` commands, then ``ip netns del`` of each namespace, in seconds."""
    lab_id = secrets.token_hex(3)
    cmds, names = netns_commands(load(), lab_id)
    cleanup.register(lab_id, "netns")
    out: dict[str, float] = {"commands": float(len(cmds))}
    try:
        def up() -> None:
            for argv in cmds:
                _run(argv)
        out["up_s"] = _timed(up)
    finally:
        try:
            with _deferred_interrupts():
                def down() -> None:
                    for n in names:
                        if os.path.exists(f"/run/netns/{n}"):
                            _run(["ip", "netns", "del", n], detached=True)
                out["down_s"] = _timed(down)
        finally:
            sweeper.sweep(lab_id)
    return out


def bench_raw_docker(sweeper: _Sweeper) -> dict[str, float]:
    """``docker compose up -d`` and ``down`` of compose.yaml, in seconds (the up until compose
    returns, i.e. the containers run; not until their commands have set the routes)."""
    from .backends.docker import DockerBackend

    lab_id = secrets.token_hex(3)
    env = {**os.environ, **DockerBackend(lab_id).plan(load())}
    base = ["docker", "compose", "-p", f"{PREFIX}{lab_id}", "-f", str(DEFAULT_COMPOSE)]
    cleanup.register(lab_id, "docker")
    out: dict[str, float] = {}
    try:
        out["up_s"] = _timed(lambda: _run([*base, "up", "-d"], env=env))
    finally:
        try:
            with _deferred_interrupts():
                out["down_s"] = _timed(lambda: _run([*base, "down"], env=env, detached=True))
        finally:
            sweeper.sweep(lab_id)
    return out


# -- 3. a whole lost-ack run -------------------------------------------------------------------

def split_run(report: dict[str, Any]) -> dict[str, Any]:
    """Total wall time, protocol waiting (server's first to last FIN on its own capture) and
    lab overhead (the rest) of one run's report, plus its timings_s."""
    addrs = (report.get("hosts", {}).get("server", {}).get("addresses") or {}).values()
    server = next(iter(addrs), None)
    fins = sorted(p["t"] for p in report.get("packets", {}).get("server", [])
                  if p["src"] == server and "FIN" in p["flags"].split(","))
    total = float(report["duration_s"])
    waiting = fins[-1] - fins[0] if fins else None
    return {
        "total_s": total,
        "protocol_wait_s": waiting,
        "overhead_s": total - waiting if waiting is not None else None,
        "server_fins": len(fins),
        "server_fin_offsets_s": [round(t - fins[0], 4) for t in fins],
        "timings_s": {k: report.get("timings_s", {}).get(k) for k in TIMINGS},
        "verdict": report.get("verdict"),
        "error": report.get("error"),
        "failed_checks": [{"name": c.get("name"), "expected": c.get("expected"), "observed": c.get("observed")}
                          for c in report.get("checks", []) if not c.get("passed")],
    }


def bench_scenario(name: str, sweeper: _Sweeper) -> dict[str, Any]:
    from .runner import run_scenario

    seen: set[str] = set()

    def progress(_line: str) -> None:       # every line after Lab.start registers the lab
        seen.update(_mine_in_registry())

    tmp = Path(tempfile.mkdtemp(prefix="twlab-bench-"))
    try:
        report = run_scenario(SCENARIO, backend=name, artifacts=tmp / "run", progress=progress)
        seen.add(report["lab_id"])
        return split_run(report)
    finally:
        try:
            for lab_id in sorted(seen):
                sweeper.sweep(lab_id)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# -- putting it together -----------------------------------------------------------------------

def _choose(backends: list[str] | None, console: Console) -> list[str]:
    from .backends import BACKENDS

    if backends:
        for b in backends:
            if b not in BACKEND_NAMES:
                raise UsageError(f"unknown backend {b!r}: choose {' or '.join(BACKEND_NAMES)}")
            ok, why = BACKENDS[b].available()
            if not ok:
                raise EnvError(f"backend {b} is not available: {why}")
        return list(dict.fromkeys(backends))
    chosen = []
    for b in BACKEND_NAMES:
        ok, why = BACKENDS[b].available()
        if ok:
            chosen.append(b)
        else:
            console.print(f"[yellow]skipping {b}: {why}[/]")
    if not chosen:
        raise EnvError("no backend can run here (the lab needs root; docker needs a daemon)")
    return chosen


def _machine() -> dict[str, Any]:
    info: dict[str, Any] = {"kernel": platform.release(), "cpus": os.cpu_count(),
                            "python": platform.python_version()}
    for key, argv in (("docker", ["docker", "version", "-f", "{{.Server.Version}}"]),
                      ("compose", ["docker", "compose", "version", "--short"]),
                      ("iproute2", ["ip", "-V"])):
        try:
            info[key] = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            info[key] = None
    return info


def _cell(s: Stats) -> str:
    if s["median"] is None:
        return "-"
    return f"{s['median']:.3f}  [dim]({s['min']:.3f}–{s['max']:.3f})[/]"


def _table(result: dict[str, Any]) -> Table:
    bs = result["backends"]
    t = Table(title=f"twlab bench: seconds, median (min–max) of {result['runs']} runs",
              title_justify="left", header_style="bold")
    t.add_column("measurement")
    for b in bs:
        t.add_column(b, justify="right")
    lab, raw, run = result["bring_up"], result["raw_floor"], result["lost_ack"]
    t.add_row("lab up    backend.up()", *(_cell(lab[b]["up_s"]) for b in bs))
    t.add_row("raw up    (the floor)", *(_cell(raw[b]["up_s"]) for b in bs))
    t.add_row("lab down  backend.down()", *(_cell(lab[b]["down_s"]) for b in bs))
    t.add_row("raw down  (the floor)", *(_cell(raw[b]["down_s"]) for b in bs))
    t.add_section()
    t.add_row(f"{SCENARIO} run, wall time", *(_cell(run[b]["total_s"]) for b in bs))
    t.add_row("  protocol waiting", *(_cell(run[b]["protocol_wait_s"]) for b in bs))
    t.add_row("  lab overhead", *(_cell(run[b]["overhead_s"]) for b in bs))
    for k in TIMINGS:
        t.add_row(f"    {k}", *(_cell(run[b]["timings_s"][k]) for b in bs), style="dim")
    return t


def _diff(lab: float, raw: float) -> str:
    d = lab - raw
    return f"{abs(d):.3f} s {'more' if d >= 0 else 'less'} than"


def _explain(result: dict[str, Any]) -> str:
    bs, lab, raw, run = result["backends"], result["bring_up"], result["raw_floor"], result["lost_ack"]
    parts = []
    for b in bs:
        lu, ru = lab[b]["up_s"]["median"], raw[b]["up_s"]["median"]
        ld, rd = lab[b]["down_s"]["median"], raw[b]["down_s"]["median"]
        pw, ov = run[b]["protocol_wait_s"]["median"], run[b]["overhead_s"]["median"]
        if None not in (lu, ru, ld, rd):
            parts.append(f"{b}: backend.up() takes {_diff(lu, ru)} the raw bring-up, backend.down() "
                         f"{_diff(ld, rd)} the raw tear-down")
        if None not in (pw, ov):
            parts.append(f"of a {SCENARIO} run {pw:.2f} s is protocol waiting and {ov:.2f} s lab overhead")
    return (
        "Lab up/down time the backend classes alone (plan(), which picks free subnets and checks the "
        "image, is not timed); raw up/down, the floor, make the same three hosts, two links, addresses, "
        "routes and sysctls with the plainest tools (netns: "
        + (f"{int(raw['netns']['commands']['median'] or 0)} " if "netns" in bs else "")
        + "`ip` commands, one process each, then `ip netns del` per namespace; docker: `docker "
        "compose up -d` and `down`), so lab − raw is what the backend itself costs; a negative "
        "difference means the floor is not a floor for that step (the netns backend talks netlink "
        "from one process, where each `ip` command is a fork and exec). "
        "Docker's raw up stops when compose returns (containers running); backend.up() also waits "
        "until each container's command has set its routes and removed its default route. "
        f"A {SCENARIO} run's wall time is its report's duration_s (`invoke run` from start to "
        "report.json); protocol waiting is the server kernel's FIN retransmission backoff "
        "(tail-loss probe, then RTOs doubling from 200 ms), measured on the wire from its first FIN "
        "to its last: no lab can make it shorter. Lab overhead is the rest (wall time − waiting): "
        "bring-up, starting the captures, faults and socket sampler (start_s includes bring_up_s), "
        "the peers' handshake and data, tear-down, and reading the pcaps to judge; the dim rows are "
        "the run's own timings_s (scenario_s includes the waiting). "
        + ("; ".join(parts) + "." if parts else "")
    )


def main(runs: int = 5, backends: list[str] | None = None, json_out: str | None = None,
         console: Console | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and its explanation, return (and optionally write to
    *json_out*) every figure."""
    from .runner import interrupts_as_exceptions

    console = console or Console()
    if int(runs) < 1:
        raise UsageError(f"--runs {runs}: give at least 1")
    runs = int(runs)
    chosen = _choose(backends, console)
    sweeper = _Sweeper()
    samples: dict[str, dict[str, list[Any]]] = {b: {"lab": [], "raw": [], "run": []} for b in chosen}
    started = time.time()
    with interrupts_as_exceptions():            # SIGTERM/SIGHUP unwind through every finally
        try:
            for i in range(runs):
                for b in chosen:
                    lab = bench_lab(b, sweeper)
                    raw = bench_raw_netns(sweeper) if b == "netns" else bench_raw_docker(sweeper)
                    run = bench_scenario(b, sweeper)
                    samples[b]["lab"].append(lab)
                    samples[b]["raw"].append(raw)
                    samples[b]["run"].append(run)
                    pw = run["protocol_wait_s"]
                    console.print(
                        f"[dim]run {i + 1}/{runs} {b:<6} lab up {lab['up_s']:.3f} down {lab['down_s']:.3f} | "
                        f"raw up {raw['up_s']:.3f} down {raw['down_s']:.3f} | {SCENARIO} "
                        f"{run['total_s']:.2f} s ({'?' if pw is None else f'{pw:.2f}'} waiting, "
                        f"{run['verdict']})[/]")
        finally:
            for lab_id in sorted(_mine_in_registry()):     # anything still registered to us
                sweeper.sweep(lab_id)

    def col(rows: list[dict[str, Any]], key: str) -> Stats:
        return summarize([r.get(key) for r in rows])

    result: dict[str, Any] = {
        "runs": runs,
        "backends": chosen,
        "scenario": SCENARIO,
        "started": started,
        "duration_s": round(time.time() - started, 3),
        "machine": _machine(),
        "bring_up": {b: {k: col(samples[b]["lab"], k) for k in ("up_s", "down_s")} for b in chosen},
        "raw_floor": {b: {k: col(samples[b]["raw"], k) for k in ("up_s", "down_s")
                          } | ({"commands": col(samples[b]["raw"], "commands")} if b == "netns" else {})
                      for b in chosen},
        "lost_ack": {b: {
            **{k: col(samples[b]["run"], k) for k in ("total_s", "protocol_wait_s", "overhead_s")},
            "timings_s": {k: summarize([r["timings_s"][k] for r in samples[b]["run"]]) for k in TIMINGS},
            "server_fins": [r["server_fins"] for r in samples[b]["run"]],
            "server_fin_offsets_s": [r["server_fin_offsets_s"] for r in samples[b]["run"]],
            "verdicts": [r["verdict"] for r in samples[b]["run"]],
            "errors": [r["error"] for r in samples[b]["run"] if r["error"]],
            "failed_checks": [r["failed_checks"] for r in samples[b]["run"]],
        } for b in chosen},
        "leftovers_removed": sweeper.leftovers,
    }
    console.print()
    console.print(_table(result))
    console.print(_explain(result), highlight=False, markup=False)
    for b in chosen:
        got = result["lost_ack"][b]
        bad = [f"run {i + 1}: {v}" + (f" ({', '.join(c['name'] for c in fc)})" if fc else "")
               for i, (v, fc) in enumerate(zip(got["verdicts"], got["failed_checks"])) if v != "pass"]
        if bad:
            console.print(f"[yellow]note: {SCENARIO} on {b} did not pass in every run "
                          f"(its timings still count): {'; '.join(bad)}[/]", highlight=False)
    if sweeper.leftovers:
        console.print(f"[yellow]note: a timed tear-down left things behind (removed afterwards): "
                      f"{'; '.join(sweeper.leftovers)}[/]")
    if json_out:
        write_text(json_out, json.dumps(result, indent=2) + "\n")
        console.print(f"[dim]figures written to {json_out}[/]")
    return result


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lab.bench", description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--backend", action="append", choices=BACKEND_NAMES,
                    help="measure only this backend (repeatable); default: every available one")
    ap.add_argument("--json", dest="json_out", metavar="FILE", help="also write the figures here")
    args = ap.parse_args()
    main(runs=args.runs, backends=args.backend, json_out=args.json_out)
