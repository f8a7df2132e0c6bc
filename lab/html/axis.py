"""The ladder's time axis: true time, with the quiet stretches shortened and the idle ones cut.

Segments come in bursts (an exchange of a few segments within a millisecond) separated by
protocol waits (an RTO, a 60 s TIME-WAIT). One scale cannot show both: the axis is linear in
pieces, each marked where it is drawn.

    burst   a run of moments closer than SPLIT_PX at the fine scale: that scale, the same for every burst, so
            arrows slant by their real one-way delays and rows stand ROW_PX apart where they can
    quiet   the stretch between two bursts: a coarse scale, the same for all of them (an RTO
            doubling stays visible), each at least MIN_QUIET_PX tall and labelled with its length
    idle    a stretch longer than IDLE_S: cut to IDLE_PX, labelled with its length

    axis = TimeAxis.fit(moments, rows)      # seconds; rows: the moments that carry a label
    axis.y(0.2051)                          # pixels from the top
"""

from __future__ import annotations

import bisect
import statistics
from dataclasses import dataclass

__all__ = ["Piece", "TimeAxis", "ROW_PX"]

ROW_PX = 18.0            # room a labelled row wants
MIN_QUIET_PX = 28.0      # a quiet stretch: room for its length label
IDLE_PX = 44.0           # a cut idle stretch
IDLE_S = 5.0             # longer than this: cut
SPLIT_PX = 3 * 18.0      # a stretch with nothing drawn, taller than this at the fine scale: quiet
MAX_BURSTS_PX = 5000.0   # all bursts together at most this tall (else the fine scale shrinks)
MAX_QUIET_PX = 640.0     # all quiet stretches together, at the coarse scale
FINE = (2e3, 1e6)        # px/s bounds of the fine scale (0.5 ms .. 1 us per pixel)
COARSE = (20.0, 4000.0)  # px/s bounds of the coarse scale
MARGIN_PX = 14.0


@dataclass(frozen=True)
class Piece:
    t0: float
    t1: float
    y0: float
    y1: float
    kind: str            # "burst", "quiet" or "idle"

    @property
    def scale(self) -> float:
        """Pixels per second (0 for a burst of one moment)."""
        return (self.y1 - self.y0) / (self.t1 - self.t0) if self.t1 > self.t0 else 0.0


class TimeAxis:
    def __init__(self, pieces: list[Piece], fine: float, coarse: float) -> None:
        self.pieces, self.fine, self.coarse = pieces, fine, coarse
        self._starts = [p.t0 for p in pieces]

    @property
    def height(self) -> float:
        return (self.pieces[-1].y1 if self.pieces else 0.0) + MARGIN_PX

    def y(self, t: float) -> float:
        """Where time *t* is drawn; before the first moment and after the last, at the fine scale."""
        if not self.pieces:
            return MARGIN_PX
        first, last = self.pieces[0], self.pieces[-1]
        if t <= first.t0:
            return max(0.0, first.y0 - (first.t0 - t) * self.fine)
        if t >= last.t1:
            return last.y1 + (t - last.t1) * self.fine
        p = self.pieces[max(0, bisect.bisect_right(self._starts, t) - 1)]
        return p.y0 if p.t1 == p.t0 else p.y0 + (t - p.t0) / (p.t1 - p.t0) * (p.y1 - p.y0)

    @classmethod
    def fit(cls, moments: list[float], rows: list[float]) -> TimeAxis:
        """The axis for these moments (every time drawn), the fine scale fitted to the *rows*
        (the moments that carry a label): a stretch taller than SPLIT_PX at that scale is quiet."""
        times = sorted(set(moments) | set(rows))
        if not times:
            return cls([], FINE[0], COARSE[0])
        fine = _fine_scale(sorted(set(rows)))
        bursts = _bursts(times, SPLIT_PX / fine)
        span = sum(b[-1] - b[0] for b in bursts)
        fine = min(fine, MAX_BURSTS_PX / span) if span * fine > MAX_BURSTS_PX else fine
        quiet = [b[0] - a[-1] for a, b in zip(bursts, bursts[1:]) if b[0] - a[-1] <= IDLE_S]
        coarse = min(max(MAX_QUIET_PX / sum(quiet), COARSE[0]), COARSE[1]) if quiet else COARSE[0]
        pieces, y = [], MARGIN_PX
        for i, burst in enumerate(bursts):
            if i:
                gap_t0, gap_t1 = bursts[i - 1][-1], burst[0]
                d = gap_t1 - gap_t0
                h = IDLE_PX if d > IDLE_S else max(MIN_QUIET_PX, d * coarse)
                pieces.append(Piece(gap_t0, gap_t1, y, y + h, "idle" if d > IDLE_S else "quiet"))
                y += h
            h = (burst[-1] - burst[0]) * fine
            pieces.append(Piece(burst[0], burst[-1], y, y + h, "burst"))
            y += h
        return cls(pieces, fine, coarse)


def _bursts(times: list[float], gap_s: float) -> list[list[float]]:
    out = [[times[0]]]
    for t in times[1:]:
        if t - out[-1][-1] > gap_s:
            out.append([t])
        else:
            out[-1].append(t)
    return out


def _fine_scale(rows: list[float]) -> float:
    """ROW_PX over the typical small step between labelled rows (the lower quartile of the steps
    under 5 ms), within FINE's bounds."""
    steps = sorted(q - p for p, q in zip(rows, rows[1:]) if 0 < q - p < 0.005)
    step = statistics.quantiles(steps, n=4)[0] if len(steps) > 1 else (steps[0] if steps else 1e-4)
    return min(max(ROW_PX / step, FINE[0]), FINE[1])
