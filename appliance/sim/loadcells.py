"""Shelf load cells as they really report: absolute, noisy, drifting, each at its own pace, sometimes not at all.

Every plate reads its tare plus everything resting on it plus whatever a hand pushes down,
through its own imperfections: white and slightly coloured noise (about 1 g, higher on high
shelves; AiFi's NanoStore measured a median of 0.85 g), a slow temperature drift, a small gain
error, creep after a load change, clock skew and jitter, dropped samples and dropped bursts,
occasional fault samples (no value) and glitch spikes, vibration when someone handles the same
gondola, and sensors that die part-way (falling silent or reporting only faults).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from appliance.events import FloatArray, IntArray
from appliance.sim.acts import Press
from appliance.sim.shop import Shop
from appliance.sim.stock import Step


@dataclass(frozen=True, slots=True)
class SensorProfile:
    """How the shop's load cells misbehave; one profile per scenario, every field overridable.

    Noise per plate is log-normal around `noise_median_g` with spread `noise_spread`, scaled up
    the higher the shelf: the defaults give a per-plate median near 0.9 g, a 90th percentile
    near 3.4 g and a few plates at the 14 g cap, close to AiFi's measured 0.85 / 3.8 / 13.6 g.
    """

    noise_median_g: float = 0.85
    noise_spread: float = 0.8
    noise_max_g: float = 14.0
    drift_g_per_h: float = 3.0
    gain_sd: float = 0.001
    creep: float = 0.002
    jitter_s: float = 0.0015
    drop_p: float = 0.002
    gaps_per_h: float = 1.0
    fault_p: float = 0.0005
    spike_p: float = 0.00002
    vibration_g: float = 3.0
    dead_silent: int = 0
    dead_faulting: int = 0

    def __post_init__(self) -> None:
        for name in ("noise_median_g", "noise_spread", "noise_max_g", "drift_g_per_h", "gain_sd", "creep",
                     "jitter_s", "gaps_per_h", "vibration_g"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("drop_p", "fault_p", "spike_p"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must be a probability in [0, 1), got {getattr(self, name)}")
        if self.dead_silent < 0 or self.dead_faulting < 0:
            raise ValueError("dead sensor counts must be >= 0")


@dataclass(frozen=True, slots=True)
class DeadSensor:
    """A plate that stops working at `t`: `silent` (no samples) or `faulting` (empty readings)."""

    plate: int
    t: float
    mode: str


@dataclass(frozen=True, slots=True)
class Readings:
    """All readings of all plates, sorted by time, with each plate's hidden noise level."""

    t: FloatArray
    sensor: IntArray
    grams: FloatArray
    noise_g: tuple[float, ...]
    dead: tuple[DeadSensor, ...]


def choose_dead(shop: Shop, profile: SensorProfile, rng: np.random.Generator, t0: float, t1: float,
                ) -> tuple[DeadSensor, ...]:
    """Pick which plates die and when (in the middle half of the recording), independently of shoppers."""
    n = profile.dead_silent + profile.dead_faulting
    if n == 0:
        return ()
    plates = rng.choice(len(shop.plates), size=min(n, len(shop.plates)), replace=False)
    modes = ["silent"] * profile.dead_silent + ["faulting"] * profile.dead_faulting
    return tuple(DeadSensor(int(p), float(rng.uniform(t0 + 0.25 * (t1 - t0), t0 + 0.75 * (t1 - t0))), m)
                 for p, m in zip(plates, modes))


def _smoothstep(x: FloatArray) -> FloatArray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _press_force(ts: FloatArray, p: Press) -> FloatArray:
    fall = min(p.rise_s, (p.t1 - p.t0) / 3)
    env = _smoothstep((ts - p.t0) / max(p.rise_s, 1e-3)) * _smoothstep((p.t1 - ts) / max(fall, 1e-3))
    wob = np.ones_like(ts)
    for amp, hz, phase in p.wobble:
        wob += amp * np.sin(2 * math.pi * hz * (ts - p.t0) + phase)
    return np.asarray(p.force_g * env * wob, dtype=np.float64)


