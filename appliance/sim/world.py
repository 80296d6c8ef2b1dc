"""What really happened in a simulated shop, as the simulator hands it to camera rendering.

Tracks in a recording are a tracker's noisy, fragmented view; the renderer needs the truth:
where each person's body centre really was, when, and how tall they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.events import FloatArray


@dataclass(frozen=True, slots=True)
class PersonPath:
    """One person's true floor path: body centre (x, y) in metres at times `t` (unix seconds)."""

    person: str
    t: FloatArray
    xy: FloatArray
    height_m: float = 1.7

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        if self.t.ndim != 1 or self.xy.shape != (n, 2):
            raise ValueError(f"t must be (n,) and xy (n, 2), got {self.t.shape} and {self.xy.shape}")
        if n > 1 and not np.all(np.diff(self.t) > 0):
            raise ValueError("t must increase strictly")
        if not 0.5 <= self.height_m <= 2.5:
            raise ValueError(f"height_m must be 0.5-2.5 m, got {self.height_m}")

    def at(self, t: float) -> tuple[float, float] | None:
        """Position at time t (linear between samples), or None when the person is not in the shop."""
        if self.t.shape[0] == 0 or t < self.t[0] or t > self.t[-1]:
            return None
        return (float(np.interp(t, self.t, self.xy[:, 0])), float(np.interp(t, self.t, self.xy[:, 1])))
