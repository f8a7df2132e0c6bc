"""The report's plots, drawn by matplotlib (its SVG backend, imported only here): the TIME-WAIT
timer's remaining time against time, the retransmission backoff between FIN copies, and a
scenario's distribution (lossy-link's close times) as a CDF per class.

Each function returns (svg, text alternative) or None when the run holds nothing to plot.
"""

from __future__ import annotations

import io
import re
from html import escape
from typing import TYPE_CHECKING

from ..records import TimerSample

if TYPE_CHECKING:
    from ..ladder import Row

__all__ = ["timer_plot", "backoff_plot", "distribution_plot"]

MAX_POINTS = 240          # per series: the samples kept (every restart, the rest evenly)
_COLOURS = ("#c0392b", "#1f6fb2", "#0a8a72", "#6a3d9a", "#b5651d", "#555555")


def timer_plot(report: dict, keys: dict[str, set[str]], t0: float, rows: list[Row], ident: str):
    """TIME-WAIT's timer (sock_diag's "timewait" timer: TIME_WAIT, and an orphan's FIN_WAIT2) of
    the sockets in *keys* (host -> 4-tuple keys), remaining time against time, with the FINs that
    reached each host: every restart after a FIN is a tooth of the saw."""
    series = {}
    for host, raw in (report.get("timer_samples") or {}).items():
        for s in (TimerSample.of(x) for x in raw):
            if s.timer == "timewait" and (not keys.get(host) or s.key in keys[host]):
                series.setdefault((host, s.key), []).append((s.asked - t0, s.expires_ms / 1000))
    if not series:
        return None
    fig, ax = _figure(8.2, 3.4)
    for i, ((host, key), pts) in enumerate(sorted(series.items())):
        xs, ys = zip(*_thin(pts))
        ax.plot(xs, ys, drawstyle="steps-post", lw=1.4, color=_COLOURS[i % len(_COLOURS)], label=f"{host} {key}")
    fins = [r for r in rows if r.kind == "segment" and "FIN" in r.flags and r.arrival is not None]
    for j, r in enumerate(fins):
        ax.axvline(r.arrival, color="#888", lw=0.8, ls=":", label="a FIN arrives" if j == 0 else None)
    ax.set_xlabel("time (s, from the first segment of the ladder)")
    ax.set_ylabel("time left (s)")
    ax.legend(fontsize=8, loc="best")
    ax.grid(alpha=0.3)
    n = sum(len(v) for v in series.values())
    restarts = sum(1 for pts in series.values() for a, b in zip(pts, pts[1:]) if b[1] > a[1] + 0.05)
    alt = (f"TIME-WAIT timer, time left against time, from {n} sock_diag samples of {len(series)} socket(s); "
           f"it restarts {restarts} time(s) (the teeth of the saw), each after a FIN arrived (dotted lines); "
           f"values from {min(y for v in series.values() for _, y in v):.3f} s to "
           f"{max(y for v in series.values() for _, y in v):.3f} s.")
    return _svg(fig, ident, "TIME-WAIT timer against time", alt), alt


