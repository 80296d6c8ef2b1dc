"""A person tracker's view of the true paths: noisy, gappy, fragmented, and sometimes confused.

Positions come at about 10 Hz with correlated error of a few centimetres (a tracker's error
wanders rather than jumps). Frames are missed; a person is sometimes lost for 0.5-3 s and comes
back under a new id; when two people pass close, their ids may swap; a reflection may show up
as a short ghost track. During a reach the tracker sometimes also reports the hand nearest the
shelves (hx, hy, hz), for a share of reaches that depends on the scenario's camera setup.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from appliance.events import FloatArray, TrackPoint
from appliance.sim.acts import Reach
from appliance.sim.shop import Shop
from appliance.sim.world import PersonPath


@dataclass(frozen=True, slots=True)
class TrackerProfile:
    """How well the shop's tracker does; one profile per scenario, every field overridable."""

    rate_hz: float = 10.0
    noise_m: float = 0.06
    noise_corr_s: float = 0.5
    miss_p: float = 0.02
    hand_share: float = 0.5
    hand_frame_p: float = 0.85
    hand_noise_m: float = 0.04
    fragment_per_min: float = 0.15
    switch_p: float = 0.1
    switch_dist_m: float = 0.5
    ghost_per_min: float = 0.0
    gate_track_share: float = 0.15

    def __post_init__(self) -> None:
        if not 1.0 <= self.rate_hz <= 60.0:
            raise ValueError(f"rate_hz must be 1-60, got {self.rate_hz}")
        for name in ("miss_p", "hand_share", "hand_frame_p", "switch_p", "gate_track_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a share in [0, 1], got {getattr(self, name)}")
        for name in ("noise_m", "noise_corr_s", "hand_noise_m", "fragment_per_min", "switch_dist_m",
                     "ghost_per_min"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class TrackerOutput:
    """The tracker's rows, and which track id each person had when (for the gate's `track` column)."""

    points: list[TrackPoint]
    ids: dict[str, list[tuple[float, str]]]
    fragments: int
    switches: int
    ghosts: int

    def id_at(self, person: str, t: float, within: float = 0.3) -> str:
        """The id the tracker gave `person` nearest to time t, or "" when it did not see them then."""
        best = ("", within)
        for ft, tid in self.ids.get(person, []):
            if abs(ft - t) <= best[1]:
                best = (tid, abs(ft - t))
        return best[0]


def _hand(reach: Reach, t: float) -> tuple[float, float, float]:
    if t < reach.t_on:
        f = (t - reach.t0) / max(reach.t_on - reach.t0, 1e-3)
    elif t <= reach.t_off:
        f = 1.0
    else:
        f = 1.0 - (t - reach.t_off) / max(reach.t1 - reach.t_off, 1e-3)
    f = min(1.0, max(0.0, f))
    s, g = reach.shoulder, reach.target
    return (s[0] + f * (g[0] - s[0]), s[1] + f * (g[1] - s[1]), s[2] + f * (g[2] - s[2]))


def render(shop: Shop, paths: Sequence[PersonPath], reaches: dict[str, list[Reach]], profile: TrackerProfile,
           seed: int, t0: float, t1: float) -> TrackerOutput:
    """The tracker's rows for everyone between t0 and t1."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x7AC]))
    dt = 1.0 / profile.rate_hz
    frames = t0 + float(rng.uniform(0.0, dt)) + np.arange(int((t1 - t0) / dt)) * dt
    frames = frames + rng.normal(0.0, 0.002, frames.shape[0])
    frames.sort()
    n_frames = frames.shape[0]
    rho = math.exp(-dt / max(profile.noise_corr_s, 1e-3))

    # Per person: which frames they are in, true positions, tracker error, misses, fragment gaps, hands.
    present: dict[str, tuple[int, int]] = {}
    obs_xy: dict[str, FloatArray] = {}
    seen: dict[str, npt.NDArray[np.bool_]] = {}
    reborn: dict[str, npt.NDArray[np.bool_]] = {}
    hands: dict[str, list[tuple[float, float, float] | None]] = {}
    for n_path, path in enumerate(paths):
        prng = np.random.default_rng(np.random.SeedSequence([seed, 0x7AC, n_path + 1]))
        i0 = int(np.searchsorted(frames, path.t[0]))
        i1 = int(np.searchsorted(frames, path.t[-1], side="right"))
        if i1 <= i0:
            continue
        ft = frames[i0:i1]
        xy = np.stack([np.interp(ft, path.t, path.xy[:, 0]), np.interp(ft, path.t, path.xy[:, 1])], axis=1)
        n = ft.shape[0]
        # AR(1) error with stationary spread noise_m: the first value is drawn at full spread
        drive = prng.normal(0.0, profile.noise_m, (n, 2))
        drive[1:] *= math.sqrt(1 - rho * rho)
        err = lfilter([1.0], [1.0, -rho], drive, axis=0)
        ok: npt.NDArray[np.bool_] = np.greater_equal(prng.random(n), profile.miss_p)
        new = np.zeros(n, dtype=bool)
        duration_min = (ft[-1] - ft[0]) / 60.0
        for _ in range(int(prng.poisson(profile.fragment_per_min * duration_min))):
            g0 = float(prng.uniform(ft[0], ft[-1]))
            g1 = g0 + float(prng.uniform(0.5, 3.0))
            lo, hi = int(np.searchsorted(ft, g0)), int(np.searchsorted(ft, g1))
            ok[lo:hi] = False
            if hi < n:
                new[hi] = True
        person_reaches = reaches.get(path.person, [])
        visible = [prng.random() < profile.hand_share for _ in person_reaches]
        hand_rows: list[tuple[float, float, float] | None] = [None] * n
        for reach, vis in zip(person_reaches, visible):
            if not vis:
                continue
            lo, hi = int(np.searchsorted(ft, reach.t0)), int(np.searchsorted(ft, reach.t1, side="right"))
            for k in range(lo, hi):
                # two hands at the shelves at once (leaning across): either may be the one reported
                if prng.random() < profile.hand_frame_p and (hand_rows[k] is None or prng.random() < 0.5):
                    hx, hy, hz = _hand(reach, float(ft[k]))
                    jitter = prng.normal(0.0, profile.hand_noise_m, 3)
                    hand_rows[k] = (hx + float(jitter[0]), hy + float(jitter[1]), hz + float(jitter[2]))
        present[path.person] = (i0, i1)
        obs_xy[path.person] = xy + err
        seen[path.person] = ok
        reborn[path.person] = new
        hands[path.person] = hand_rows

    ghosts: list[tuple[int, int, float, float]] = []
    minutes = (t1 - t0) / 60.0
    for _ in range(int(rng.poisson(profile.ghost_per_min * minutes))):
        g_lo = int(rng.integers(n_frames))
        g_hi = min(n_frames, g_lo + int(rng.uniform(0.3, 2.5) / dt))
        gx, gy = float(rng.uniform(0.4, shop.size[0] - 0.4)), float(rng.uniform(0.8, shop.size[1] - 0.4))
        ghosts.append((g_lo, g_hi, gx, gy))

    next_id = 1
    current: dict[str, str] = {}
    close: set[tuple[str, str]] = set()
    ids: dict[str, list[tuple[float, str]]] = {p: [] for p in present}
    points: list[TrackPoint] = []
    fragments = switches = 0
    ghost_ids: dict[int, str] = {}
    order = list(present)
    for f in range(n_frames):
        here = [p for p in order if present[p][0] <= f < present[p][1]]
        # id switches: a pair that has just come within reach of each other may swap ids
        for i, a in enumerate(here):
            for b in here[i + 1:]:
                ka, kb = f - present[a][0], f - present[b][0]
                pair = (a, b)
                near = math.dist(obs_xy[a][ka], obs_xy[b][kb]) < profile.switch_dist_m
                if near and pair not in close:
                    close.add(pair)
                    if a in current and b in current and rng.random() < profile.switch_p:
                        current[a], current[b] = current[b], current[a]
                        switches += 1
                elif not near:
                    close.discard(pair)
        for p in here:
            k = f - present[p][0]
            if reborn[p][k] and p in current:
                del current[p]
                fragments += 1
            if not seen[p][k]:
                continue
            if p not in current:
                current[p] = f"t{next_id}"
                next_id += 1
            x, y = obs_xy[p][k]
            points.append(TrackPoint(float(frames[f]), current[p], float(x), float(y), hands[p][k]))
            ids[p].append((float(frames[f]), current[p]))
        for gi, (g_lo, g_hi, gx, gy) in enumerate(ghosts):
            if g_lo <= f < g_hi:
                if gi not in ghost_ids:
                    ghost_ids[gi] = f"t{next_id}"
                    next_id += 1
                jitter = rng.normal(0.0, 0.05, 2)
                points.append(TrackPoint(float(frames[f]), ghost_ids[gi], gx + float(jitter[0]), gy + float(jitter[1])))
    return TrackerOutput(points, ids, fragments, switches, len(ghosts))
