"""twlab tasks: `invoke --list` shows them, `invoke --help TASK` explains one.

Exit codes for every task: 0 all checks passed (or the task did its job), 1 a check failed,
2 bad input or an environment that cannot run the lab (one line says what to do).
"""

from __future__ import annotations

import json as _json
import os
import sys

from invoke import Exit

from lab.cli import adopt, guarded, task

adopt()      # a plain `invoke` parses as ./twlab does: usage errors exit 2, -h is help (lab/cli.py)

HOST_HELP = "a lab host: client, router or server"
KERNELS_HELP = ("debian-11, debian-12, debian-13, debian:VERSION (a linux-image package apt offers, e.g. "
                "debian:6.1.0-47-amd64), or a path: a kernel .deb, a directory with a kernel image and its "
                "modules, or a kernel image")


@task(name="list")
def list_scenarios(c):
    """List the scenarios, each with its one-line intent."""
    from scenarios import catalog

    for name, sc in catalog().items():
        print(f"{name:<24} {sc.intent}  [shaping: {sc.shaping}"
              + (f"; its link unless --shape: {' '.join(sc.link)}" if sc.link else "") + "]")


@task(
    iterable=["sysctl", "shape"],
    help={
        "scenario": "scenario name (see `invoke list`)",
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
        "parallel": "with --repeat or `run all`: how many labs at a time",
    },
)
@guarded
def run(c, scenario, backend="auto", sysctl=None, shape=None, artifacts=None, json=False,
        compose=None, repeat=None, parallel=None, strict_rfc=False):
    """Run one scenario (or `all`) and judge it: exit 0 pass, 1 a check failed, 2 usage or
    environment error."""
    from lab import views
    from lab.core import parse_sysctl
    from lab.runner import run_catalog, run_many, run_scenario
    from lab.shaping import parse_shapes
    from lab.verdict import batch_exit_code

    settings = [parse_sysctl(s) for s in (sysctl or [])]
    shaping = parse_shapes(shape or [])
    try:
        repeat, parallel = int(repeat or 1), int(parallel or 1)
    except ValueError:
        raise Exit("twlab: --repeat and --parallel take whole numbers of 1 or more", code=2) from None
    if repeat < 1 or parallel < 1:
        raise Exit("twlab: --repeat and --parallel take whole numbers of 1 or more", code=2)
    progress = (lambda s: print(s, file=sys.stderr)) if json else print
    options = {"strict_rfc": bool(strict_rfc)}
    if scenario == "all":
        from scenarios import catalog

        summary = run_catalog(list(catalog()), parallel=int(parallel or 3), backend=backend,
                              sysctls=settings, artifacts=artifacts, shaping=shaping,
                              compose=compose, options=options, progress=progress)
        _show(summary, json, lambda: views.catalog_table(summary))
        _exit(batch_exit_code(r["verdict"] for r in summary["scenarios"]))
        return
    if repeat > 1:
        summary = run_many(scenario, repeat, parallel, backend=backend, sysctls=settings,
                           artifacts=artifacts, shaping=shaping, compose=compose, progress=progress,
                           options=options)
        _show(summary, json, lambda: print("\n".join(views.repeat_lines(summary))))
        _exit(batch_exit_code(r["verdict"] for r in summary["runs"]))
        return
    report = run_scenario(scenario, backend=backend, sysctls=settings, artifacts=artifacts,
                          progress=progress, shaping=shaping, compose=compose, options=options)
    from lab.report import show

    _show(report, json, lambda: show(report))
    _exit_for(report)


def _show(doc: dict, as_json: bool, view) -> None:
    """report.json or a summary on stdout (--json), else its view for the terminal."""
    if as_json:
        print(_json.dumps(doc, indent=2, default=str))
    else:
        view()


def _exit(code: int, message: str | None = None) -> None:
    """The one way a task ends with a non-zero code (lab.verdict decides the code)."""
    if code:
        raise Exit(message, code=code)


