"""The matrix as text: matrix.md (markdown) and the terminal's table (rich). lab.matrix makes it."""

from __future__ import annotations

from typing import Any

__all__ = ["markdown", "show"]


def _columns(matrix: dict[str, Any]) -> list[str]:
    """The matrix's columns: kernels, or KERNEL/BACKEND when it ran several backends."""
    return matrix.get("columns") or matrix["kernels"]


def _header(matrix: dict[str, Any], kernel: str) -> str:
    rel = matrix.get("releases", {}).get(kernel)
    return f"{kernel} ({rel})" if rel and rel != kernel else kernel


def markdown(matrix: dict[str, Any]) -> str:
    kernels = _columns(matrix)
    lines = ["# twlab matrix", "",
             f"Scenarios {', '.join(matrix['scenarios'])} on {', '.join(_header(matrix, k) for k in kernels)}. "
             "**differs** marks a row whose observations are not the same on every kernel that ran it "
             "(within each value's tolerance); `-` is not observed (or a counter that did not move).", "",
             "| scenario | observed | " + " | ".join(_header(matrix, k) for k in kernels) + " | differs |",
             "|---|---|" + "---|" * len(kernels) + "---|"]

    def esc(s: str) -> str:
        return s.replace("|", "\\|")

    for r in matrix["rows"]:
        cells = [esc(r["cells"][k]) for k in kernels]
        if r["differs"]:
            cells = [f"**{c}**" for c in cells]
        lines.append(f"| {r['scenario']} | {esc(r['what'])} | " + " | ".join(cells)
                     + f" | {'**differs**' if r['differs'] else ''} |")
    return "\n".join(lines) + "\n"


def axis_of(matrix: dict[str, Any]) -> str:
    """What the columns are: "kernel", "kernel x backend", "kernel x stack" (--stack, several)."""
    axis = "kernel x backend" if len(matrix.get("backends") or []) > 1 else "kernel"
    return axis + (" x stack" if len(matrix.get("stacks") or {}) > 1 else "")


def show(matrix: dict[str, Any]) -> None:
    from rich.table import Table

    from .report import terminal_console

    axis = axis_of(matrix)
    table = Table(title=f"twlab matrix: scenario x {axis}", show_lines=False)
    table.add_column("scenario")
    table.add_column("observed")
    for k in _columns(matrix):
        table.add_column(_header(matrix, k), overflow="fold")
    table.add_column("differs")
    last = None
    for r in matrix["rows"]:
        if last is not None and r["scenario"] != last:
            table.add_section()
        colour = {True: "bold yellow"}.get(r["differs"])
        cells = []
        for k in _columns(matrix):
            text = r["cells"][k]
            if r["what"] == "verdict":
                style = "green" if text.startswith("pass") else "red" if text.startswith("fail") else "yellow"
                text = f"[{style}]{_esc(text)}[/]"
            else:
                text = _esc(text)
            cells.append(f"[{colour}]{text}[/]" if colour else text)
        table.add_row(r["scenario"] if r["scenario"] != last else "", _esc(r["what"]), *cells,
                      "[bold yellow]differs[/]" if r["differs"] else "")
        last = r["scenario"]
    terminal_console().print(table)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
