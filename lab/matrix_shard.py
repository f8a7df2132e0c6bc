"""Sharding `invoke matrix` for CI fan-out: ``--shard I/N`` runs a deterministic slice of the
cells, ``--merge DIR...`` puts the shards' matrix.json files back together into the matrix.json
and matrix.md an unsharded run writes.

A cell is one kernel x backend x scenario x family (x profile: the field is there for a profile
axis; today the whole matrix runs under one); its key names each axis (``cell_key``). The unit a
shard takes is a scenario on a column with all its families (--family both: its IPv4 and IPv6
rows together). Units are ordered as an unsharded run runs them - column by column (kernel, then
backend), scenario by scenario within a column - and shard I of N takes the I-th of N contiguous
slices of that order (sizes differing by one at most). Contiguous keeps a shard's cells of one
kernel together: a shard boots each VM kernel it has cells of once.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .errors import UsageError

__all__ = ["cell_key", "parse_shard", "plan", "select", "merge_docs", "load_shards", "merge"]


def cell_key(kernel: str, backend: str, scenario: str, family: int = 4, profile: str | None = None) -> str:
    """One cell's name, every axis in it: ``KERNEL|BACKEND|SCENARIO|vFAMILY|PROFILE``."""
    return f"{kernel}|{backend}|{scenario}|v{family}|{profile or '-'}"


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``I/N`` (1 <= I <= N) -> (I, N); None for no sharding."""
    if text in (None, ""):
        return None
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise UsageError(f"--shard {text!r}: give I/N with 1 <= I <= N, e.g. --shard 2/3")
    return int(m.group(1)), int(m.group(2))


def plan(cols: list[tuple[str, str, str]], names: list[str]) -> list[tuple[str, str, str, str]]:
    """Every cell as (column, kernel, backend, scenario), in the order an unsharded run runs them; a
    scenario's address families (rows SCENARIO and SCENARIO/v6) go with it, into the same shard."""
    return [(col, kernel, backend, n) for col, kernel, backend in cols for n in names]


def select(cells: list[tuple[str, str, str, str]], shard: tuple[int, int] | None) -> list[tuple[str, str, str, str]]:
    """Shard I of N: the I-th of N contiguous, near-equal slices of *cells*."""
    if shard is None:
        return list(cells)
    i, n = shard
    total = len(cells)
    return cells[(i - 1) * total // n: i * total // n]


AXES = ("kernels", "backends", "columns", "scenarios", "families")


def load_shards(dirs: list[str | Path]) -> list[dict[str, Any]]:
    """The matrix.json of each shard directory; a usage error naming what is wrong."""
    docs = []
    for d in dirs:
        path = Path(d) / "matrix.json" if Path(d).is_dir() else Path(d)
        try:
            docs.append(json.loads(path.read_text()))
        except (OSError, ValueError) as exc:
            raise UsageError(f"--merge {d}: no readable matrix.json there ({exc.__class__.__name__})") from None
    if not docs:
        raise UsageError("--merge needs the shard directories (each with its matrix.json)")
    return docs


def merge_docs(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' cells in one matrix (without rows: the caller computes them). Every shard must
    be of the same matrix, and together they must hold every cell exactly once."""
    first = docs[0]
    for d in docs[1:]:
        for axis in AXES:
            if d.get(axis) != first.get(axis):
                raise UsageError(f"--merge: the shards are of different matrices ({axis}: {first.get(axis)} vs "
                                 f"{d.get(axis)})")
    shards = sorted((d.get("shard") or {}).get("index", 0) for d in docs)
    of = {(d.get("shard") or {}).get("of") for d in docs}
    if len(of) != 1 or None in of or shards != list(range(1, next(iter(of)) + 1)):
        raise UsageError(f"--merge: expected shards 1..N of one --shard I/N run, got {shards} of {sorted(of, key=str)}")
    cells: dict[str, dict[str, Any]] = {n: {} for n in first["scenarios"]}
    releases: dict[str, Any] = {c: None for c in first["columns"]}
    for d in sorted(docs, key=lambda d: d["shard"]["index"]):
        for n, per in d["cells"].items():
            for col, cell in per.items():
                if col in cells[n]:
                    raise UsageError(f"--merge: the cell {n} on {col} is in two shards")
                cells[n][col] = cell
        for col, rel in (d.get("releases") or {}).items():
            releases[col] = releases.get(col) or rel
    missing = [f"{n} on {c}" for n in first["scenarios"] for c in first["columns"] if c not in cells[n]]
    if missing:
        raise UsageError(f"--merge: no shard holds {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
    return {**{axis: first[axis] for axis in AXES}, "releases": releases, "cells": cells,
            "wall_s": round(max(float(d.get("wall_s") or 0) for d in docs), 3)}


def merge(dirs: list[str | Path], out: str | Path, progress=lambda s: None) -> dict[str, Any]:
    """`invoke matrix --merge DIR...`: the shards' matrix.json files as one matrix, written to *out*
    as matrix.json and matrix.md, as an unsharded run of the same cells writes them."""
    from .artifacts import check_dir
    from .matrix import finish

    merged = merge_docs(load_shards(dirs))
    out = check_dir(Path(out), "--out")
    doc = {k: merged[k] for k in ("kernels", "backends", "columns", "releases", "scenarios", "families", "cells",
                                  "wall_s")}
    doc["out"] = str(out)
    return finish(doc, out, progress)
