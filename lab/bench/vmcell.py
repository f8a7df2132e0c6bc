"""`invoke bench --vm [--kernel K] [--accel A] [--runs N]`: where a VM cell's time goes, beside its
floor. Each round, interleaved so drift on the machine hits all alike:

1. **The floor**: qemu boots the kernel to a shell (the lab's own initramfs, its mounts, stage 2's
   /bin/sh), which runs ``true``, and powers off: lab.vm.run_command(KERNEL, ["true"]).
2. **A VM cell**, in one boot: the guest's shell times ``python -c pass`` (Python's start),
   ``python -c "import lab.tasks"`` (the lab's imports) and ``invoke run lost-ack --backend netns``
   (the whole command); the run's report.json gives the scenario's own wall time and its
   timings_s (bring-up, the rest of the lab's start, the scenario, tear-down); vm.json gives qemu to the
   initramfs (kernel), to stage 2 (modules and mounts) and the power-off.
3. **The same scenario on this machine** (netns), for the in-guest / host ratio.

Printed as medians (min-max); ``main`` returns every sample.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .common import SCENARIO, summarize

__all__ = ["main", "guest_script", "cell_split"]

STAMP = "@@twlab-bench "


def guest_script(out: Path) -> str:
    """The shell the guest runs: each stage stamped (monotonic seconds) on stdout."""
    py = ".venv/bin/python"
    return "; ".join([
        f"s() {{ echo \"{STAMP}$1 $(cut -d' ' -f1 /proc/uptime)\"; }}",
        "s begin", f"{py} -c pass", "s python",
        f"{py} -c 'import lab.tasks, scenarios'", "s imports",
        f"{py} .venv/bin/invoke run {SCENARIO} --backend netns --json --artifacts {out} >/dev/null", "s run",
    ])


def cell_split(stdout: str, vm: dict, report: dict) -> dict[str, float | None]:
    """One VM cell's seconds by stage, from the guest's stamps, vm.json and report.json."""
    t = {}
    for line in stdout.splitlines():
        if line.startswith(STAMP):
            name, value = line[len(STAMP):].split()
            t[name] = float(value)
    run = float(report.get("duration_s") or 0) or None
    timings = report.get("timings_s") or {}
    command = t["run"] - t["imports"] if {"run", "imports"} <= set(t) else None
    return {
        "qemu_to_initramfs_s": vm.get("kernel_s"),
        "modules_and_mounts_s": (vm["boot_s"] - vm["kernel_s"]) if {"boot_s", "kernel_s"} <= set(vm) else None,
        "python_start_s": t["python"] - t["begin"] if {"python", "begin"} <= set(t) else None,
        "imports_s": t["imports"] - t["python"] if {"imports", "python"} <= set(t) else None,
        "invoke_and_report_s": command - run if command is not None and run else None,
        "lab_bring_up_s": timings.get("bring_up_s"),
        "lab_observe_s": (timings["start_s"] - timings["bring_up_s"]) if {"start_s", "bring_up_s"} <= set(timings)
        else None,                          # the lab's start after bring-up: captures, sampler, faults
        "scenario_s": timings.get("scenario_s"),
        "tear_down_s": timings.get("tear_down_s"),
        "run_s": run,
        "poweroff_s": vm.get("poweroff_s"),
        "total_s": vm.get("total_s"),
        "overhead_s": vm["total_s"] - run if run and vm.get("total_s") else None,
    }


def _one_round(kernel: str, accel: str, tmp: Path, i: int) -> tuple[dict, float | None, float | None]:
    from ..runner import run_scenario
    from ..vm import run_command

    floor_out, cell_out, host_out = tmp / f"floor-{i}", tmp / f"cell-{i}", tmp / f"host-{i}"
    run_command(kernel, ["true"], floor_out, progress=lambda s: None, timeout_s=600, accel=accel)
    floor = json.loads((floor_out / "vm.json").read_text()).get("total_s")
    run_dir = cell_out / "run"
    code, stdout = run_command(kernel, ["/bin/sh", "-c", guest_script(run_dir)], cell_out,
                               progress=lambda s: None, timeout_s=1800, accel=accel)
    vm = json.loads((cell_out / "vm.json").read_text())
    try:
        report = json.loads((run_dir / "report.json").read_text())
    except (OSError, ValueError):
        report = {}
    split = {**cell_split(stdout, vm, report), "exit_code": code, "accel": vm.get("accel"),
             "verdict": report.get("verdict")}
    host = run_scenario(SCENARIO, backend="netns", artifacts=host_out, progress=lambda s: None)
    return split, floor, float(host.get("duration_s") or 0) or None


def main(runs: int = 3, kernel: str = "debian-12", accel: str = "auto") -> dict[str, Any]:
    """Measure, print and return the split of a VM cell beside its floor and the host's run."""
    from ..vm import prepare
    from ..vm.accel import check

    check(accel)
    prepare(kernel, print)
    tmp = Path(tempfile.mkdtemp(prefix="twlab-bench-vm-"))
    cells, floors, hosts = [], [], []
    try:
        for i in range(max(1, int(runs))):
            print(f"bench --vm: round {i + 1}/{runs}: the floor, a {SCENARIO} cell in {kernel}, {SCENARIO} here")
            cell, floor, host = _one_round(kernel, accel, tmp, i)
            cells.append(cell)
            floors.append(floor)
            hosts.append(host)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"kernel": kernel, "accel": sorted({c["accel"] for c in cells if c.get("accel")}),
              "verdicts": [c["verdict"] for c in cells], "floor_s": summarize(floors), "host_run_s": summarize(hosts),
              "split": {k: summarize([c[k] for c in cells]) for k in cells[0] if k.endswith("_s")}}
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    def fmt(s: dict) -> str:
        if s["median"] is None:
            return "-"
        return f"{s['median']:7.2f} s" + (f"  ({s['min']:.2f}-{s['max']:.2f})" if s["n"] > 1 else "")

    print(f"\na {SCENARIO} cell in {result['kernel']} under {'/'.join(result['accel']).upper()} "
          f"(verdicts: {', '.join(map(str, result['verdicts']))}): medians (min-max)")
    for key, stats in result["split"].items():
        print(f"  {key.removesuffix('_s').replace('_', ' '):<24} {fmt(stats)}")
    print(f"  {'floor (boot to a shell, power off)':<36} {fmt(result['floor_s'])}")
    print(f"  {SCENARIO + ' on this machine':<36} {fmt(result['host_run_s'])}")
    run, host = result["split"]["run_s"]["median"], result["host_run_s"]["median"]
    if run and host:
        print(f"  in-guest run / this machine's: {run / host:.1f}x")
