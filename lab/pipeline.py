"""One run pipeline for every way the lab runs scenarios: `run`, `run all`, `run --repeat`,
`check`, `stability` and the host cells of `matrix`.

    jobs = [Job(run=1, scenario="lost-ack", artifacts=Path("out/lost-ack"), ...), ...]
    results = run_batches(jobs, parallel=3, progress=print)      # [Result, ...], in job order

A Job says what to run, and over which address family (lab.family: 4 or 6; an IPv6 run's result
is named ``SCENARIO/v6``); ``run_job`` runs it in a worker process (lab.pool: each in a process of its
own, stopped as a whole) and turns what happened into a Result - a verdict (lab.verdict: pass,
fail, error, skipped), the exit code it means, the checks' outcomes, or the reason it was skipped
or stopped. ``run_batches`` runs the parallel-safe scenarios *parallel* at a time and the
timing-sensitive ones (Scenario.parallel_safe False) alone afterwards, printing one progress line per
result; a long one that tolerates company (Scenario.beside) starts first, in a worker of its own
beside the parallel batch. Stopped (Ctrl-C, SIGTERM), it raises KeyboardInterrupt carrying ``results`` (what ended)
and ``not_run`` (the jobs that never began), so every caller can still write its summary.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import LabError, ScenarioSkipped
from .family import label as result_name
from .interrupts import signal_name
from .verdict import EXIT_CODES, FAIL, INCONCLUSIVE, outcome_of

if TYPE_CHECKING:
    from .shaping import Shaping
    from .sysctls import SysctlSetting

__all__ = ["Job", "Result", "run_job", "run_batches", "progress_line", "tally"]


@dataclass(frozen=True)
class Job:
    run: int                                   # its number in the batch
    scenario: str
    artifacts: Path
    backend: str = "auto"
    sysctls: tuple[SysctlSetting, ...] = ()    # already layered (lab.sysctls.layer_sysctls)
    shaping: tuple[Shaping, ...] = ()
    compose: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    family: int = 4                            # the run's address family (lab.family)

    @property
    def name(self) -> str:
        """The run's result name: the scenario's, ``SCENARIO/v6`` over IPv6 (lab.family.label)."""
        return result_name(self.scenario, self.family)


@dataclass
class Result:
    run: int
    scenario: str
    verdict: str                               # pass | fail | error | skipped
    exit_code: int
    artifacts: str
    error: str | None = None
    reason: str | None = None                  # why it was skipped
    skip: dict | None = None                   # {"why", "hint", "kind"} of a skip
    backend: str | None = None
    duration_s: float | None = None
    outcomes: dict[str, str] = field(default_factory=dict)      # check name -> outcome
    interrupted: bool = False
    signum: int | None = None                  # the interrupt's signal, when interrupted
    labs: list[str] = field(default_factory=list)              # the labs the run made (lab.pool)
    family: int = 4                                            # the run's address family (lab.family)

    @property
    def name(self) -> str:
        """``SCENARIO`` (IPv4) or ``SCENARIO/v6``: what the terminal, the summaries and JUnit call it."""
        return result_name(self.scenario, self.family)

    @property
    def failed_checks(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o == FAIL]

    @property
    def inconclusive_checks(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o == INCONCLUSIVE]

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v not in (None, False) and k != "signum"}   # error names it
        d.update(name=self.name, family=self.family, checks={n: o == "pass" for n, o in self.outcomes.items()},
                 failed_checks=self.failed_checks, inconclusive_checks=self.inconclusive_checks)
        return d


def run_job(job: Job) -> Result:
    """One scenario run, in a worker process (its own signal handling and lab)."""
    from .runner import run_scenario

    base = {"run": job.run, "scenario": job.scenario, "artifacts": str(job.artifacts), "family": job.family}
    try:
        report = run_scenario(job.scenario, backend=job.backend, sysctls=list(job.sysctls),
                              artifacts=job.artifacts, shaping=list(job.shaping), compose=job.compose,
                              options=dict(job.options), family=job.family)
    except ScenarioSkipped as exc:          # no netem or IPv6 here, or the sysctls rule the behaviour out
        return Result(**base, verdict="skipped", exit_code=exc.exit_code, reason=str(exc),
                      skip={"why": exc.why, "hint": exc.hint, "kind": type(exc).__name__})
    except LabError as exc:
        return Result(**base, verdict="error", exit_code=exc.exit_code, error=str(exc))
    except KeyboardInterrupt as exc:
        return interrupted(job, exc)
    except Exception as exc:                # a bug or a library's surprise: this run's error, not the batch's
        return Result(**base, verdict="error", exit_code=2, error=f"{type(exc).__name__}: {exc}")
    return Result(**base, verdict=report["verdict"], exit_code=EXIT_CODES[report["verdict"]],
                  error=report["error"], backend=report["backend"], duration_s=report["duration_s"],
                  outcomes={c["name"]: outcome_of(c) for c in report["checks"]})


def interrupted(job: Job, exc: BaseException) -> Result:
    return Result(run=job.run, scenario=job.scenario, artifacts=str(job.artifacts), verdict="error",
                  exit_code=130, error=f"interrupted by {signal_name(exc)}", interrupted=True, family=job.family,
                  signum=int(getattr(exc, "signum", signal.SIGINT)))


def progress_line(res: Result, label: str) -> str:
    """One line per result: "<label> pass", with what failed, the error, the skip."""
    return (f"{label} {res.verdict}"
            + (f" ({', '.join(res.failed_checks)})" if res.failed_checks else "")
            + (f" - {res.error}" if res.error else "")
            + (f" - {res.reason}" if res.reason else ""))


def run_batches(jobs: list[Job], parallel: int, progress: Callable[[str], None] = lambda s: None,
                label: Callable[[Result], str] = lambda r: f"{r.name:<25}",
                on_result: Callable[[Result], None] | None = None) -> list[Result]:
    """Run *jobs*: the parallel-safe ones *parallel* at a time, then the others one at a time;
    the results in job order. *on_result* may raise to stop the batch (e.g. a skip that would
    skip every repeat)."""
    from scenarios import get

    from . import inline

    kinds = {name: ("safe" if sc.parallel_safe else "beside" if sc.beside and parallel > 1 else "alone")
             for name in {j.scenario for j in jobs} for sc in [get(name)]}
    # the long measurements that tolerate company start first, each in a worker of its own,
    # and the parallel-safe ones share the other *parallel* workers beside them
    beside = [j for j in jobs if kinds[j.scenario] == "beside"]
    first = beside + [j for j in jobs if kinds[j.scenario] == "safe"]
    extra = 1 if beside and len(first) > len(beside) else 0        # one worker more while they run
    batches = [(b, w) for b, w in ((first, max(1, parallel) + extra),
                                   ([j for j in jobs if kinds[j.scenario] == "alone"], 1)) if b]
    results: list[Result] = []

    def take(job: Job, res: Result) -> None:
        results.append(res)
        progress(progress_line(res, label(res)))
        if on_result is not None:
            on_result(res)

    for i, (batch, width) in enumerate(batches):
        try:
            if inline.chosen(min(width, len(batch))):            # inside a VM guest: lab.inline
                inline.run_jobs(run_job, batch, take)
            else:
                from .pool import run_jobs

                run_jobs(run_job, batch, min(width, len(batch)), take)
        except KeyboardInterrupt as exc:
            stopped = set(getattr(exc, "not_run", []))
            exc.results = sorted(results, key=lambda r: r.run)
            exc.not_run = [j for j in batch if j.run in stopped] + [j for b, _ in batches[i + 1:] for j in b]
            raise
    return sorted(results, key=lambda r: r.run)


def tally(results: list[Result]) -> dict[str, int]:
    """How many passed, failed, errored (could not judge, or could not run) and were skipped."""
    return {"passed": sum(r.verdict == "pass" for r in results),
            "failed": sum(r.verdict == "fail" for r in results),
            "errors": sum(r.verdict == "error" for r in results),
            "skipped": sum(r.verdict == "skipped" for r in results)}
