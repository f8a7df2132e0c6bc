"""`invoke matrix`'s table in the terminal (rich); matrix.md is lab.matrix.markdown."""

from __future__ import annotations

from typing import Any

__all__ = ["show"]


def show(matrix: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from .matrix import _columns, _header

    axis = "kernel x backend" if len(matrix.get("backends") or []) > 1 else "kernel"
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
    Console().print(table)


def _esc(text: str) -> str:
    from rich.markup import escape

    return escape(text)
