"""A whole matrix column in one boot: the guest runs ``invoke matrix --kernel host`` over the
column's scenarios (its kernel is the guest's), and its matrix.json's cells become the column's.

    cells, release = column_in_vm(lab.vm, "debian-12", "netns", ["lost-ack", "tw-buckets"], out, print)

A VM that cannot be booted, or a guest that leaves no matrix.json, makes every cell of the column
an error cell saying why (never a made-up result)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["column_in_vm", "GUEST_COLUMN"]

GUEST_COLUMN = "host"          # inside the VM the guest's own kernel is the matrix's "host"


def column_in_vm(vm: Any, kernel: str, backend: str, names: list[str], out: Path,
                 progress: Callable[[str], None], error_cell: Callable[[str], dict],
                 accel: str = "auto", families: tuple[int, ...] = (4,),
                 stacks: dict[str, str] | None = None) -> tuple[dict[str, dict], str | None]:
    """Each scenario of *names* over each of *families* on *kernel* with *backend* (auto is netns
    there) and *stacks* (each end's TCP stack, lab.gvisor), in one boot: {row: cell} (a row is
    SCENARIO, or SCENARIO/v6) and the guest's kernel release."""
    from ..artifacts import ensure_dir
    from ..family import label
    from ..gvisor import for_vm
    from ..saved import pages_drawn_after

    family = "both" if set(families) == {4, 6} else str(families[0])
    rows = [label(n, f) for n in names for f in families]

    out = out.resolve()                 # shared with the guest at the same absolute path
    backend = "netns" if backend == "auto" else backend
    args = ["matrix", "--kernel", GUEST_COLUMN, "--backend", backend, "--out", str(out), "--json",
            "--family", family,
            *[a for n in names for a in ("--scenario", n)]]
    if stacks:                               # one column: its stacks as one --stack (lab.matrix)
        args += ["--stack", ";".join(f"{h}={s}" for h, s in stacks.items())]
    try:
        env = for_vm(stacks or {}, backend, progress)
        ensure_dir(out)
        with pages_drawn_after(out, progress):              # matplotlib loads while the VM runs
            code, output = _run(vm, kernel, args, out, progress, backend == "docker", accel, env)
    except KeyboardInterrupt:
        raise
    except Exception as exc:                                    # noqa: BLE001 - LabError or a bug: say it
        return {r: error_cell(f"{kernel}: {exc}") for r in rows}, None
    try:
        guest = json.loads((out / "matrix.json").read_text())
    except (OSError, ValueError):
        last = next((ln for ln in reversed(str(output or "").splitlines()) if ln.strip()), "no output")
        return {r: error_cell(f"{kernel}: the column left no matrix.json (exit {code}): {last}") for r in rows}, None
    cells = {}
    for r in rows:
        cell = (guest.get("cells", {}).get(r) or {}).get(GUEST_COLUMN)
        cells[r] = {**cell, "exit_code": code} if cell else error_cell(f"{kernel}: no cell for {r} (exit {code})")
    vm_doc = _vm_json(out)
    if vm_doc:
        for cell in cells.values():
            cell.setdefault("accel", vm_doc.get("accel"))
    return cells, (guest.get("releases") or {}).get(GUEST_COLUMN)


def _run(vm: Any, kernel: str, args: list[str], out: Path, progress, docker: bool, accel: str, env: dict):
    return vm.run(kernel, args, out, progress, docker=docker, accel=accel, timeout_s=7200, env=env or None)


def _vm_json(out: Path) -> dict:
    try:
        return json.loads((out / "vm.json").read_text())
    except (OSError, ValueError):
        return {}
