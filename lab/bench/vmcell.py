"""`invoke bench --vm [--kernel K] [--accel A] [--runs N]`: where a VM column's time goes, beside
its floor. Each round, interleaved so drift on the machine hits all alike:

1. **The floor**: qemu boots the kernel cold to a shell (the lab's own initramfs, its mounts, stage
   2's /bin/sh), which runs ``true``, and powers off: lab.vm.run_command(KERNEL, ["true"],
   saved=False). It stays a cold boot; a column under TCG resumes the kernel's saved boot
   (lab/vm/resume.py), which one boot before the first round makes if there is none yet.
2. **A column of one scenario**, as a user starts it: ``invoke matrix --kernel K --scenario
   lost-ack --json``, one whole process timed from its start to its exit. Its split: vm.json gives
   qemu to the initramfs, the modules and mounts, the guest's command and the power-off;
   report.json the in-guest run and its timings_s (bring-up, the rest of the lab's start, the
   scenario, tear-down). What the guest's command spends beside the run is Python's start, the
   imports and the matrix's own work; what the process spends beside the VM is Invoke's start
   here, preparing the kernel and drawing the pages. **The column's overhead** is the process
   less the in-guest run: the issue's measure (at most 10 s under TCG).
3. **The same scenario on this machine** (netns), for the in-guest / host ratio (at most 3x).

Printed as medians (min-max); ``main`` returns every sample.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .common import SCENARIO, summarize

__all__ = ["main", "column_argv", "cell_split", "beyond_floor"]

GOALS = {"overhead_s": 10.0, "ratio": 3.0}         # the goals under TCG


def column_argv(kernel: str, accel: str, out: Path) -> list[str]:
    """The one-scenario matrix column, as a user types it (the checkout's invoke)."""
    return [sys.executable, str(Path(sys.executable).parent / "invoke"), "matrix", "--kernel", kernel,
            "--accel", accel, "--scenario", SCENARIO, "--out", str(out), "--json"]


def cell_split(process_s: float | None, vm: dict, report: dict) -> dict[str, float | None]:
    """One column's seconds by stage, from the process's wall time, vm.json and report.json."""
    run = float(report.get("duration_s") or 0) or None
    timings = report.get("timings_s") or {}
    has = lambda *keys: all(vm.get(k) is not None for k in keys)   # noqa: E731
    return {
        "qemu_to_initramfs_s": vm.get("kernel_s"),
        "modules_and_mounts_s": vm["boot_s"] - vm["kernel_s"] if has("boot_s", "kernel_s") else None,
        "guest_beside_the_run_s": vm["command_s"] - run if run and has("command_s") else None,
        "lab_bring_up_s": timings.get("bring_up_s"),
        "lab_observe_s": (timings["start_s"] - timings["bring_up_s"]) if {"start_s", "bring_up_s"} <= set(timings)
        else None,                          # the lab's start after bring-up: captures, sampler, faults
        "scenario_s": timings.get("scenario_s"),
        "tear_down_s": timings.get("tear_down_s"),
        "run_s": run,
        "poweroff_s": vm.get("poweroff_s"),
        "here_beside_the_vm_s": process_s - vm["total_s"] if process_s and has("total_s") else None,
        "process_s": process_s,
        "overhead_s": process_s - run if process_s and run else None,
    }


def beyond_floor(cells: list[dict], floors: list[float | None]) -> list[float]:
    """Each round's overhead less that round's floor: what the lab adds to a bare boot. TCG's
    speed on a shared machine drifts from hour to hour (the floor here: 2.7 s to 6.3 s on
    different days), and this figure moves less with it than the overhead does."""
    return [round(c["overhead_s"] - f, 3) for c, f in zip(cells, floors)
            if c.get("overhead_s") is not None and f is not None]


def _column(kernel: str, accel: str, out: Path) -> dict:
    start = time.perf_counter()
    done = subprocess.run(column_argv(kernel, accel, out), capture_output=True, text=True, timeout=1800)
    process_s = time.perf_counter() - start
    vm = _json(next(out.glob("*/vm.json"), out / "vm.json"))       # the column's directory: the kernel's key
    report = _json(next(out.glob(f"*/host/{SCENARIO}/report.json"), out / "report.json"))
    return {**cell_split(process_s, vm, report), "exit_code": done.returncode, "accel": vm.get("accel"),
            "verdict": report.get("verdict"), "boot": vm.get("saved_boot", "cold")}


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _one_round(kernel: str, accel: str, tmp: Path, i: int) -> tuple[dict, float | None, float | None]:
    from ..runner import run_scenario
    from ..vm import run_command

    floor_out, host_out = tmp / f"floor-{i}", tmp / f"host-{i}"
    run_command(kernel, ["true"], floor_out, progress=lambda s: None, timeout_s=600, accel=accel, saved=False)
    floor = _json(floor_out / "vm.json").get("total_s")
    cell = _column(kernel, accel, tmp / f"column-{i}")
    host = run_scenario(SCENARIO, backend="netns", artifacts=host_out, progress=lambda s: None)
    return cell, floor, float(host.get("duration_s") or 0) or None


def main(runs: int = 3, kernel: str = "debian-12", accel: str = "auto") -> dict[str, Any]:
    """Measure, print and return the split of a VM column beside its floor and the host's run."""
    from ..vm import prepare, run_command
    from ..vm.accel import check

    check(accel)
    prepare(kernel, print)
    tmp = Path(tempfile.mkdtemp(prefix="twlab-bench-vm-"))
    cells, floors, hosts = [], [], []
    try:
        run_command(kernel, ["true"], tmp / "saved-boot", progress=lambda s: None, timeout_s=600, accel=accel)
        made = _json(tmp / "saved-boot" / "vm.json")
        print(f"bench --vm: {kernel}'s boot before the rounds: {made.get('saved_boot', 'cold')} "
              f"({made.get('saved_boot_why', '')})")
        for i in range(max(1, int(runs))):
            print(f"bench --vm: round {i + 1}/{runs}: the floor, a {SCENARIO} column in {kernel}, {SCENARIO} here")
            cell, floor, host = _one_round(kernel, accel, tmp, i)
            cells.append(cell)
            floors.append(floor)
            hosts.append(host)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"kernel": kernel, "accel": sorted({c["accel"] for c in cells if c.get("accel")}),
              "verdicts": [c["verdict"] for c in cells], "boots": [c.get("boot") for c in cells],
              "floor_s": summarize(floors), "host_run_s": summarize(hosts),
              "split": {k: summarize([c[k] for c in cells]) for k in cells[0] if k.endswith("_s")},
              "overhead_beyond_floor_s": summarize(beyond_floor(cells, floors))}
    _print(result)
    return result


