"""The tasks that run the catalog for CI and on other kernels: check, matrix and vm (re-exported
by lab/tasks.py, where the others live)."""

from __future__ import annotations

import json as _json
import sys

from lab.cli import guarded, task
from lab.task_common import CATALOG_PARALLEL, FAMILY_HELP, exit_with, show_doc

KERNELS_HELP = ("debian-11, debian-12, debian-13, debian:VERSION (a linux-image package apt offers, e.g. "
                "debian:6.1.0-47-amd64), or a path: a kernel .deb, a directory with a kernel image and its "
                "modules, or a kernel image")
ACCEL_HELP = "auto (KVM when /dev/kvm can run the kernel, else TCG, saying why), kvm or tcg"


@task(
    iterable=["scenario", "sysctl", "shape", "stack"],
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
        "family": FAMILY_HELP,
        "accel": "with --kernel: " + ACCEL_HELP,
        "bisect": "exit codes for git bisect run: 0 the behaviour holds, 1 it does not, 125 this kernel "
                  "cannot be tested, 128 the command is wrong",
        "stack": "HOST=STACK, as for `run`: linux (default) or gvisor, e.g. client=gvisor (repeatable; "
                 "netns backend, any kernel); a scenario not judged from the wire is skipped",
    },
)
@guarded
def check(c, scenario=None, sysctl=None, from_host=False, profile=None, junit=None, json_out=None,
          backend="auto", shape=None, artifacts=None, parallel=None, kernel="host", family="4", accel="auto",
          bisect=False, stack=None):
    """Run scenarios for CI, judged by the sysctls in force and a profile's required behaviours.
    Exit 0 when all matched, 1 when something did not, 2 for usage or environment errors (with
    --bisect: 0, 1, 125 or 128 for git bisect run)."""
    from lab.bisect import Guard

    with Guard(bisect) as guard:
        _check(scenario, sysctl, from_host, profile, junit, json_out, backend, shape, artifacts, parallel, kernel,
               family, accel, guard, stack)


def _check(scenario, sysctl, from_host, profile, junit, json_out, backend, shape, artifacts, parallel, kernel,
           family, accel, guard, stack):
    from pathlib import Path

    from lab.artifacts import check_output
    from lab.ci import run_check, write_outputs
    from lab.core import parse_sysctl
    from lab.errors import UsageError
    from lab.family import parse_family
    from lab.profile import load_profile
    from lab.shaping import parse_shapes
    from lab.views import check_table
    from lab.vm.commands import check_in_vm
    from scenarios import get

    families = parse_family(family)
    names = [get(n.strip()).name for text in (scenario or []) for n in text.split(",") if n.strip()]
    settings = [parse_sysctl(s) for s in (sysctl or [])]
    shaping = parse_shapes(shape or [])
    prof = load_profile(profile) if profile else None
    try:
        parallel = int(parallel if parallel is not None else (CATALOG_PARALLEL if kernel == "host" else 1))
    except ValueError:
        raise UsageError("--parallel takes a whole number of 1 or more") from None
    outputs = [(flag, Path(p)) for flag, p in (("--junit", junit), ("--json-out", json_out)) if p]
    for flag, path in outputs:                      # fail before the run (creating nothing yet)
        check_output(path, flag)
    from lab.vm.accel import check as check_accel

    check_accel(accel)
    guard.kernel_stage = True

    from lab.gvisor import parse_stacks

    stacks = parse_stacks(stack or [])
    if kernel != "host":
        from lab.paths import require_checkout

        require_checkout("`invoke check --kernel`")          # the guest runs the checkout's .venv
        summary = check_in_vm(kernel, names, sysctl or [], from_host, profile, shape or [], artifacts,
                              parallel, backend, family=family, accel=accel, stacks=stacks)
    else:
        summary = run_check(names, sysctls=settings, from_host=from_host, profile=prof, backend=backend,
                            shaping=shaping, artifacts=artifacts, parallel=parallel, progress=print,
                            families=families, stacks=stacks)
    write_outputs(summary, outputs)
    check_table(summary)
    for flag, path in outputs:
        print(f"{flag[2:]}: {path}")
    print(f"artifacts: {summary['artifacts']}/ (check.json, one directory per scenario)")
    guard.judge(summary)
    first = next((r["error"] for r in summary["scenarios"] if r["verdict"] == "error"), "")
    exit_with(summary["exit_code"], f"twlab: no scenario could run: {first}" if summary["exit_code"] == 2 else None)


@task(
    iterable=["kernel", "scenario", "backend", "merge", "stack"],
    help={
        "kernel": "host (this machine's kernel) or a kernel run under qemu by lab.vm, one boot per column: "
                  + KERNELS_HELP + " (repeatable; default: host)",
        "shard": "I/N: run only shard I of N of the cells (kernel x backend x scenario, each with its "
                 "families), for CI fan-out",
        "merge": "DIR: merge these shards' outputs (repeatable) into matrix.json and matrix.md under --out",
        "accel": "for VM kernels: " + ACCEL_HELP,
        "stack": "linux (default), gvisor (both ends in gVisor's netstack) or HOST=STACK[;HOST=STACK], "
                 "e.g. client=gvisor (repeatable: a column per stack, the conformance table; netns "
                 "backend, on any kernel)",
        "scenario": "a scenario to run on each kernel (repeatable, or comma-separated; default: the "
                    "whole catalog)",
        "out": "directory for matrix.json, matrix.md and every run's artifacts",
        "backend": "auto, docker or netns (repeatable, or comma-separated: a second axis, one column per "
                   "kernel and backend; default auto, which is netns inside a VM)",
        "json": "print matrix.json to stdout instead of the table",
        "family": FAMILY_HELP + "; a row per scenario and family",
    },
)
@guarded
def matrix(c, kernel=None, scenario=None, out=None, backend=None, json=False, family="4", shard=None, merge=None,
           accel="auto", stack=None):
    """Run scenarios on each kernel (and backend): one table, scenario x kernel, marking where
    they differ. Each cell: the verdict and the key observed values; also written as matrix.json
    and matrix.md. --shard I/N runs a slice of the cells; --merge DIR... puts shards together."""
    from lab.matrix import exit_code, show
    from lab.matrix_view import axis_of

    progress = (lambda s: print(s, file=sys.stderr)) if json else print
    m = _matrix(kernel, scenario, out, backend, family, shard, merge, accel, progress, stack)
    if json:
        print(_json.dumps(m, indent=2, default=str))
    else:
        show(m)
        if m["differs"]:
            print(f"{'kernels' if axis_of(m) == 'kernel' else 'columns'} differ in: " + "; ".join(m["differs"]))
        print(f"matrix: {m['out']}/matrix.json, {m['out']}/matrix.md")
    exit_with(exit_code(m))


