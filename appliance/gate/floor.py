"""Who is where on the floor: recent track points held in memory for a few minutes, never on disk."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from appliance.events import FloatArray, TrackPoint


@dataclass(slots=True)
class TrackHistory:
    """The recent points of one track (positions in metres; hand NaN when unknown)."""

    track: str
    first_t: float
    first_xy: tuple[float, float]
    t: list[float] = field(default_factory=list)
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    hand: list[tuple[float, float, float]] = field(default_factory=list)

    @property
    def last_t(self) -> float:
        return self.t[-1]

    @property
    def last_xy(self) -> tuple[float, float]:
        return self.x[-1], self.y[-1]

    def window(self, t0: float, t1: float) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Times, (n, 2) positions and (n, 3) hands (NaN rows when unknown) within [t0, t1]."""
        tt = np.asarray(self.t)
        a, b = np.searchsorted(tt, t0, "left"), np.searchsorted(tt, t1, "right")
        xy = np.column_stack([self.x[a:b], self.y[a:b]]) if b > a else np.empty((0, 2))
        hands = np.asarray(self.hand[a:b], dtype=np.float64).reshape(-1, 3)
        return tt[a:b], xy, hands

    def position_at(self, t: float) -> tuple[float, float] | None:
        """Position at t (linear between points), None outside the points held."""
        if not self.t or t < self.t[0] - 0.5 or t > self.t[-1] + 0.5:
            return None
        return float(np.interp(t, self.t, self.x)), float(np.interp(t, self.t, self.y))


class FloorMemory:
    """Recent points of every track, pruned to `keep_s` seconds: the only place positions live."""

    def __init__(self, keep_s: float = 300.0) -> None:
        self.keep_s = keep_s
        self.tracks: dict[str, TrackHistory] = {}
        self._now = -math.inf

    def add(self, p: TrackPoint) -> TrackHistory:
        """Record a point; returns its track's history (new tracks start one)."""
        h = self.tracks.get(p.track)
        if h is None:
            h = self.tracks[p.track] = TrackHistory(p.track, p.t, (p.x, p.y))
        h.t.append(p.t)
        h.x.append(p.x)
        h.y.append(p.y)
        h.hand.append(p.hand if p.hand is not None else (math.nan, math.nan, math.nan))
        self._now = max(self._now, p.t)
        return h

    def prune(self, now: float) -> None:
        """Forget points older than keep_s, and tracks with nothing left."""
        cutoff = now - self.keep_s
        for tid in list(self.tracks):
            h = self.tracks[tid]
            if h.last_t < cutoff:
                del self.tracks[tid]
                continue
            if h.t[0] >= cutoff:
                continue
            k = int(np.searchsorted(np.asarray(h.t), cutoff, "left"))
            if k:
                del h.t[:k], h.x[:k], h.y[:k], h.hand[:k]

    def active(self, t0: float, t1: float) -> list[TrackHistory]:
        """Tracks with a point within [t0, t1]."""
        out = []
        for h in self.tracks.values():
            if h.t and h.t[0] <= t1 and h.last_t >= t0:
                tt = h.t
                k = int(np.searchsorted(np.asarray(tt), t0, "left"))
                if k < len(tt) and tt[k] <= t1:
                    out.append(h)
        return out


def segment_distance(p: tuple[float, float], seg: tuple[tuple[float, float], tuple[float, float]]) -> float:
    """Distance from a floor point to a line segment."""
    (ax, ay), (bx, by) = seg
    dx, dy = bx - ax, by - ay
    denom = dx * dx + dy * dy
    u = 0.0 if denom == 0 else max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / denom))
    return math.hypot(p[0] - (ax + u * dx), p[1] - (ay + u * dy))


def crosses(a: tuple[float, float], b: tuple[float, float],
            seg: tuple[tuple[float, float], tuple[float, float]]) -> int:
    """+1 if the step a->b crosses the segment to its left side, -1 to its right side, 0 if not."""
    (px, py), (qx, qy) = seg

    def side(x: float, y: float) -> float:
        return (qx - px) * (y - py) - (qy - py) * (x - px)

    sa, sb = side(*a), side(*b)
    if sa * sb > 0 or sa == sb:
        return 0
    # The segment's own endpoints must lie on either side of the step's line.
    def side2(x: float, y: float) -> float:
        return (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0])

    if side2(px, py) * side2(qx, qy) > 0:
        return 0
    return 1 if sb > sa else -1