def _exit_for(report: dict) -> None:
    """A run's exit code from its verdict (lab.verdict.EXIT_CODES); a run that could not be
    judged says why in one line."""
    from lab.verdict import EXIT_CODES

    code = EXIT_CODES.get(report["verdict"], 1)
    _exit(code, "twlab: " + " ".join(str(report.get("error") or report["verdict"]).split()) if code == 2 else None)


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
                      "dockerfile or debootstrap"})
@guarded
def image(c, method="auto"):
    """Build the lab host image (offline from Debian packages when no registry answers)."""
    from lab.backends.docker import client
    from lab.image import build_image

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
          "artifacts": "directory for every run's artifacts and stability.json"},
)
@guarded
def stability(c, runs=20, scenario=None, backend=None, artifacts=None):
    """Run every scenario RUNS times in a row on each backend; print how often each passed.
    Exit 0 only when every run of every scenario passed."""
    from lab.stability import run_stability
    from lab.views import stability_table
    from scenarios import catalog

    names, backends, runs = scenario or list(catalog()), backend or ["docker", "netns"], int(runs)
    results, base = run_stability(names, backends, runs, artifacts)
    stability_table(results, names, backends, runs)
    print(f"artifacts: {base}/ (stability.json)")
    _exit(0 if all(r["passed"] == runs for r in results.values()) else 1)


@task(help={"runs": "repetitions per measurement (medians are printed)",
            "backend": "measure only this backend (docker or netns); default both",
            "vm": "measure a VM cell instead: where its time goes, beside qemu booting the same kernel to a "
                  "shell and powering off", "kernel": "with --vm: the kernel (default debian-12)",
            "accel": "with --vm: auto, kvm or tcg"})
@guarded
def bench(c, runs=5, backend=None, vm=False, kernel="debian-12", accel="auto"):
    """Print medians: lab bring-up + tear-down per backend beside the raw floor, and lost-ack's
    wall time split into protocol waiting and lab overhead (--vm: a VM cell's split and its floor)."""
    if vm:
        from lab.bench.vmcell import main as vm_main

        vm_main(runs=int(runs), kernel=kernel, accel=accel)
        return
    from lab.bench import main

    main(runs=int(runs), backends=[backend] if backend else None)


