"""Running one scenario end to end: bring up, run the steps, tear down, judge, write report.json."""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import check_dir, ensure_dir, write_text
from .backends import check_name
from .capture import parse_stats
from .core import Lab, SysctlSetting
from .errors import CannotShow, EnvError, LabError, NetemMissing, NoIPv6, UsageError, WaitTimeout
from .evidence import Evidence
from .family import check_family, label
from .html.writer import PageWriter
from .interrupts import Interrupted, interrupts_as_exceptions, signal_name, signal_of
from .pipeline import Job, Result, run_batches, tally
from .saved import index_quietly, write_html_quietly
from .shaping import REQUIRED, UNUSED, Shaping, parse_shape
from .sysctls import check_keys, layer_sysctls
from .verdict import INCONCLUSIVE, Check, verdict

if TYPE_CHECKING:
    from .scenario import Scenario
    from .waiting import WaitView

__all__ = ["run_scenario", "run_many", "run_catalog", "jobs_for", "default_artifacts",
           "interrupts_as_exceptions", "Interrupted", "kernel_hz"]


REPORT_SCHEMA = 3     # report.json's shape: 2 added schema, port, observation, checks[].outcome; 3 family,
                      # hosts' addresses4/addresses6 (README)


def default_artifacts(scenario: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path("artifacts") / f"{stamp}-{scenario}"
    path, n = base, 1
    while path.exists():
        n += 1
        path = Path(f"{base}-{n}")
    return path


def kernel_hz() -> int | None:
    """CONFIG_HZ of the running kernel, from /proc/config.gz or /boot/config-*."""
    import gzip
    import platform

    for path, opener in (("/proc/config.gz", gzip.open), (f"/boot/config-{platform.release()}", open)):
        try:
            with opener(path, "rt") as f:
                for line in f:
                    if line.startswith("CONFIG_HZ="):
                        return int(line.split("=")[1])
        except OSError:
            continue
    return None


def run_scenario(name: str, backend: str = "auto", sysctls: list[SysctlSetting] = (),
                 artifacts: Path | None = None, progress: Callable[[str], None] = lambda s: None,
                 shaping: list[Shaping] = (), compose: Path | None = None,
                 options: dict[str, Any] | None = None, family: int = 4,
                 waiting: WaitView | None = None, page: str = "wait") -> dict[str, Any]:
    """Run scenario *name* over IPv4 or IPv6 (*family*); return the report (also written to
    ARTIFACTS/report.json). *waiting* shows the long waits (lab.waiting). *page* "detach" leaves
    report.html to be drawn after this process ends (lab.html.writer), "wait" draws it first.

    Raises LabError for usage and environment errors (nothing is left behind); a failed check is
    not an error but ``report["verdict"] == "fail"``."""
    from scenarios import get

    sc = get(name)
    if shaping and sc.shaping == UNUSED:
        raise UsageError(f"{name} runs without link shaping; drop --shape")
    options = dict(options or {})
    if options.get("mapped") and not sc.mapped_client:
        from scenarios import catalog

        able = [n for n, s in catalog().items() if s.mapped_client]
        raise UsageError(f"{name} has no v4-mapped variant; --mapped runs {', '.join(able)} (or leave it out)")
    artifacts = Path(artifacts) if artifacts else default_artifacts(name)
    started = time.time()
    # the scenario's own settings first (e.g. a short tcp_orphan_retries), the user's on top
    stacks = dict(options.get("stacks") or {})
    unsupported(sc, stacks)
    sysctls, not_set = sc.on_stacks(layer_sysctls(sc.own_sysctls(), explicit=sysctls), stacks)
    if not_set:
        options["sysctls_not_set"] = [str(s) for s in not_set]
        progress(f"{name}: {', '.join(map(str, not_set))} not set: a Linux sysctl, and that host runs "
                 "gVisor's netstack (the checks that depend on it say not applicable)")
    lab = _lab_for(sc, backend, artifacts, sysctls, shaping, compose, progress, check_family(family),
                   bool(options.get("mapped")))
    lab.stacks = stacks
    lab.waiting = waiting
    writer = _page_writer(progress, detached=page == "detach")
    try:
        return _run_and_report(name, sc, lab, artifacts, sysctls, shaping, options, progress, started, writer)
    finally:
        if writer is not None:
            writer.close()


def unsupported(sc: Scenario, stacks: dict[str, str]) -> None:
    """A host on a stack the scenario does not list (Scenario.stacks): skipped, one line."""
    from .gvisor import StackCannotShow

    other = sorted((h, s) for h, s in stacks.items() if s not in sc.stacks_of(h))
    if other:
        host, stack = other[0]
        raise StackCannotShow(sc.name, f"it observes {host} through Linux's sock_diag and is not yet judged "
                              f"from the wire for a {stack} host", f"run it with {host} on Linux "
                              "(README: Two TCP implementations)")


def _page_writer(progress: Callable[[str], None], detached: bool = False) -> PageWriter | None:
    """The run's report.html writer, loading matplotlib while the run goes on (lab.html.writer);
    None inside a VM (the host writes the page) or when it cannot start (the page is then drawn
    here, after the verdict)."""
    if os.environ.get("TWLAB_IN_VM"):
        return None
    try:
        return PageWriter(detached)
    except OSError as exc:
        progress(f"twlab: no page writer ({exc}); report.html is drawn after the run")
        return None


def _run_and_report(name: str, sc: Scenario, lab: Lab, artifacts: Path, sysctls: list[SysctlSetting],
                    shaping: list[Shaping], options: dict[str, Any], progress: Callable[[str], None],
                    started: float, writer: PageWriter | None) -> dict[str, Any]:
    """The scenario run on *lab*, judged; report.json and report.html written; the report."""
    facts, error = _steps(lab, sc, shaping, options, progress)
    ev = Evidence.load(
        artifacts, list(lab.captures) or list(lab.hosts), timeline=lab.timeline.events(),
        counters={h: lab.counters_delta(h) for h in lab.hosts}, sysctls=lab.sysctls,
        addresses={h: str(host.address) for h, host in lab.hosts.items()},
        faults={n: f.to_json() for n, f in (lab.faults.faults.items() if lab.faults else [])},
        facts=facts, hz=kernel_hz(), options=options,
        timer_samples=lab.sampler.series if lab.sampler else {},
        captures={h: parse_stats(c.stats) for h, c in lab.captures.items()},
        sampler=lab.sampler.cadence.to_json() if lab.sampler else {}, port=sc.port, family=lab.family)
    checks, run_verdict, error = _judged(sc, ev, lab, error)
    report = {
        "schema": REPORT_SCHEMA, "scenario": name, "port": sc.port, "intent": sc.intent_in(ev.sysctls),
        **lab.describe(), "kernel_hz": ev.hz, "started": started, "duration_s": round(time.time() - started, 3),
        "timings_s": {k: round(v, 3) for k, v in lab.timings.items()},
        "sysctls_requested": [str(s) for s in sysctls], "options": options,
        "verdict": run_verdict, "error": error,
        "observation": {"problems": [p.to_json() for p in lab.health.problems],
                        "sampler": lab.sampler.cadence.to_json() if lab.sampler else None},
        "checks": [c.to_json() for c in checks], "counters": ev.counters, "captures": ev.captures,
        "faults": ev.faults, "facts": facts,
        "artifacts": {"dir": str(artifacts), "pcaps": sorted(p.name for p in artifacts.glob("*.pcap"))},
        "timeline": [e.to_json(lab.t0) for e in ev.timeline],
        "timer_samples": {h: [list(x) for x in xs] for h, xs in ev.timer_samples.items()},
        "packets": {h: [s.to_json() for s in segs] for h, segs in ev.packets.items()},
    }
    _write_report(lab, artifacts, report)
    if writer is not None and writer.detached:
        _hand_off(writer, artifacts, report, progress)
    else:
        write_html_quietly(artifacts, report, progress, writer)
    return report


def _hand_off(writer: PageWriter, artifacts: Path, report: dict[str, Any], progress: Callable[[str], None]) -> None:
    """report.html drawn after this process ends; the terminal view says it is on its way
    (artifacts.page, not in report.json)."""
    try:
        writer.hand_off(artifacts)
        report["artifacts"]["page"] = "drawing"
    except (OSError, RuntimeError):      # the writer died: draw it here, as without one
        write_html_quietly(artifacts, report, progress)


def _lab_for(sc: Scenario, backend: str, artifacts: Path, sysctls: list[SysctlSetting],
             shaping: list[Shaping], compose: Path | None, progress: Callable[[str], None], family: int,
             mapped: bool = False) -> Lab:
    def premise(in_force: dict[str, dict[str, str]]) -> None:
        """Asked by the lab once the sysctls are read back, before anything is captured."""
        why = sc.cannot_show(in_force)
        if why:
            raise CannotShow(sc.name, why)

    return Lab(backend=backend, artifacts=artifacts, sysctls=list(sysctls), port=sc.port,
               progress=progress, shaping=list(shaping), premise=premise,
               needs_netem=sc.name if sc.shaping == REQUIRED else None, family=family,
               scenario=label(sc.name, family), mapped=mapped, **({"compose": compose} if compose else {}))


def _steps(lab: Lab, sc: Scenario, shaping: list[Shaping], options: dict[str, Any],
           progress: Callable[[str], None]) -> tuple[dict[str, Any], str | None]:
    """Bring the lab up, run the scenario's steps, tear the lab down (whatever happens): the facts
    the steps returned, and the error of a protocol event that never came (judged as a failed
    run, after what was seen is judged)."""
    facts: dict[str, Any] = {}
    error: str | None = None
    with interrupts_as_exceptions():
        try:
            with lab:
                if not shaping and sc.link:
                    # the scenario's own link, when the user gave none (--shape replaces it)
                    lab.add_shaping([sh for text in sc.link for sh in parse_shape(text)])
                progress(f"running {sc.name}: {sc.intent_in(lab.sysctls)}")
                t = time.monotonic()
                lab.options = options
                try:
                    facts = {**lab.facts, **(sc.run(lab) or {})}
                except WaitTimeout as exc:  # a step timed out: still judge what was seen, then fail
                    error = str(exc)
                    facts = dict(lab.facts)
                except Exception as exc:    # the lab's own observation may be what broke: say so
                    broken = lab.broken(exc)
                    if broken is not None:
                        raise broken from exc
                    raise
                lab.timings["scenario_s"] = time.monotonic() - t
        finally:
            lab.ensure_closed(failing=KeyboardInterrupt)
    return facts, error


def _judged(sc: Scenario, ev: Evidence, lab: Lab, error: str | None) -> tuple[list[Check], str, str | None]:
    """The checks, the run's verdict and its error line. A hole in the evidence (lab.health)
    leaves no check passed or failed on it."""
    checks = sc.judge(ev)      # a check that raises is a bug, reported as that check failing
    run_verdict = "fail" if error else verdict(checks)
    if lab.health:
        why = lab.health.summary()
        checks = [c.unjudged(why) for c in checks]
        error = f"the lab's observation broke: {why}; nothing was judged, run it again" + \
            (f" (the run also reported: {error})" if error else "")
        run_verdict = "error"
    elif run_verdict == "error":
        error = "could not judge: " + "; ".join(f"{c.name}: {c.observed}" for c in checks
                                                if c.outcome == INCONCLUSIVE)
    elif run_verdict == "skipped":
        error = "nothing to judge: every check was not applicable (" + \
            "; ".join(f"{c.name}: {c.observed}" for c in checks) + ")"
    return checks, run_verdict, error


def _write_report(lab: Lab, artifacts: Path, report: dict[str, Any]) -> None:
    """report.json, whole or not at all: written beside and renamed into place. When it cannot be
    written (a full disk) the run's pcaps go too, and the run is an environment error."""
    path, tmp = artifacts / "report.json", artifacts / ".report.json.tmp"
    try:
        write_text(tmp, json.dumps(report, indent=2, default=str) + "\n")     # 0600: lab.artifacts
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        lab.discard_artifacts()
        raise EnvError(f"cannot write {path} ({exc.strerror or exc}); the run's results were not kept: "
                       "free some space there or give --artifacts DIR elsewhere") from None


def jobs_for(names: list[str], base: Path, backend: str = "auto", sysctls: list[SysctlSetting] = (),
             shaping: list[Shaping] = (), compose: Path | None = None, options: dict[str, Any] | None = None,
             from_host: list[SysctlSetting] = (), repeat: int = 1, families: tuple[int, ...] = (4,)) -> list[Job]:
    """The jobs of a batch: each scenario once per address family in *families* (*repeat* times, in
    run-NNN directories; an IPv6 run's directory is SCENARIO-v6) with its sysctls layered (its own,
    this machine's, the explicit ones) and the shaping only where it takes any; a bad scenario,
    sysctl key, backend or family is refused here, once, before any lab."""
    from scenarios import get

    scs = [get(n) for n in names]
    check_keys(sysctls)
    check_name(backend)
    families = tuple(check_family(f) for f in families)
    if repeat > 1 and len(families) > 1:
        raise UsageError("--repeat runs one address family at a time; give --family 4 or --family 6")
    jobs = []
    for sc in scs:
        for family in families:
            for i in range(repeat):
                jobs.append(Job(
                    run=len(jobs) + 1, scenario=sc.name, backend=backend, family=family,
                    artifacts=base / (f"run-{i + 1:03d}" if repeat > 1 else label(sc.name, family).replace("/", "-")),
                    sysctls=tuple(layer_sysctls(sc.own_sysctls(), from_host, sysctls)),
                    shaping=() if sc.shaping == UNUSED else tuple(shaping), compose=compose,
                    options=dict(options or {})))
    return jobs


def run_many(name: str, repeat: int, parallel: int, backend: str = "auto",
             sysctls: list[SysctlSetting] = (), artifacts: Path | None = None,
             shaping: list[Shaping] = (), compose: Path | None = None,
             progress: Callable[[str], None] = lambda s: None,
             options: dict[str, Any] | None = None, family: int = 4) -> dict[str, Any]:
    """Run *repeat* isolated instances of scenario *name* over *family*, *parallel* at a time, each
    in its own process and lab; summarise how many passed and how stable each check was. A skip
    (the kernel or the sysctls cannot show it) skips every instance: the first one stops the batch."""
    if repeat < 1 or parallel < 1:
        raise UsageError("--repeat and --parallel take whole numbers of 1 or more")
    base = check_dir(Path(artifacts) if artifacts else default_artifacts(label(name, family).replace("/", "-")))
    jobs = jobs_for([name], base, backend, sysctls, shaping, compose, options, repeat=repeat, families=(family,))
    started = time.time()

    def skip_all(res: Result) -> None:
        if res.verdict == "skipped":
            raise skipped(res)

    try:
        results = run_batches(jobs, parallel, progress, label=lambda r: f"run {r.run:>3}/{repeat}:",
                              on_result=skip_all)
    except KeyboardInterrupt as exc:
        summary = _many_summary(name, repeat, parallel, getattr(exc, "results", []), started, base, family)
        summary.update(interrupted=signal_of(exc), not_run=[j.run for j in getattr(exc, "not_run", [])])
        _write_summary(base, summary)
        progress(f"{name}: interrupted by {signal_name(exc)} after {len(summary['runs'])} of {repeat} runs "
                 f"({summary['passed']} passed, {summary['failed']} failed, {summary['errors']} errors, "
                 f"{len(summary['not_run'])} not started); partial summary: {base}/summary.json")
        raise
    summary = _many_summary(name, repeat, parallel, results, started, base, family)
    _write_summary(base, summary)
    index_quietly(base, f"run {name} --repeat {repeat}", summary["runs"], progress=progress)
    return summary


def skipped(res: Result) -> LabError:
    """The skip a result reports, raised again (its kind and reason) for the batch to stop on."""
    why = (res.skip or {}).get("why", res.reason or "")
    kind = (res.skip or {}).get("kind")
    if kind == "CannotShow":
        return CannotShow(res.name, why)
    if kind == "NoIPv6":
        return NoIPv6(res.name, why)
    return NetemMissing(res.scenario, why)


def _many_summary(name: str, repeat: int, parallel: int, results: list[Result], started: float,
                  base: Path, family: int = 4) -> dict[str, Any]:
    per_check: dict[str, list[bool]] = {}
    for r in results:
        for check, outcome in r.outcomes.items():
            per_check.setdefault(check, []).append(outcome == "pass")
    summary = {"scenario": name, "family": family, "name": label(name, family), "repeat": repeat,
               "parallel": parallel, **tally(results),
               "check_pass_rate": {k: f"{sum(v)}/{len(v)}" for k, v in per_check.items()},
               "wall_s": round(time.time() - started, 3), "runs": [r.to_json() for r in results]}
    summary["verdict"] = "pass" if summary["passed"] == repeat else "fail"
    summary["artifacts"] = str(base)
    return summary


def _write_summary(base: Path, summary: dict[str, Any]) -> None:
    write_text(ensure_dir(base) / "summary.json",          # 0600 in 0700: lab.artifacts
               json.dumps({k: v for k, v in summary.items() if k != "artifacts"}, indent=2, default=str) + "\n")


def catalog_summary(results: list[Result], wall_s: float) -> dict[str, Any]:
    """`run all`'s summary of its runs. A scenario this kernel cannot run (no netem), or that the
    sysctls in force rule out, is skipped, as in `invoke check`: listed with its reason, it does not
    fail the rest."""
    results = sorted(results, key=lambda r: r.run)
    summary = {"scenarios": [r.to_json() for r in results], "wall_s": round(wall_s, 3), **tally(results)}
    ran = [r for r in results if r.verdict != "skipped"]
    summary["verdict"] = "pass" if ran and all(r.verdict == "pass" for r in ran) else "fail"
    return summary


def run_catalog(names: list[str], parallel: int = 3, backend: str = "auto",
                sysctls: list[SysctlSetting] = (), artifacts: Path | None = None,
                shaping: list[Shaping] = (), compose: Path | None = None,
                options: dict[str, Any] | None = None,
                progress: Callable[[str], None] = lambda s: None,
                families: tuple[int, ...] = (4,)) -> dict[str, Any]:
    """Run several scenarios (``invoke run all``), each once per address family in *families*: the
    parallel-safe ones up to *parallel* at a time, the timing-sensitive ones afterwards, alone
    (lab.pipeline)."""
    mine = [s for s in sysctls if s.host in ("client", "router", "server")]
    base = check_dir(Path(artifacts) if artifacts else default_artifacts("all"))
    jobs = jobs_for(names, base, backend, mine, shaping, compose, options, families=families)
    started = time.time()
    try:
        results = run_batches(jobs, parallel, progress)
    except KeyboardInterrupt as exc:
        summary = catalog_summary(getattr(exc, "results", []), time.time() - started)
        summary.update(interrupted=signal_of(exc), not_run=[j.name for j in getattr(exc, "not_run", [])])
        _write_summary(base, summary)
        progress(f"interrupted by {signal_name(exc)} after {len(summary['scenarios'])} of {len(jobs)} "
                 f"scenarios; partial summary: {base}/summary.json")
        raise
    summary = catalog_summary(results, time.time() - started)
    _write_summary(base, summary)
    summary["artifacts"] = str(base)
    index_quietly(base, "run all", summary["scenarios"], progress=progress)
    return summary
