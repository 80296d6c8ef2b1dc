"""Constant-velocity Kalman filter: where a tracked person should be now, and how sure that is."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.events import FloatArray


@dataclass(frozen=True, slots=True)
class Motion:
    """Position and velocity in d dimensions (state of size 2d) with their covariance.

    Time is in seconds, so a filter works the same at 7 or 30 frames per second. Process noise is
    white acceleration with a standard deviation per dimension: larger values follow sharp turns
    sooner but smooth noisy measurements less.
    """

    x: FloatArray
    p: FloatArray

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.x.ndim != 1 or n % 2 or self.p.shape != (n, n):
            raise ValueError(f"state must be (2d,) with covariance (2d, 2d), got {self.x.shape} and {self.p.shape}")

    @classmethod
    def start(cls, z: FloatArray, r: FloatArray, speed_sd: FloatArray) -> Motion:
        """A motion at measurement `z` (covariance `r`), at rest but with velocity spread `speed_sd`."""
        d = z.shape[0]
        p = np.zeros((2 * d, 2 * d))
        p[:d, :d] = r
        p[d:, d:] = np.diag(np.square(speed_sd))
        return cls(np.concatenate([z, np.zeros(d)]), p)

    @property
    def dims(self) -> int:
        return self.x.shape[0] // 2

    @property
    def position(self) -> FloatArray:
        return self.x[: self.dims]

    @property
    def velocity(self) -> FloatArray:
        return self.x[self.dims :]

    @property
    def position_cov(self) -> FloatArray:
        return self.p[: self.dims, : self.dims]

    def predicted(self, dt: float, accel_sd: FloatArray) -> Motion:
        """The motion `dt` seconds later under constant velocity."""
        if dt <= 0:
            return self
        d = self.dims
        f = np.eye(2 * d)
        f[:d, d:] = dt * np.eye(d)
        qa = np.square(accel_sd)
        q = np.zeros((2 * d, 2 * d))
        q[:d, :d] = np.diag(qa * dt**3 / 3.0)
        q[:d, d:] = q[d:, :d] = np.diag(qa * dt**2 / 2.0)
        q[d:, d:] = np.diag(qa * dt)
        return Motion(f @ self.x, f @ self.p @ f.T + q)

    def stopped(self, which: FloatArray) -> Motion:
        """The same position with zero velocity in the dimensions marked in `which` (booleans).

        For someone out of sight, whose last heading says little about where they are now.
        """
        if not np.any(which):
            return self
        d = self.dims
        idx = d + np.flatnonzero(which)
        x = self.x.copy()
        x[idx] = 0.0
        p = self.p.copy()
        p[idx, :] = 0.0
        p[:, idx] = 0.0
        p[idx, idx] = self.p[idx, idx]
        return Motion(x, p)

    def corrected(self, z: FloatArray, r: FloatArray) -> Motion:
        """The motion after measuring position `z` with covariance `r` (Joseph form, stays symmetric)."""
        d = self.dims
        h = np.zeros((d, 2 * d))
        h[:, :d] = np.eye(d)
        s = self.p[:d, :d] + r
        k = np.linalg.solve(s, self.p[:d, :]).T
        x = self.x + k @ (z - self.x[:d])
        a = np.eye(2 * d) - k @ h
        p = a @ self.p @ a.T + k @ r @ k.T
        return Motion(x, (p + p.T) / 2.0)