@task(
    iterable=["scenario", "sysctl", "shape"],
    help={
        "scenario": "a scenario to run (repeatable, or comma-separated; default: the profile's "
                    "`scenarios`, else the whole catalog)",
        "sysctl": "HOST:KEY=VALUE set in a lab host (repeatable; wins over --from-host and the profile)",
        "from_host": "copy this machine's own TCP sysctls (the keys report.json lists) into client and "
                     "server, except those a scenario sets itself",
        "profile": "a TOML file: [sysctls.HOST] tables and [[require]] behaviours (see README)",
        "junit": "write JUnit XML here: one testcase per check, the required behaviours, skips",
        "json_out": "write the JSON summary here (it is also written as check.json in the artifacts)",
        "backend": "auto (docker when a daemon answers, else netns), docker or netns; with --kernel: "
                   "netns (auto) or docker (the VM starts a Docker engine of its own)",
        "shape": "netem on the path, as for `run` (repeatable; needs sch_netem)",
        "artifacts": "directory for every scenario's artifacts and check.json",
        "parallel": "how many labs at a time (timing-sensitive scenarios run alone afterwards; "
                    "default 3, 1 inside a VM)",
        "kernel": "host (this machine's kernel, the default) or a kernel to run the whole check in, under "
                  "qemu, in one boot: " + KERNELS_HELP,
        "accel": "with --kernel: auto (KVM when /dev/kvm can run the kernel, else TCG), kvm or tcg",
        "bisect": "exit codes for git bisect run: 0 the behaviour holds, 1 it does not, 125 this kernel "
                  "cannot be tested, 128 the command is wrong",
    },
)
@guarded
def check(c, scenario=None, sysctl=None, from_host=False, profile=None, junit=None, json_out=None,
          backend="auto", shape=None, artifacts=None, parallel=None, kernel="host", accel="auto", bisect=False):
    """Run scenarios for CI, judged by the sysctls in force and a profile's required behaviours.
    Exit 0 when all matched, 1 when something did not, 2 for usage or environment errors."""
    from pathlib import Path

    from lab.artifacts import check_output
    from lab.bisect import Guard
    from lab.ci import run_check, write_outputs
    from lab.core import parse_sysctl
    from lab.errors import UsageError
    from lab.profile import load_profile
    from lab.shaping import parse_shapes
    from lab.views import check_table
    from lab.vm.commands import check_in_vm
    from scenarios import get

    with Guard(bisect) as guard:
        names = [get(n.strip()).name for text in (scenario or []) for n in text.split(",") if n.strip()]
        settings = [parse_sysctl(s) for s in (sysctl or [])]
        shaping = parse_shapes(shape or [])
        prof = load_profile(profile) if profile else None
        try:
            parallel = int(parallel if parallel is not None else (3 if kernel == "host" else 1))
        except ValueError:
            raise UsageError("--parallel takes a whole number of 1 or more") from None
        outputs = [(flag, Path(p)) for flag, p in (("--junit", junit), ("--json-out", json_out)) if p]
        for flag, path in outputs:                      # fail before the run (creating nothing yet)
            check_output(path, flag)
        guard.kernel_stage = True
        if kernel != "host":
            summary = check_in_vm(kernel, names, sysctl or [], from_host, profile, shape or [], artifacts,
                                  parallel, backend, accel=accel)
        else:
            summary = run_check(names, sysctls=settings, from_host=from_host, profile=prof, backend=backend,
                                shaping=shaping, artifacts=artifacts, parallel=parallel, progress=print)
        write_outputs(summary, outputs)
        check_table(summary)
        for flag, path in outputs:
            print(f"{flag[2:]}: {path}")
        print(f"artifacts: {summary['artifacts']}/ (check.json, one directory per scenario)")
        guard.judge(summary)
        first = next((r["error"] for r in summary["scenarios"] if r["verdict"] == "error"), "")
        _exit(summary["exit_code"], f"twlab: no scenario could run: {first}" if summary["exit_code"] == 2 else None)


@task(
    iterable=["kernel", "scenario", "backend", "merge"],
    help={
        "kernel": "host (this machine's kernel) or a kernel run under qemu by lab.vm, one boot per column: "
                  + KERNELS_HELP + " (repeatable; default: host)",
        "shard": "I/N: run only shard I of N of the cells (kernel x backend x scenario), for CI fan-out",
        "merge": "DIR: merge these shards' outputs (repeatable) into matrix.json and matrix.md under --out",
        "accel": "for VM kernels: auto (KVM when /dev/kvm can run the kernel, else TCG), kvm or tcg",
        "scenario": "a scenario to run on each kernel (repeatable, or comma-separated; default: the "
                    "whole catalog)",
        "out": "directory for matrix.json, matrix.md and every run's artifacts",
        "backend": "auto, docker or netns (repeatable, or comma-separated: a second axis, one column per "
                   "kernel and backend; default auto, which is netns inside a VM)",
        "json": "print matrix.json to stdout instead of the table",
    },
)
@guarded
def matrix(c, kernel=None, scenario=None, out=None, backend=None, json=False, shard=None, merge=None,
           accel="auto"):
    """Run scenarios on each kernel (and backend): one table, scenario x kernel, marking where
    they differ. Each cell: the verdict and the key observed values; also written as matrix.json
    and matrix.md. --shard I/N runs a slice of the cells; --merge DIR... puts shards together."""
    from lab.matrix import parse_backends, parse_kernels, run_matrix, show
    from lab.matrix_shard import merge as merge_shards
    from lab.matrix_shard import parse_shard
    from lab.runner import default_artifacts
    from lab.verdict import batch_exit_code
    from scenarios import catalog

    progress = (lambda s: print(s, file=sys.stderr)) if json else print
    if merge:
        m = merge_shards(merge, out or default_artifacts("matrix"))
    else:
        kernels, backends, part = parse_kernels(kernel), parse_backends(backend), parse_shard(shard)
        names = [n.strip() for text in (scenario or []) for n in text.split(",") if n.strip()] or list(catalog())
        m = run_matrix(kernels, names, out=out or default_artifacts("matrix"), backend=backends,
                       progress=progress, shard=part, accel=accel)
    if json:
        print(_json.dumps(m, indent=2, default=str))
    else:
        show(m)
        if m["differs"]:
            print("kernels differ in: " + "; ".join(m["differs"]))
        print(f"matrix: {m['out']}/matrix.json, {m['out']}/matrix.md")
    _exit(batch_exit_code(cell["verdict"] for per in m["cells"].values() for cell in per.values()) if any(
        m["cells"].values()) else 0)