def _print(result: dict[str, Any]) -> None:
    def fmt(s: dict) -> str:
        if s["median"] is None:
            return "-"
        return f"{s['median']:7.2f} s" + (f"  ({s['min']:.2f}-{s['max']:.2f})" if s["n"] > 1 else "")

    print(f"\na {SCENARIO} column in {result['kernel']} under {'/'.join(result['accel']).upper()} "
          f"(verdicts: {', '.join(map(str, result['verdicts']))}; boots: {', '.join(map(str, result['boots']))}): "
          "medians (min-max)")
    for key, stats in result["split"].items():
        print(f"  {key.removesuffix('_s').replace('_', ' '):<24} {fmt(stats)}")
    print(f"  {'floor (cold boot to a shell, power off)':<36} {fmt(result['floor_s'])}")
    print(f"  {SCENARIO + ' on this machine':<36} {fmt(result['host_run_s'])}")
    run, host = result["split"]["run_s"]["median"], result["host_run_s"]["median"]
    overhead = result["split"]["overhead_s"]["median"]
    if overhead is not None:
        print(f"  the column's overhead beyond its run: {overhead:.1f} s (goal: at most {GOALS['overhead_s']:g} s)")
    if result["overhead_beyond_floor_s"]["median"] is not None:
        print(f"  ... of which beyond the floor (each round's overhead less its floor): "
              f"{fmt(result['overhead_beyond_floor_s']).strip()}")
    if run and host:
        print(f"  in-guest run / this machine's: {run / host:.1f}x (goal: at most {GOALS['ratio']:g}x)")