def _matrix(kernel, scenario, out, backend, family, shard, merge, accel, progress, stack) -> dict:
    """The matrix `invoke matrix` shows: the shards merged (--merge), or run here."""
    from lab.family import parse_family
    from lab.matrix import parse_backends, parse_kernels, parse_stack_columns, run_matrix
    from lab.matrix_shard import merge as merge_shards
    from lab.matrix_shard import parse_shard
    from lab.runner import default_artifacts
    from scenarios import catalog

    if merge:
        return merge_shards(merge, out or default_artifacts("matrix"), progress)
    families = parse_family(family)
    from lab.vm.accel import check as check_accel

    kernels, backends, part = parse_kernels(kernel), parse_backends(backend), parse_shard(shard)
    check_accel(accel)
    parse_stack_columns(stack)                                  # a bad --stack is refused before any run
    if kernels != ["host"]:
        from lab.paths import require_checkout

        require_checkout("`invoke matrix --kernel`")         # the guests run the checkout's .venv
    names = [n.strip() for text in (scenario or []) for n in text.split(",") if n.strip()] or list(catalog())
    return run_matrix(kernels, names, out=out or default_artifacts("matrix"), backend=backends,
                      progress=progress, families=families, shard=part, accel=accel, stacks=stack)


@task(
    iterable=["sysctl", "shape", "stack"],
    help={
        "scenario": "scenario name (see `invoke list`)",
        "kernel": "the kernel to boot under qemu: debian-12 (Debian 12's linux-image-amd64, 6.1; the "
                  "default), debian-13 (6.12: netem takes a seed), " + KERNELS_HELP.split(", ", 2)[2],
        "accel": ACCEL_HELP,
        "sysctl": "HOST:KEY=VALUE set in a lab host before the scenario (repeatable), as for `run`",
        "shape": "netem on the path, as for `run`: SRC->DST:KEY=VALUE,... or both:... (repeatable)",
        "artifacts": "directory for report.json, the pcaps and vm-console.log (default: a new one "
                     "under ./artifacts/)",
        "json": "print report.json to stdout instead of the terminal view",
        "strict_rfc": "judge against the RFCs' letter, as for `run`",
        "timeout": "seconds before the VM is killed (default 900; Python runs ~20x slower under TCG)",
        "backend": "netns (network namespaces, the default) or docker (containers, on a Docker engine "
                   "the VM starts with the lab's host image loaded)",
        "family": "the address family of the run's traffic: 4 (IPv4, the default) or 6 (IPv6)",
        "stack": "HOST=STACK, as for `run`: linux (default) or gvisor, e.g. server=gvisor (repeatable; "
                 "netns backend; runsc from this machine, the root filesystem exported here)",
    },
)
@guarded
def vm(c, scenario, kernel="debian-12", sysctl=None, shape=None, artifacts=None, json=False,
       strict_rfc=False, timeout=900, backend="netns", family="4", accel="auto", stack=None):
    """Run one scenario inside a stock distribution kernel booted under qemu (netns backend there,
    or containers with --backend docker) and print its verdict: exit 0 pass, 1 a check failed, 2
    usage or environment error. The first run downloads and prepares the kernel (cached under
    .cache/vm/); the first docker run also loads the host image into the VM's engine (cached too)."""
    from pathlib import Path

    from lab import vm as labvm
    from lab.artifacts import check_dir
    from lab.family import label, one_family
    from lab.paths import require_checkout
    from lab.report import show
    from lab.runner import default_artifacts
    from lab.vm.commands import scenario_in_vm
    from lab.vm.task import checked_vm_args

    fam = one_family(family, "`invoke vm`", "`invoke matrix --family both --kernel ...` runs both")
    timeout_s, backend = checked_vm_args(scenario, kernel, sysctl, shape, timeout, backend, accel)
    from lab.gvisor import parse_stacks

    stacks = parse_stacks(stack or [])
    require_checkout("`invoke vm`")                   # the guest runs the checkout's .venv
    name = label(scenario, fam).replace("/", "-")
    out = check_dir(Path(artifacts) if artifacts else default_artifacts(f"{name}-{labvm.label(kernel)}")).resolve()
    report, code = scenario_in_vm(kernel, scenario, out, sysctl or [], shape or [], strict_rfc, timeout_s,
                                  backend, progress=lambda line: print(line, file=sys.stderr if json else sys.stdout),
                                  family=fam, accel=accel, stacks=stacks)
    show_doc(report, json, lambda: (show(report), print(f"artifacts: {out}/ (report.json, pcaps, vm-console.log)")))
    exit_with(code)


# every scenario is a task too: `invoke lost-ack [flags]` is `invoke run lost-ack [flags]` (lab/cli.py)