@task(
    iterable=["sysctl", "shape"],
    help={
        "scenario": "scenario name (see `invoke list`)",
        "kernel": "the kernel to boot under qemu: debian-12 (Debian 12's linux-image-amd64, 6.1; the "
                  "default), debian-13 (6.12: netem takes a seed), " + KERNELS_HELP.split(", ", 2)[2],
        "accel": "auto (KVM when /dev/kvm can run the kernel, else TCG, saying why), kvm or tcg",
        "sysctl": "HOST:KEY=VALUE set in a lab host before the scenario (repeatable), as for `run`",
        "shape": "netem on the path, as for `run`: SRC->DST:KEY=VALUE,... or both:... (repeatable)",
        "artifacts": "directory for report.json, the pcaps and vm-console.log (default: a new one "
                     "under ./artifacts/)",
        "json": "print report.json to stdout instead of the terminal view",
        "strict_rfc": "judge against the RFCs' letter, as for `run`",
        "timeout": "seconds before the VM is killed (default 900; Python runs ~20x slower under TCG)",
        "backend": "netns (network namespaces, the default) or docker (containers, on a Docker engine "
                   "the VM starts with the lab's host image loaded)",
    },
)
@guarded
def vm(c, scenario, kernel="debian-12", sysctl=None, shape=None, artifacts=None, json=False,
       strict_rfc=False, timeout=900, backend="netns", accel="auto"):
    """Run one scenario inside a stock distribution kernel booted under qemu (netns backend there,
    or containers with --backend docker) and print its verdict: exit 0 pass, 1 a check failed, 2
    usage or environment error. The first run downloads and prepares the kernel (cached under
    .cache/vm/); the first docker run also loads the host image into the VM's engine (cached too)."""
    from pathlib import Path

    from lab import vm as labvm
    from lab.artifacts import check_dir
    from lab.report import show
    from lab.runner import default_artifacts
    from lab.vm.commands import scenario_in_vm
    from lab.vm.task import checked_vm_args

    timeout_s, backend = checked_vm_args(scenario, kernel, sysctl, shape, timeout, backend)
    out = check_dir(Path(artifacts) if artifacts else default_artifacts(f"{scenario}-{labvm.label(kernel)}"))
    report, code = scenario_in_vm(kernel, scenario, out.resolve(), sysctl or [], shape or [], strict_rfc, timeout_s,
                                  backend, progress=lambda line: print(line, file=sys.stderr if json else sys.stdout),
                                  accel=accel)
    _show(report, json, lambda: (show(report), print(f"artifacts: {out}/ (report.json, pcaps, vm-console.log)")))
    _exit(code)


# -- every scenario is a task too: `invoke lost-ack [flags]` is `invoke run lost-ack [flags]`; after
# `invoke matrix` or `invoke check` scenario words name the scenarios to run there (lab/cli.py) ----

def _scenario_task(name: str):
    def scenario_task(c):
        run.body(c, name)
    scenario_task.__doc__ = f"= `invoke run {name}`; after matrix or check: a scenario for it"
    scenario_task.__name__ = name.replace("-", "_")
    return task(name=name)(scenario_task)


def _add_scenario_tasks() -> None:
    from lab.cli import scenario_names

    for _name in scenario_names():
        globals()[f"scenario_{_name.replace('-', '_')}"] = _scenario_task(_name)


_add_scenario_tasks()