def _vibration(shop: Shop, presses: Sequence[Press], profile: SensorProfile, rng: np.random.Generator,
               ) -> dict[int, list[tuple[float, float, float]]]:
    """Extra noise on every plate of a gondola while someone handles it: (t0, t1, sd) per plate."""
    out: dict[int, list[tuple[float, float, float]]] = defaultdict(list)
    if profile.vibration_g <= 0:
        return out
    for p in presses:
        touched = {i for i, _ in p.split}
        first = shop.plates[p.split[0][0]]
        gondola = shop.shelves[first.shelf].gondola
        strength = profile.vibration_g * float(rng.uniform(0.5, 1.5)) * (p.force_g / 100.0) ** 0.3
        for sh in shop.shelves:
            if sh.gondola != gondola:
                continue
            near = 1.0 if sh.index == first.shelf else 0.6
            height = 0.4 + 0.3 * (sh.number - 1)
            for i in sh.plates:
                if i not in touched:
                    out[i].append((p.t0, p.t1, strength * near * height))
    return out


def render(shop: Shop, opening_g: Sequence[float], steps: Sequence[Step], presses: Sequence[Press],
           profile: SensorProfile, seed: int, t0: float, t1: float, dead: Sequence[DeadSensor] = (),
           progress: Callable[[str], None] | None = None) -> Readings:
    """Every plate's readings from t0 to t1 given the load changes and the hands on it."""
    by_plate: dict[int, list[Step]] = defaultdict(list)
    for st in steps:
        by_plate[st.plate].append(st)
    press_on: dict[int, list[tuple[Press, float]]] = defaultdict(list)
    for pr in presses:
        for i, frac in pr.split:
            press_on[i].append((pr, frac))
    vib = _vibration(shop, presses, profile, np.random.default_rng(np.random.SeedSequence([seed, 0x71B])))
    dead_of = {d.plate: d for d in dead}
    ts_all: list[FloatArray] = []
    g_all: list[FloatArray] = []
    ids_all: list[IntArray] = []
    noise: list[float] = []
    n_plates = len(shop.plates)
    for plate in shop.plates:
        if progress and plate.index % 20 == 0:
            progress(f"load cells: plate {plate.index + 1}/{n_plates}")
        rng = np.random.default_rng(np.random.SeedSequence([seed, 0x10AD, plate.index]))
        ts, grams, sd = _plate(shop, plate.index, opening_g[plate.index], by_plate[plate.index],
                               press_on[plate.index], vib.get(plate.index, []), profile, rng, t0, t1)
        noise.append(round(sd, 3))
        d = dead_of.get(plate.index)
        if d is not None:
            if d.mode == "silent":
                keep = ts < d.t
                ts, grams = ts[keep], grams[keep]
            else:
                grams[ts >= d.t] = np.nan
        ts_all.append(ts)
        g_all.append(grams)
        ids_all.append(np.full(ts.shape[0], plate.index, dtype=np.int64))
    t = np.concatenate(ts_all)
    order = np.argsort(t, kind="stable")
    return Readings(t[order], np.concatenate(ids_all)[order], np.concatenate(g_all)[order], tuple(noise),
                    tuple(dead))


