"""twlab tasks: `invoke --list` (or `twlab --list`) shows them, `invoke --help TASK` explains one.

They live in the package, so the installed `twlab` command carries them (lab.cli.main); a
checkout's tasks.py re-exports them for a plain `invoke`.

Exit codes for every task: 0 all checks passed (or the task did its job), 1 a check failed,
2 bad input or an environment that cannot run the lab (one line says what to do).
"""

from __future__ import annotations

import gc
import os
import sys

from invoke import Exit

from lab.ci_tasks import check, matrix, vm  # noqa: F401  (tasks of this namespace)
from lab.cli import add_scenario_tasks, guarded, task
from lab.task_common import CATALOG_PARALLEL, FAMILY_HELP, HOST_HELP, RUN_HELP, exit_for, exit_with, show_doc


@task(name="list")
def list_scenarios(c):
    """List the scenarios, each with its one-line intent."""
    from scenarios import listing

    for name, sc in listing().items():
        print(f"{name:<24} {sc['intent']}  [shaping: {sc['shaping']}"
              + (f"; its link unless --shape: {' '.join(sc['link'])}" if sc["link"] else "") + "]")


def _page_mode(json: bool) -> str:
    """On a terminal the prompt comes back while report.html is drawn; a script (stdout not a
    terminal, --json, or TWLAB_PAGE=wait) finds the page there when the run ends."""
    interactive = sys.stdout.isatty() and not json and os.environ.get("TWLAB_PAGE") != "wait"
    return "detach" if interactive else "wait"


def _counts(repeat, parallel, batch: bool) -> tuple[int, int]:
    """--repeat and --parallel as whole numbers; a batch (the catalog, or both families) runs
    CATALOG_PARALLEL labs at a time unless told otherwise, --repeat one."""
    try:
        repeat, parallel = int(repeat or 1), int(parallel or (CATALOG_PARALLEL if batch else 1))
    except ValueError:
        raise Exit("twlab: --repeat and --parallel take whole numbers of 1 or more", code=2) from None
    if repeat < 1 or parallel < 1:
        raise Exit("twlab: --repeat and --parallel take whole numbers of 1 or more", code=2)
    return repeat, parallel


