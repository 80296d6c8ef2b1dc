"""Walking routes on the shop floor: shortest paths around gondolas, as people actually walk.

A visibility graph over the corners of the obstacles (each grown by a body radius) gives the
shortest route that keeps a person's centre clear of the shelves; people cut corners as closely
as that allows, which is what makes two shoppers in one aisle brush past each other.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from appliance.sim.shop import Point, Rect

BODY_RADIUS_M = 0.25
_CORNER_GAP_M = 0.03


def _segment_hits(a: Point, b: Point, r: Rect) -> bool:
    """Whether the open segment a-b passes through the inside of r (Liang-Barsky clipping)."""
    eps = 1e-6
    x0, y0, x1, y1 = r.x0 + eps, r.y0 + eps, r.x1 - eps, r.y1 - eps
    dx, dy = b[0] - a[0], b[1] - a[1]
    t0, t1 = 0.0, 1.0
    for p, q in ((-dx, a[0] - x0), (dx, x1 - a[0]), (-dy, a[1] - y0), (dy, y1 - a[1])):
        if p == 0:
            if q < 0:
                return False
            continue
        t = q / p
        if p < 0:
            t0 = max(t0, t)
        else:
            t1 = min(t1, t)
        if t0 > t1:
            return False
    return t1 - t0 > 1e-9


class FloorPlan:
    """Routes between floor points that avoid the given obstacles, inside a walkable box."""

    def __init__(self, obstacles: Sequence[Rect], bounds: Rect, radius: float = BODY_RADIUS_M) -> None:
        self.blocks = [o.grown(radius) for o in obstacles]
        self.bounds = bounds
        corners: list[Point] = []
        for blk in self.blocks:
            g = blk.grown(_CORNER_GAP_M)
            for c in ((g.x0, g.y0), (g.x0, g.y1), (g.x1, g.y0), (g.x1, g.y1)):
                if self.walkable(c):
                    corners.append(c)
        self.corners = corners
        n = len(corners)
        self.edges: list[list[tuple[int, float]]] = [[] for _ in range(n)]
        for i in range(n):
            for j in range(i + 1, n):
                if self.clear(corners[i], corners[j]):
                    d = math.dist(corners[i], corners[j])
                    self.edges[i].append((j, d))
                    self.edges[j].append((i, d))

    def walkable(self, p: Point) -> bool:
        """Whether a person's centre can stand at p (inside the bounds, clear of every obstacle)."""
        b = self.bounds
        inside = b.x0 <= p[0] <= b.x1 and b.y0 <= p[1] <= b.y1
        return inside and not any(blk.contains(p) for blk in self.blocks)

    def clear(self, a: Point, b: Point) -> bool:
        """Whether a person can walk straight from a to b."""
        return not any(_segment_hits(a, b, blk) for blk in self.blocks)

    def route(self, start: Point, goal: Point) -> list[Point]:
        """Shortest walk from start to goal as a list of points (start and goal included)."""
        if self.clear(start, goal):
            return [start, goal]
        n = len(self.corners)
        # Nodes 0..n-1 are corners, n is the start, n+1 the goal.
        pts = [*self.corners, start, goal]
        dist = [math.inf] * (n + 2)
        prev = [-1] * (n + 2)
        dist[n] = 0.0
        heap = [(0.0, n)]
        while heap:
            d, i = heapq.heappop(heap)
            if d > dist[i]:
                continue
            if i == n + 1:
                break
            nbrs: list[tuple[int, float]] = list(self.edges[i]) if i < n else []
            if i == n:
                nbrs = [(j, math.dist(start, c)) for j, c in enumerate(self.corners) if self.clear(start, c)]
            if i != n + 1 and self.clear(pts[i], goal):
                nbrs.append((n + 1, math.dist(pts[i], goal)))
            for j, w in nbrs:
                if d + w < dist[j]:
                    dist[j] = d + w
                    prev[j] = i
                    heapq.heappush(heap, (d + w, j))
        if prev[n + 1] < 0:
            raise ValueError(f"no walkable route from {start} to {goal}")
        path = [goal]
        i = prev[n + 1]
        while i != n:
            path.append(pts[i])
            i = prev[i]
        path.append(start)
        return path[::-1]
