"""`invoke check`: run scenarios for CI and judge them twice - against the expectations for the
sysctls in force (each scenario's own verdict) and against the behaviour a profile requires.

    summary = run_check(["lost-ack"], profile=load_profile("ci.toml"), from_host=True)
    Path("out.xml").write_text(junit_xml(summary))
    sys.exit(summary["exit_code"])        # 0 all matched, 1 something did not, 2 nothing could run

Where the sysctls of each lab host come from, later ones winning:

    1. --from-host   this machine's own values (read-only, /proc/sys/net/ipv4) of the TCP keys
                     in lab.core.REPORTED_SYSCTLS that exist here, for client and server - except
                     the keys a scenario sets itself (its SYSCTLS: e.g. tw-buckets' N = 3): the
                     experiment stays the experiment
    2. the profile   [sysctls.HOST] tables
    3. --sysctl      HOST:KEY=VALUE on the command line

A profile is a small TOML file (see PROFILE_EXAMPLE). A required behaviour names a scenario, one
of its checks (a name, a glob, or a list of them: some checks are named after the sysctl in
force, e.g. tw-assassination's time-wait-assassinated / time-wait-survives-rst), and what must
hold: the check passed (`passed = true`) and/or a value of the check's ``values`` (the numbers
the check used, as report.json has them) compared with `equals`, `min`/`max` or `near` +
`slack`. Every check the names match must hold it; a list value, for every element. A requirement whose scenario did
not run to
a report (error, or skipped: no netem, or sysctls that rule out what it observes) is not shown, so it fails.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .artifacts import check_dir, ensure_dir, write_text
from .errors import UsageError
from .pipeline import Job, Result, progress_line, run_batches
from .requirements import judge
from .runner import default_artifacts, jobs_for
from .sysctls import SysctlSetting, host_sysctls

if TYPE_CHECKING:
    from .profile import Profile
    from .shaping import Shaping

__all__ = ["run_check", "write_outputs"]


def run_check(names: list[str] | None = None, *, sysctls: list[SysctlSetting] = (),
              from_host: bool = False, profile: Profile | None = None, backend: str = "auto",
              shaping: list[Shaping] = (), artifacts: Path | None = None, parallel: int = 3,
              progress: Callable[[str], None] = lambda s: None,
              runner: Callable[[Job], Result] | None = None, families: tuple[int, ...] = (4,),
              stacks: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the scenarios (the named ones, else the profile's, else the whole catalog, plus any a
    requirement names), each once per address family in *families*, through lab.pipeline and
    judge them (lab.requirements.judge): the summary. *stacks*: --stack (lab.gvisor), for every
    scenario (one not judged from the wire with a gVisor host is skipped). *runner* stands in for the pipeline in tests
    (hand-made results, no lab)."""
    from scenarios import catalog

    if parallel < 1:
        raise UsageError("--parallel takes a whole number of 1 or more")
    chosen = list(dict.fromkeys(names or (profile.scenarios if profile else []) or list(catalog())))
    for req in (profile.requires if profile else []):
        if req.scenario not in chosen:
            progress(f"also running {req.scenario}: the profile requires a behaviour of it "
                     f"(line {req.line})")
            chosen.append(req.scenario)
    base = check_dir(Path(artifacts) if artifacts else default_artifacts("check"))
    host_vals = host_sysctls() if from_host else []
    explicit = list(profile.sysctls if profile else []) + list(sysctls)
    jobs = jobs_for(chosen, base, backend, explicit, shaping, from_host=host_vals, families=families,
                    options={"stacks": dict(stacks)} if stacks else None)
    started = time.time()
    if runner is not None:
        results = [runner(j) for j in jobs]
        for r in results:
            progress(progress_line(r, f"{r.name:<25}"))
    else:
        results = run_batches(jobs, parallel, progress)
    runs = [_scenario_entry(res, _load_report(Path(job.artifacts)), job) for job, res in zip(jobs, results)]
    summary = judge(runs, profile.requires if profile else [])
    summary.update({
        "tool": "twlab check",
        "kernel": platform.release(),
        "hostname": socket.gethostname(),
        "started": _dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "wall_s": round(time.time() - started, 3),
        "backend": backend,
        "families": list(families),
        "profile": profile.path if profile else None,
        "sysctls": {"from_host": sorted({f"{s.key}={s.value}" for s in host_vals}),
                    "profile": [str(s) for s in (profile.sysctls if profile else [])],
                    "command_line": [str(s) for s in sysctls]},
        "shaping": [str(sh) for sh in shaping],
        "artifacts": str(base),
    })
    write_text(ensure_dir(base) / "check.json", json.dumps(summary, indent=2, default=str) + "\n")
    from .saved import index_quietly

    index_quietly(base, "check", [r.to_json() for r in results], progress=progress)
    return summary


def _load_report(artifacts: Path) -> dict[str, Any] | None:
    try:
        return json.loads((artifacts / "report.json").read_text())
    except (OSError, ValueError):
        return None


def _scenario_entry(res: Result, report: dict[str, Any] | None, job: Job) -> dict[str, Any]:
    """One scenario's outcome for the summary: pass, fail, error or skipped, with its checks."""
    entry: dict[str, Any] = {"scenario": job.scenario, "name": job.name, "family": job.family,
                             "artifacts": str(job.artifacts),
                             "sysctls_requested": [str(s) for s in job.sysctls]}
    if res.verdict == "skipped":                 # no netem, or the sysctls rule it out
        skip = res.skip or {}
        entry.update(verdict="skipped", reason=f"{skip['why']}; {skip['hint']}" if skip else res.reason or "")
        return entry
    if res.verdict == "error" and (report is None or res.interrupted):
        entry.update(verdict="error", error=res.error, exit_code=res.exit_code)
        return entry
    error = res.error
    if report is None:
        entry.update(verdict="error", error=error or "the run left no report.json", exit_code=2)
        return entry
    if report.get("verdict") == "skipped":          # every check was not applicable
        entry["reason"] = report.get("error") or "every check was not applicable"
    entry.update({
        "verdict": report.get("verdict", "fail"),
        "error": report.get("error"),
        "backend": report.get("backend"),
        "kernel": report.get("kernel"),
        "duration_s": report.get("duration_s"),
        "netem": report.get("netem"),
        "sysctls_in_force": {h: v.get("sysctls", {}) for h, v in (report.get("hosts") or {}).items()},
        "checks": report.get("checks", []),
    })
    return entry


def write_outputs(summary: dict[str, Any], outputs: list[tuple[str, Path]]) -> None:
    """--junit and --json-out: the summary as JUnit XML or JSON (0600: lab.artifacts)."""
    from .errors import EnvError
    from .junit import junit_xml

    for flag, path in outputs:
        try:
            write_text(ensure_dir(path.parent) / path.name, junit_xml(summary) if flag == "--junit" else
                       json.dumps(summary, indent=2, default=str) + "\n")
        except OSError as exc:
            raise EnvError(f"{flag} {path}: cannot write it ({exc.strerror or exc}); the run's "
                           f"summary is in {summary['artifacts']}/check.json") from None
