"""Bodies take up room: no two simulated people stand inside each other.

Shoppers are planned one at a time, so two of them can end up on the same spot (both standing in
front of one facing, or queueing on one tile). Real people keep about a shoulder width apart, and a
tracker sees two separate bodies. This pass nudges the true body paths apart wherever two people
would overlap, a little at a time and smoothly, never into a gondola; hands and shelf acts are
untouched (a person standing a little aside still reaches the same facing).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from appliance.sim.floorplan import FloorPlan
from appliance.sim.world import PersonPath

MIN_GAP_M = 0.45
STEP_S = 0.1
ITERATIONS = 3
SMOOTH_STEPS = 7


def _blocked(plan: FloorPlan, xy: np.ndarray) -> np.ndarray:
    """Which points (n, 2) fall inside an obstacle (the gondolas, grown by a body's radius)."""
    out = np.zeros(xy.shape[0], dtype=bool)
    for b in plan.blocks:
        out |= (xy[:, 0] >= b.x0) & (xy[:, 0] <= b.x1) & (xy[:, 1] >= b.y0) & (xy[:, 1] <= b.y1)
    return out


def separate(paths: Sequence[PersonPath], plan: FloorPlan, min_gap: float = MIN_GAP_M) -> list[PersonPath]:
    """The same people, pushed apart wherever two bodies would overlap."""
    if len(paths) < 2:
        return list(paths)
    t0 = min(float(p.t[0]) for p in paths)
    t1 = max(float(p.t[-1]) for p in paths)
    grid = np.arange(t0, t1 + STEP_S, STEP_S)
    n, k = grid.size, len(paths)
    pos = np.full((n, k, 2), np.nan)
    for j, p in enumerate(paths):
        live = (grid >= p.t[0]) & (grid <= p.t[-1])
        pos[live, j, 0] = np.interp(grid[live], p.t, p.xy[:, 0])
        pos[live, j, 1] = np.interp(grid[live], p.t, p.xy[:, 1])
    shift = np.zeros((n, k, 2))
    # A fixed, person-specific direction to part two people standing on exactly the same spot.
    fallback = np.stack([np.cos(np.arange(k) * 2.399), np.sin(np.arange(k) * 2.399)], axis=1)
    for s in range(n):
        here = np.flatnonzero(~np.isnan(pos[s, :, 0]))
        if here.size < 2:
            continue
        xy = pos[s, here].copy()
        for _ in range(ITERATIONS):
            d = xy[:, None, :] - xy[None, :, :]
            dist = np.hypot(d[..., 0], d[..., 1])
            np.fill_diagonal(dist, np.inf)
            overlap = dist < min_gap
            if not overlap.any():
                break
            safe = np.where(dist > 1e-6, dist, 1.0)
            unit = np.where((dist > 1e-6)[..., None], d / safe[..., None],
                            (fallback[here][:, None, :] - fallback[here][None, :, :]))
            deficit = np.where(overlap, (min_gap - np.minimum(dist, min_gap)) / 2, 0.0)
            push = (unit * deficit[..., None]).sum(axis=1)
            moved = xy + push
            ok = ~_blocked(plan, moved)
            xy = np.where(ok[:, None], moved, xy)
        shift[s, here] = xy - pos[s, here]
    if SMOOTH_STEPS > 1:
        kernel = np.ones(SMOOTH_STEPS) / SMOOTH_STEPS
        for j in range(k):
            for axis in (0, 1):
                shift[:, j, axis] = np.convolve(shift[:, j, axis], kernel, mode="same")
    out = []
    for j, p in enumerate(paths):
        dx = np.interp(p.t, grid, shift[:, j, 0])
        dy = np.interp(p.t, grid, shift[:, j, 1])
        moved = p.xy + np.stack([dx, dy], axis=1)
        keep = _blocked(plan, moved) & ~_blocked(plan, p.xy)
        moved[keep] = p.xy[keep]
        out.append(PersonPath(p.person, p.t, moved, p.height_m))
    return out