@task(
    iterable=["sysctl", "shape", "stack"],
    help={
        "scenario": "scenario name (see `invoke list`)",
        "stack": "HOST=STACK: whose TCP the host's sockets use, linux (the default) or gvisor (gVisor's "
                 "netstack in a runsc sandbox; netns backend), e.g. client=gvisor (repeatable)",
        "backend": "auto (docker when a daemon answers, else netns), docker or netns",
        "sysctl": "HOST:KEY=VALUE set in a lab host before the scenario, e.g. "
                  "client:net.ipv4.tcp_max_tw_buckets=0 (repeatable)",
        "shape": "netem on the path: SRC->DST:KEY=VALUE,... or both:..., keys delay_ms, jitter_ms, "
                 "loss_pct, duplicate_pct, reorder_pct, rate_kbit (repeatable; needs sch_netem)",
        "artifacts": "directory for report.json and the pcaps (default: a new one under ./artifacts/)",
        "json": "print report.json to stdout instead of the terminal view",
        "compose": "the topology file (default: compose.yaml)",
        "repeat": "run N isolated instances and report how stable the verdict is",
        "strict_rfc": "judge against the RFCs' letter (e.g. RFC 1122's 4-minute TIME-WAIT) "
                      "instead of reporting Linux's documented deviations as such",
        "parallel": "with --repeat or `run all`: how many labs at a time (default 1 with --repeat, "
                    "3 for `run all`: time-wait-duration runs beside them from the start)",
        "student": "for students: each check's verdict alone, no expected/observed/rule lines (they answer "
                   "the lab sheet's questions); the ladder stays; recorded in report.json's options",
        "family": FAMILY_HELP,
        "mapped": "a v4-mapped client: its sockets AF_INET6, reaching the server's IPv4 address as "
                  "::ffff:a.b.c.d (lost-ack; an IPv4 run): which family's code answers from TIME-WAIT",
    },
)
@guarded
def run(c, scenario, backend="auto", sysctl=None, shape=None, artifacts=None, json=False,
        compose=None, repeat=None, parallel=None, strict_rfc=False, student=False, family="4", stack=None,
        mapped=False):
    """Run one scenario (or `all`) and judge it: exit 0 pass, 1 a check failed, 2 usage or
    environment error."""
    from lab.core import parse_sysctl
    from lab.family import one_family, parse_family
    from lab.runner import run_catalog, run_many, run_scenario
    from lab.shaping import parse_shapes
    from lab.verdict import batch_exit_code

    families = parse_family(family)
    settings = [parse_sysctl(s) for s in (sysctl or [])]
    shaping = parse_shapes(shape or [])
    repeat, parallel = _counts(repeat, parallel, batch=scenario == "all" or len(families) > 1)
    progress = (lambda s: print(s, file=sys.stderr)) if json else print
    options = {"strict_rfc": bool(strict_rfc), "student": bool(student)}
    if stack:
        from lab.gvisor import parse_stacks

        options["stacks"] = parse_stacks(stack)
    if mapped:
        if scenario == "all" or families != (4,):
            raise Exit("twlab: --mapped runs one scenario over IPv4 (the client v4-mapped): give it "
                       "with lost-ack and --family 4, or leave --mapped out", code=2)
        options["mapped"] = True
    if repeat > 1:
        one_family(family, "--repeat", "`invoke stability --family both` runs both")
    if scenario == "all" or len(families) > 1:      # a batch: the catalog, or one scenario per family
        from scenarios import catalog

        names = list(catalog()) if scenario == "all" else [scenario]
        summary = run_catalog(names, parallel=parallel, backend=backend,
                              sysctls=settings, artifacts=artifacts, shaping=shaping,
                              compose=compose, options=options, progress=progress, families=families)
        from lab import views

        show_doc(summary, json, lambda: views.catalog_table(summary))
        exit_with(batch_exit_code(r["verdict"] for r in summary["scenarios"]))
        return
    if repeat > 1:
        summary = run_many(scenario, repeat, parallel, backend=backend, sysctls=settings,
                           artifacts=artifacts, shaping=shaping, compose=compose, progress=progress,
                           options=options, family=families[0])
        from lab import views

        show_doc(summary, json, lambda: print("\n".join(views.repeat_lines(summary))))
        exit_with(batch_exit_code(r["verdict"] for r in summary["runs"]))
        return
    from lab.waiting import WaitView

    gc.freeze()         # one run, then exit: what is loaded by now is never garbage (lab.aside)
    report = run_scenario(scenario, backend=backend, sysctls=settings, artifacts=artifacts,
                          progress=progress, shaping=shaping, compose=compose, options=options,
                          family=families[0], waiting=WaitView(sys.stderr if json else sys.stdout),
                          page=_page_mode(json))
    from lab.report import show

    show_doc(report, json, lambda: show(report))
    exit_for(report)


@task(help={"run": RUN_HELP})
@guarded
def show(c, run):
    """Redraw a saved run in the terminal from its report.json: the ladder and the checks."""
    from lab.saved import show_saved

    show_saved(run)


@task(name="report", help={"run": RUN_HELP, "out": "where to write it (default: the run's report.html)"})
@guarded
def report_html(c, run, out=None):
    """(Re)write a saved run's report.html from its report.json and its pcaps."""
    from lab.saved import rewrite

    print(f"report: {rewrite(run, out)}")


@task(help={"scenario": "scenario name (see `invoke list`), or two-stacks (Linux and gVisor side by side)",
            "lang": "en (English, the default) or zh (Chinese)",
            "key": "a run's artifacts directory (two-stacks: the --out directory of its matrix): print the "
                   "instructor's key filled from that run instead",
            "out": "write it to this file instead of printing it"})
@guarded
def sheet(c, scenario, key=None, lang="en", out=None):
    """Print a scenario's lab sheet to hand out (its fill-in tables blank), or with --key DIR the
    instructor's key filled from that run, so its numbers are those of the students' kernel."""
    from lab.sheetkey import sheet_text

    print(sheet_text(scenario, key, lang, out), end="")


@task(help={"backend": "auto, docker or netns"})
@guarded
def up(c, backend="auto"):
    """Bring a lab up and leave it running to explore by hand (`invoke shell client`)."""
    from lab.handson import lab_up

    lab_up(backend, progress=print)


@task
@guarded
def down(c):
    """Remove the lab made by `invoke up`."""
    from lab.handson import lab_down

    lab_down(progress=print)