def _plate(shop: Shop, index: int, opening: float, steps: list[Step], presses: list[tuple[Press, float]],
           vib: list[tuple[float, float, float]], profile: SensorProfile, rng: np.random.Generator,
           t0: float, t1: float) -> tuple[FloatArray, FloatArray, float]:
    plate = shop.plates[index]
    shelf = shop.shelves[plate.shelf]
    rate = plate.rate_hz * (1.0 + float(rng.normal(0.0, 50e-6)))
    phase = float(rng.uniform(0.0, 1.0 / rate))
    n = math.floor((t1 - t0 - phase) * rate) + 1
    ts = t0 + phase + np.arange(n) / rate + rng.normal(0.0, profile.jitter_s, n)
    ts.sort()

    load = np.full(n, opening)
    inc = np.zeros(n + 1)
    creep_frac = profile.creep * float(rng.uniform(0.25, 1.0))
    creep_tau = float(rng.uniform(20.0, 120.0))
    for st in sorted(steps, key=lambda s: s.t):
        i0 = int(np.searchsorted(ts, st.t))
        i1 = int(np.searchsorted(ts, st.t + st.dur))
        if i1 > i0:
            load[i0:i1] += st.delta_g * _smoothstep((ts[i0:i1] - st.t) / st.dur)
        inc[i1] += st.delta_g
        end = st.t + st.dur
        if st.impact_g:
            i2 = int(np.searchsorted(ts, end + 6 * st.impact_tau))
            load[i1:i2] += st.impact_g * np.exp(-(ts[i1:i2] - end) / st.impact_tau)
        if creep_frac:
            c = creep_frac * st.delta_g
            i3 = int(np.searchsorted(ts, end + 6 * creep_tau))
            load[i1:i3] += c * (1.0 - np.exp(-(ts[i1:i3] - end) / creep_tau))
            inc[i3] += c * (1.0 - math.exp(-6.0))
    load += np.cumsum(inc)[:n]

    gain = 1.0 + float(rng.normal(0.0, profile.gain_sd))
    for pr, frac in presses:
        i0, i1 = int(np.searchsorted(ts, pr.t0)), int(np.searchsorted(ts, pr.t1))
        if i1 > i0:
            load[i0:i1] += frac * _press_force(ts[i0:i1], pr)
    reading = plate.tare_g + gain * load

    # high shelves are noisier (a longer lever on the gondola frame): AiFi's bottom plates read about
    # 0.4 g, its top ones several grams
    height = 0.5 + 0.3 * (shelf.number - 1)
    sd = profile.noise_median_g * height * math.exp(profile.noise_spread * float(rng.normal()))
    sd = min(profile.noise_max_g, max(0.15, sd)) if profile.noise_median_g > 0 else 0.0
    white = rng.normal(0.0, 1.0, n)
    a = math.exp(-1.0 / (rate * 0.3))
    coloured = lfilter([1.0 - a], [1.0, -a], rng.normal(0.0, 1.0, n)) * math.sqrt((1.0 + a) / (1.0 - a))
    reading += sd * (0.85 * white + 0.53 * coloured)
    for v0, v1, vsd in vib:
        i0, i1 = int(np.searchsorted(ts, v0)), int(np.searchsorted(ts, v1))
        if i1 > i0:
            reading[i0:i1] += rng.normal(0.0, vsd, i1 - i0)

    rate_g = float(rng.normal(0.0, profile.drift_g_per_h))
    amp = abs(float(rng.normal(0.0, 0.4 * profile.drift_g_per_h)))
    period = float(rng.uniform(900.0, 3600.0))
    ph = float(rng.uniform(0.0, 2 * math.pi))
    rel = ts - t0
    reading += rate_g * rel / 3600.0 + amp * (np.sin(2 * math.pi * rel / period + ph) - math.sin(ph))

    n_spikes = int(rng.binomial(n, profile.spike_p))
    if n_spikes:
        where = rng.choice(n, size=n_spikes, replace=False)
        reading[where] += rng.choice([-1.0, 1.0], n_spikes) * rng.uniform(30.0, 400.0, n_spikes)
    reading[rng.random(n) < profile.fault_p] = np.nan
    keep = rng.random(n) >= profile.drop_p
    for _ in range(int(rng.poisson(profile.gaps_per_h * (t1 - t0) / 3600.0))):
        g0 = float(rng.uniform(t0, t1))
        g1 = g0 + float(rng.uniform(0.2, 3.0))
        keep[int(np.searchsorted(ts, g0)):int(np.searchsorted(ts, g1))] = False
    return ts[keep], reading[keep], sd