def backoff_plot(report: dict, keys: dict[str, set[str]], t0: float, rows: list[Row], ident: str):
    """The gaps between the copies of each FIN its sender's capture holds (left), and the sender's
    retransmission timer as sock_diag saw it (right: each restart at the doubled RTO)."""
    copies: dict[tuple, list[float]] = {}
    for r in rows:
        if r.kind == "segment" and r.host != "router" and "FIN" in r.flags:
            copies.setdefault((r.host, r.segment.get("seq")), []).append(r.t)
    gaps = {k: [round((b - a) * 1000, 1) for a, b in zip(ts, ts[1:])] for k, ts in copies.items() if len(ts) > 1}
    if not gaps:
        return None
    senders = {h for h, _ in gaps}
    on = [(TimerSample.of(x)) for h in senders for x in (report.get("timer_samples") or {}).get(h, [])]
    on = [s for s in on if s.timer == "on" and s.state in ("LAST_ACK", "FIN_WAIT1", "CLOSING")
          and (not any(keys.values()) or any(s.key in keys.get(h, set()) for h in senders))]
    fig, axes = _figure(8.2, 3.4, ncols=2 if on else 1)
    bars = axes[0] if on else axes
    for i, ((host, _seq), g) in enumerate(sorted(gaps.items())):
        xs = [f"{n + 1}\u2192{n + 2}" for n in range(len(g))]
        drawn = bars.bar(xs, g, color=_COLOURS[(i + 1) % len(_COLOURS)], label=f"{host}'s FIN")
        bars.bar_label(drawn, fmt="%.0f", fontsize=8)
    bars.set_xlabel("between copies")
    bars.set_ylabel("gap (ms)")
    bars.legend(fontsize=8)
    if on:
        timer = axes[1]
        pts = _thin([(s.asked - t0, s.expires_ms) for s in on])
        timer.plot(*zip(*pts), drawstyle="steps-post", lw=1.2, color="#1f6fb2")
        timer.set_xlabel("time (s)")
        timer.set_ylabel("retransmission timer left (ms)")
        timer.grid(alpha=0.3)
    alt = "; ".join(f"{h}'s FIN sent {len(g) + 1} times, gaps {', '.join(f'{x:g}' for x in g)} ms"
                    for (h, _), g in sorted(gaps.items()))
    alt += f"; its retransmission timer sampled {len(on)} times" if on else "; its retransmission timer was not sampled"
    return _svg(fig, ident, "Retransmission backoff between FIN copies", alt), alt


def distribution_plot(dist: dict, ident: str):
    """A CDF per class: *dist* = {"title", "xlabel", "classes": {label: [values]}}."""
    classes = {k: sorted(v for v in vs if v is not None) for k, vs in dist.get("classes", {}).items()}
    classes = {k: v for k, v in classes.items() if v}
    if not classes:
        return None
    fig, ax = _figure(8.2, 3.8)
    for i, (label, values) in enumerate(classes.items()):
        ax.ecdf(values, label=f"{label} (n={len(values)})", color=_COLOURS[i % len(_COLOURS)], lw=1.5)
    from matplotlib.ticker import FuncFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))            # 100, not 10^2
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda x, _: f"{x:g}" if f"{x:g}"[0] in "25" else ""))
    ax.set_xlabel(dist.get("xlabel", ""))
    ax.set_ylabel("fraction of closes")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="lower right")
    alt = f"{dist.get('title', 'distribution')}, cumulative, per class: " + "; ".join(
        f"{k}: n={len(v)}, median {v[len(v) // 2]:g}, max {v[-1]:g}" for k, v in classes.items())
    return _svg(fig, ident, dist.get("title", "distribution"), alt), alt


def _thin(pts: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """At most about MAX_POINTS of a timer's samples: every restart (and the sample before it),
    the first and the last, and others evenly - between restarts the timer runs down linearly."""
    if len(pts) <= MAX_POINTS:
        return pts
    keep = {0, len(pts) - 1}
    for i in range(1, len(pts)):
        if pts[i][1] > pts[i - 1][1]:
            keep |= {i - 1, i}
    step = max(1, len(pts) // MAX_POINTS)
    keep |= set(range(0, len(pts), step))
    return [pts[i] for i in sorted(keep)]


def _figure(w: float, h: float, ncols: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _svg(fig, ident: str, title: str, alt: str) -> str:
    """The figure as inline SVG: no XML prolog, no metadata, no document-wide style; its text as
    text (no glyph paths), ids salted by *ident* (several plots share one page), and a <title>
    and <desc> as its text alternative."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": ident, "font.size": 9}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)
    text = re.sub(r"<style[^>]*>.*?</style>", "", text, flags=re.S)
    end = text.index(">")
    opening = re.sub(r'\s(width|height)="[0-9.]+pt"', "", text[:end])
    return (f'{opening} id="{ident}" class="plot" role="img" aria-labelledby="{ident}-title {ident}-desc">'
            f'<title id="{ident}-title">{escape(title)}</title><desc id="{ident}-desc">{escape(alt)}</desc>'
            + text[end + 1:])