@task(help={"host": HOST_HELP})
@guarded
def shell(c, host):
    """Open a shell inside a host of the lab made by `invoke up`."""
    from lab.handson import shell_argv

    argv = shell_argv(host)
    os.execvp(argv[0], argv)


@task(help={"method": "auto (Dockerfile when the base image can be pulled, else offline), "
                      "dockerfile or debootstrap",
            "controller": "build the controller image twlab/twlab instead (twlab, its Python dependencies "
                          "and tools, from this checkout): `docker run ... twlab/twlab run lost-ack`"})
@guarded
def image(c, method="auto", controller=False):
    """Build the lab host image, or with --controller the controller image (offline from Debian
    packages when no registry answers)."""
    from lab.backends.docker import client
    from lab.image import build_image

    if controller:
        from lab.controller_image import build_controller

        print(build_controller(client(), method=method, progress=print))
        return

    print(build_image(client(), method=method, progress=print))


@task(help={"all": "also remove the lab made by `invoke up`"})
@guarded
def clean(c, all=False):  # noqa: A002
    """Remove every leftover of any lab run (namespaces, containers, networks), and only those:
    never a lab whose owner process runs, whichever registry directory this clean reads."""
    from lab.cleanup import clean as do_clean
    from lab.cleanup import live_labs
    from lab.handson import forget_if_gone

    removed = do_clean(keep=live_labs(include_persistent=not all))
    forget_if_gone()
    for line in removed.lines():
        print(f"removed {line}")
    print("nothing to remove" if not removed else f"removed {len(removed.lines())} leftovers")


@task(
    iterable=["scenario", "backend"],
    help={"runs": "runs of each scenario on each backend, one after another (default 20)",
          "scenario": "only this scenario (repeatable; default: the whole catalog)",
          "backend": "only this backend (repeatable; default: docker and netns)",
          "artifacts": "directory for every run's artifacts and stability.json",
          "family": FAMILY_HELP},
)
@guarded
def stability(c, runs=20, scenario=None, backend=None, artifacts=None, family="4"):
    """Run every scenario RUNS times in a row on each backend (and family); print how often each
    passed (a scenario this machine cannot show is skipped, as in `run all`). Exit 0 when every run
    of every scenario that ran passed, 1 when one failed, 2 when none could run."""
    from lab.family import label, parse_family
    from lab.stability import exit_code, run_stability
    from lab.views import stability_table
    from scenarios import catalog

    families = parse_family(family)
    names, backends, runs = scenario or list(catalog()), backend or ["docker", "netns"], int(runs)
    results, base = run_stability(names, backends, runs, artifacts, families=families)
    stability_table(results, [label(n, f) for n in names for f in families], backends, runs)
    print(f"artifacts: {base}/ (stability.json)")
    exit_with(exit_code(results, runs))


@task(help={"runs": "repetitions per measurement (medians are printed)",
            "backend": "measure only this backend (docker or netns); default both",
            "capacity": "instead: how many lost-ack labs run at once with every run right and every "
                        "sample gap under 10 ms (doubling, then halving the gap)",
            "limit": "with --capacity: the most labs to try (default 64)",
            "vm": "instead: where a VM cell's time goes, beside qemu booting the same kernel to a shell and "
                  "powering off, and the same run on this machine",
            "kernel": "with --vm: the kernel (default debian-12; any --kernel form)",
            "accel": "with --vm: auto, kvm or tcg",
            "json": "also write every figure (and every sample) to this JSON file"})
@guarded
def bench(c, runs=5, backend=None, capacity=False, limit=64, vm=False, kernel="debian-12",  # noqa: F811 (--vm)
          accel="auto", json=None):
    """Print medians: lab bring-up + tear-down per backend beside the raw floor, lost-ack's wall
    time split into protocol waiting and lab overhead, and whole processes; or, with --capacity,
    how many labs this machine runs at once; or, with --vm, a VM cell's split beside its floor."""
    if vm:
        from lab.bench.vmcell import main as vm_main

        vm_main(runs=int(runs), kernel=kernel, accel=accel)
        return
    if capacity:
        from lab.bench.driver import capacity_main

        try:
            limit = int(limit)
        except ValueError:
            raise Exit("twlab: --limit takes a whole number of 1 or more", code=2) from None
        capacity_main(backends=[backend] if backend else None, limit=limit, json_out=json)
        return
    from lab.bench import main

    main(runs=int(runs), backends=[backend] if backend else None, json_out=json)


add_scenario_tasks(globals(), run)
