"""One simulated person: where they walk and what their hands do, built step by step on their own clock.

A scenario drives a `Shopper` like a stage direction ("take two colas at once, then put one
back on the crisps shelf"); each call advances the person's clock, extends their true floor path
and appends timed acts (appliance/sim/acts.py). Timings and forces are drawn from the person's
own random stream within ranges observed on real shelves: a reach of 0.3-0.6 s, a grab that
presses 10-120 g onto the plate for 0.2-1 s before the lift, a lift over 0.06-0.25 s, a set-down
that lands with a short overshoot, a resting palm of 0.25-1.8 kg that wobbles.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from appliance.sim.acts import Act, Give, Lift, Place, Press, Reach, Scoop, Split
from appliance.sim.floorplan import FloorPlan
from appliance.sim.shop import SHELF_DEPTH_M, Column, Point, Shop
from appliance.sim.world import PersonPath

PATH_RATE_HZ = 10.0
PERSONAL_SPACE_M = 0.55
STAND_CHECK_S = 5.0


@dataclass(slots=True)
class Shopper:
    """A person in the shop: their true path, reaches and shelf acts, and their own clock `t`.

    Create shoppers through `Scene.visit` (appliance/sim/scene.py), which puts them through the
    entry gate; finish each with `leave()`.
    """

    shop: Shop
    plan: FloorPlan
    rng: np.random.Generator
    person: str
    visit: str
    t: float
    start: Point
    height_m: float = 1.7
    speed: float = 1.0
    away: float = 0.45
    way: list[tuple[float, float, float]] = field(default_factory=list)
    acts: list[Act] = field(default_factory=list)
    reaches: list[Reach] = field(default_factory=list)
    belongings: dict[str, float] = field(default_factory=dict)
    own_spots: dict[str, Column] = field(default_factory=dict)
    exit_t: float | None = None
    entry_t: float | None = None
    others: list[Shopper] = field(default_factory=list)
    _face: tuple[int, float] | None = None

    def __post_init__(self) -> None:
        self.way.append((self.t, self.start[0], self.start[1]))

    def true_path(self) -> PersonPath:
        """The body centre sampled at 10 Hz, with the slow sway of a person standing or walking."""
        w = np.array(self.way)
        t0, t1 = float(w[0, 0]), float(w[-1, 0])
        ts = t0 + np.arange(int((t1 - t0) * PATH_RATE_HZ) + 1) / PATH_RATE_HZ
        if ts[-1] < t1 - 1e-3:
            ts = np.append(ts, t1)
        xy = np.stack([np.interp(ts, w[:, 0], w[:, 1]), np.interp(ts, w[:, 0], w[:, 2])], axis=1)
        for axis in (0, 1):
            for _ in range(3):
                amp = float(self.rng.uniform(0.004, 0.012))
                hz = float(self.rng.uniform(0.08, 0.6))
                xy[:, axis] += amp * np.sin(2 * math.pi * hz * (ts - t0) + float(self.rng.uniform(0, 2 * math.pi)))
        return PersonPath(self.person, ts, xy, self.height_m)

    # --- walking ------------------------------------------------------------------------------------

    @property
    def pos(self) -> Point:
        return (self.way[-1][1], self.way[-1][2])

    def _mark(self, t: float, p: Point) -> None:
        if t <= self.way[-1][0] + 1e-3:
            t = self.way[-1][0] + 1e-3
        self.way.append((t, float(p[0]), float(p[1])))

    def _walk(self, points: list[Point]) -> None:
        for a, b in itertools.pairwise(points):
            d = math.dist(a, b)
            if d < 1e-3:
                continue
            self.t += d / (self.speed * float(self.rng.uniform(0.9, 1.1)))
            self._mark(self.t, b)

    def walk_straight(self, p: Point) -> None:
        """Walk straight to a point (through a door, along a shelf), without route planning."""
        self._walk([self.pos, p])
        self._face = None

    def walk_to(self, p: Point) -> None:
        """Walk the shortest clear route to a floor point."""
        self._walk(self.plan.route(self.pos, p))
        self._face = None

    def wait(self, seconds: float) -> None:
        """Stand still (looking, thinking, queueing) for `seconds`."""
        self.t += max(0.0, seconds)
        self._mark(self.t, self.pos)

    def wait_until(self, t: float) -> None:
        if t > self.t:
            self.wait(t - self.t)

    def _approach(self, shelf: int, s: float) -> None:
        """Stand in front of `s` on a shelf, within easy reach; sidestep when already at that gondola."""
        sh = self.shop.shelves[shelf]
        if self._face is not None:
            gondola, s_here = self._face
            if gondola == sh.gondola and abs(s_here - s) < 0.3:
                return
        s_stand = s + float(self.rng.uniform(-0.12, 0.12))
        away = self.away + float(self.rng.uniform(-0.05, 0.05))
        spot = self.shop.stand_spot(shelf, s_stand, away)
        # People keep out of each other's bodies: with someone already standing there, step to the
        # side (still within reach of the facing), or wait for them to move on.
        arrive = self.t + math.dist(self.pos, spot) / self.speed
        if self._crowded(spot, arrive, arrive + STAND_CHECK_S) < PERSONAL_SPACE_M:
            options = [s + d for d in (-0.3, 0.3, -0.45, 0.45)]
            clear = [(self._crowded(self.shop.stand_spot(shelf, o, away), arrive, arrive + STAND_CHECK_S), o)
                     for o in options]
            best_clear, best_s = max(clear, key=lambda c: (c[0], -abs(c[1] - s)))
            if best_clear >= PERSONAL_SPACE_M:
                s_stand = best_s
                spot = self.shop.stand_spot(shelf, s_stand, away)
            else:
                self.wait_until(self._free_after(spot, arrive))

        if self._face is not None and self._face[0] == sh.gondola:
            self._walk([self.pos, spot])
        else:
            self.walk_to(spot)
        self._face = (sh.gondola, s_stand)
        self.wait(float(self.rng.uniform(0.3, 1.5)))

    def _others_at(self, t0: float, t1: float) -> list[np.ndarray]:
        """Other people's positions, sampled at 5 Hz over [t0, t1] where known."""
        out = []
        ts = np.arange(t0, t1 + 1e-9, 0.2)
        for o in self.others:
            if o is self or not o.way:
                continue
            w = np.array(o.way)
            live = (ts >= w[0, 0]) & (ts <= w[-1, 0])
            if live.any():
                tt = ts[live]
                out.append(np.stack([tt, np.interp(tt, w[:, 0], w[:, 1]), np.interp(tt, w[:, 0], w[:, 2])], axis=1))
        return out

    def _crowded(self, spot: Point, t0: float, t1: float) -> float:
        """Closest anyone else comes to `spot` during [t0, t1] (inf when nobody is around)."""
        best = math.inf
        for pts in self._others_at(t0, t1):
            best = min(best, float(np.min(np.hypot(pts[:, 1] - spot[0], pts[:, 2] - spot[1]))))
        return best

    def _free_after(self, spot: Point, t0: float) -> float:
        """When nobody stands within personal space of `spot` any more (at most a minute on)."""
        t = t0
        while t < t0 + 60.0 and self._crowded(spot, t, t + STAND_CHECK_S) < PERSONAL_SPACE_M:
            t += 1.0
        return t

    def approach(self, col: Column) -> None:
        """Walk up to a given facing and stand ready to reach it."""
        self._approach(col.shelf, col.s)

    def go_to(self, key: str) -> Column:
        """Walk up to one facing of a product and look at it; returns the facing."""
        col = self._column(key)
        self._approach(col.shelf, col.s)
        return col

    # --- hands --------------------------------------------------------------------------------------

    def _column(self, key: str, plate: str | None = None, straddling: bool | None = None) -> Column:
        cols = self.shop.columns_of(key)
        if not cols:
            raise ValueError(f"no product {key!r} on the shelves")
        if plate is not None:
            idx = self.shop.plate(plate).index
            cols = [c for c in cols if any(p == idx for p, _ in c.split)] or cols
        if straddling is not None:
            cols = [c for c in cols if (len(c.split) > 1) == straddling] or cols
        if self._face is not None:
            near = [c for c in cols if self.shop.shelves[c.shelf].gondola == self._face[0]
                    and abs(c.s - self._face[1]) < 0.3]
            if near and self.rng.random() < 0.7:
                cols = near
        return cols[int(self.rng.integers(len(cols)))]

    def _wobble(self, amount: float, lo_hz: float, hi_hz: float) -> tuple[tuple[float, float, float], ...]:
        """A hand's unsteadiness: a few sway terms, slower ones larger (amplitudes add up to `amount`)."""
        hz = np.exp(self.rng.uniform(math.log(lo_hz), math.log(hi_hz), 5))
        weights = self.rng.uniform(0.3, 1.0, 5) / np.sqrt(hz)
        amps = weights / weights.sum() * amount
        return tuple((float(a), float(f), float(self.rng.uniform(0, 2 * math.pi))) for a, f in zip(amps, hz))

    def _target(self, shelf: int, s: float) -> tuple[float, float, float]:
        sh = self.shop.shelves[shelf]
        x, y = sh.point(s, float(self.rng.uniform(0.04, SHELF_DEPTH_M / 2 - 0.02)))
        return (x, y, sh.height + float(self.rng.uniform(0.04, 0.15)))

    def _reach_time(self, shelf: int) -> float:
        base = float(self.rng.uniform(0.3, 0.6))
        number = self.shop.shelves[shelf].number
        if number == 1 and self.shop.shelves[shelf].gondola <= 4:
            base += float(self.rng.uniform(0.4, 0.9))  # bending down to the bottom shelf
        return base

    def _reach(self, shelf: int, s: float, t0: float, t_on: float, t_off: float, t1: float) -> None:
        """Record the hand's trip and lean the body a little towards the shelf meanwhile."""
        sh = self.shop.shelves[shelf]
        shoulder = (self.pos[0] - sh.facing[0] * 0.1, self.pos[1] - sh.facing[1] * 0.1, 0.82 * self.height_m)
        self.reaches.append(Reach(self.person, t0, t_on, t_off, t1, self._target(shelf, s), shoulder))
        here = self.pos
        lean = float(self.rng.uniform(0.03, 0.12))
        forward = (here[0] - sh.facing[0] * lean, here[1] - sh.facing[1] * lean)
        self._mark(t0, here)
        self._mark(t_on, forward)
        self._mark(t_off, forward)
        self._mark(t1, here)
        self.t = max(self.t, t1)

    def _press(self, t0: float, t1: float, force: float, split: Split, rise: float, wobble: float,
               lo_hz: float = 1.0, hi_hz: float = 8.0, kind: str = "hand") -> None:
        self.acts.append(Press(self.person, t0, t1, force, split, rise, self._wobble(wobble, lo_hz, hi_hz), kind))

    def take(self, key: str, n: int = 1, together: bool = True, plate: str | None = None,
             straddling: bool | None = None) -> None:
        """Take `n` units of a product from one facing: all in one grab, or one after another.

        The grab presses on the plate before the lift (the hand pushes the package down or tips
        it), and one-after-another lifts keep the hand on the shelf in between, so the steps of
        one take overlap with its own hand noise.
        """
        self.take_from(self._column(key, plate, straddling), n, together)

    def take_from(self, col: Column, n: int = 1, together: bool = True) -> None:
        """Take `n` units from one given facing (see `take`)."""
        self._approach(col.shelf, col.s)
        self.wait(float(self.rng.uniform(0.3, 3.0)))
        t0 = self.t
        t_on = t0 + self._reach_time(col.shelf)
        t_lift = t_on + float(self.rng.uniform(0.2, 1.0))
        lifts: list[tuple[float, float]] = []
        for i in range(n):
            if i:
                gap = float(self.rng.uniform(0.0, 0.12)) if together else float(self.rng.uniform(0.7, 1.8))
                t_lift = lifts[-1][0] + (lifts[-1][1] if not together else 0.0) + gap
            lifts.append((t_lift, float(self.rng.uniform(0.06, 0.25))))
        t_off = max(t + dur for t, dur in lifts)
        force = float(self.rng.uniform(10.0, 120.0))
        self._press(t_on, t_off + float(self.rng.uniform(0.0, 0.15)), force, col.split,
                    float(self.rng.uniform(0.05, 0.15)), float(self.rng.uniform(0.1, 0.4)))
        for t, dur in lifts:
            self.acts.append(Lift(self.person, t, dur, col.shelf, col.s, col.key))
        t1 = t_off + float(self.rng.uniform(0.25, 0.6))
        self._reach(col.shelf, col.s, t0, t_on, t_off, t1)
        self.wait(float(self.rng.uniform(0.3, 1.0)))

    def _set_down(self, key: str, shelf: int, s: float, width: float, weight: float) -> None:
        self._approach(shelf, s)
        self.wait(float(self.rng.uniform(0.2, 1.0)))
        t0 = self.t
        t_on = t0 + self._reach_time(shelf)
        t_place = t_on + float(self.rng.uniform(0.05, 0.3))
        dur = float(self.rng.uniform(0.1, 0.35))
        self.acts.append(Place(self.person, t_place, dur, shelf, s, key, float(self.rng.uniform(0.05, 0.35)),
                               float(self.rng.uniform(0.04, 0.15))))
        t_off = t_place + dur + float(self.rng.uniform(0.1, 0.6))
        self._press(t_place, t_off, float(self.rng.uniform(10.0, 80.0)), self.shop.split_at(shelf, s, width),
                    float(self.rng.uniform(0.05, 0.2)), float(self.rng.uniform(0.1, 0.4)))
        t1 = t_off + float(self.rng.uniform(0.25, 0.6))
        self._reach(shelf, s, t0, t_on, t_off, t1)
        self.wait(float(self.rng.uniform(0.3, 1.0)))

    def put_back(self, key: str, where: str | None = None, plate: str | None = None) -> None:
        """Put a held unit of `key` back: on its own facing (`where=None`), or on another product's.

        `where` names the product whose facing the unit is set down on (a wrong shelf when that
        product lives elsewhere); `plate` narrows the choice of facing.
        """
        it = self.shop.items[key]
        if where is None:
            col = self._column(key, plate)
            s = col.s + float(self.rng.uniform(-0.01, 0.01))
        else:
            col = self._column(where, plate)
            s = col.s + float(self.rng.uniform(-0.3, 0.3)) * col.width
        assert it.unit_g is not None
        self._set_down(key, col.shelf, s, it.width_m, it.unit_g)

    def put_down_own(self, name: str, where: str) -> None:
        """Set down something of one's own (e.g. a water bottle brought in) on a product's facing."""
        if name not in self.belongings:
            raise ValueError(f"{self.person} carries no {name!r}")
        col = self._column(where)
        self._set_down(name, col.shelf, col.s + float(self.rng.uniform(-0.02, 0.02)), 0.07, self.belongings[name])
        self.own_spots[name] = col

    def pick_up_own(self, name: str) -> None:
        """Pick one's own item up again from where it was set down."""
        col = self.own_spots.pop(name, None)
        if col is None:
            raise ValueError(f"{self.person} has not set down {name!r}")
        self._approach(col.shelf, col.s)
        t0 = self.t
        t_on = t0 + self._reach_time(col.shelf)
        t_lift = t_on + float(self.rng.uniform(0.15, 0.6))
        dur = float(self.rng.uniform(0.06, 0.2))
        self._press(t_on, t_lift + dur, float(self.rng.uniform(10.0, 60.0)), col.split, 0.08,
                    float(self.rng.uniform(0.1, 0.3)))
        self.acts.append(Lift(self.person, t_lift, dur, col.shelf, col.s, name))
        self._reach(col.shelf, col.s, t0, t_on, t_lift + dur, t_lift + dur + float(self.rng.uniform(0.25, 0.5)))
        self.wait(float(self.rng.uniform(0.3, 1.0)))

    def touch(self, key: str) -> None:
        """Touch or nudge a product without taking it (reading a label, straightening a row)."""
        col = self._column(key)
        self._approach(col.shelf, col.s)
        t0 = self.t
        t_on = t0 + self._reach_time(col.shelf)
        t_off = t_on + float(self.rng.uniform(0.3, 1.5))
        self._press(t_on, t_off, float(self.rng.uniform(20.0, 250.0)), col.split,
                    float(self.rng.uniform(0.05, 0.2)), float(self.rng.uniform(0.2, 0.5)))
        self._reach(col.shelf, col.s, t0, t_on, t_off, t_off + float(self.rng.uniform(0.25, 0.5)))
        self.wait(float(self.rng.uniform(0.3, 1.5)))

    def rest_hand(self, key: str, seconds: float) -> None:
        """Rest a palm (or lean a forearm) on a product's plate for a while: a large, wobbling load."""
        col = self._column(key)
        self._approach(col.shelf, col.s)
        self._lean_on(col, self.t + float(self.rng.uniform(0.3, 0.6)), seconds)
        self.wait(seconds + 0.8)

    def _lean_on(self, col: Column, t_on: float, seconds: float) -> None:
        s = col.s + float(self.rng.uniform(-0.04, 0.04))
        split = self.shop.split_at(col.shelf, s, 0.09)
        force = float(self.rng.uniform(250.0, 1800.0))
        self._press(t_on, t_on + seconds, force, split, float(self.rng.uniform(0.2, 0.6)),
                    float(self.rng.uniform(0.1, 0.35)), 0.2, 3.0, kind="rest")
        sh = self.shop.shelves[col.shelf]
        shoulder = (self.pos[0] - sh.facing[0] * 0.1, self.pos[1] - sh.facing[1] * 0.1, 0.82 * self.height_m)
        self.reaches.append(Reach(self.person, t_on - 0.4, t_on, t_on + seconds, t_on + seconds + 0.4,
                                  self._target(col.shelf, s), shoulder))

    def lean_across(self, rest: Column, take: Column) -> None:
        """Lean on one plate with one hand while taking from another facing with the other.

        The two facings should be within arm's reach of one spot (same gondola, close along it).
        """
        self._approach(rest.shelf, rest.s)
        self._face = (self.shop.shelves[rest.shelf].gondola, (rest.s + take.s) / 2)
        start = self.t + float(self.rng.uniform(0.2, 0.5))
        self.t = start + float(self.rng.uniform(0.5, 1.5))
        n_acts = len(self.acts)
        self.take_from(take)
        seconds = self.t - start + float(self.rng.uniform(0.3, 1.5))
        self._lean_on(rest, start, seconds)
        self.acts[n_acts:] = sorted(self.acts[n_acts:], key=_act_time)
        self.wait_until(start + seconds + 0.3)

    def scoop(self, key: str, grams: float, scoops: int | None = None) -> None:
        """Scoop loose goods from a bin into a bag, in one to three scoops adding up to `grams`."""
        (col,) = self.shop.columns_of(key)
        if not col.loose:
            raise ValueError(f"{key!r} is not sold by weight")
        self._approach(col.shelf, col.s)
        k = scoops or int(self.rng.integers(1, 4))
        parts = self.rng.dirichlet(np.full(k, 4.0)) * grams
        for g in parts:
            t0 = self.t
            t_on = t0 + float(self.rng.uniform(0.4, 0.8))
            dig = float(self.rng.uniform(0.4, 1.2))
            dur = float(self.rng.uniform(0.3, 0.8))
            self._press(t_on, t_on + dig + dur * 0.5, float(self.rng.uniform(80.0, 400.0)), col.split,
                        float(self.rng.uniform(0.1, 0.3)), float(self.rng.uniform(0.2, 0.45)), kind="scoop")
            self.acts.append(Scoop(self.person, t_on + dig, dur, col.index, float(g)))
            t1 = t_on + dig + dur + float(self.rng.uniform(0.3, 0.7))
            self._reach(col.shelf, col.s, t0, t_on, t_on + dig + dur, t1)
            self.wait(float(self.rng.uniform(0.3, 1.2)))

    def pour_back(self, key: str, grams: float) -> None:
        """Pour some loose goods from the bag back into their bin."""
        (col,) = self.shop.columns_of(key)
        self._approach(col.shelf, col.s)
        t0 = self.t
        t_on = t0 + float(self.rng.uniform(0.4, 0.8))
        dur = float(self.rng.uniform(0.8, 2.0))
        self.acts.append(Scoop(self.person, t_on, dur, col.index, -float(grams)))
        self._press(t_on, t_on + dur, float(self.rng.uniform(20.0, 100.0)), col.split, 0.2,
                    float(self.rng.uniform(0.2, 0.4)), kind="scoop")
        self._reach(col.shelf, col.s, t0, t_on, t_on + dur, t_on + dur + 0.5)

    def give(self, other: Shopper, key: str) -> None:
        """Hand a held unit of `key` to `other`; both must already stand together (see Scene.meet)."""
        t = max(self.t, other.t) + float(self.rng.uniform(0.5, 1.5))
        self.acts.append(Give(self.person, t, other.person, key))
        self.wait_until(t + 0.5)
        other.wait_until(t + 0.5)

    def leave(self) -> None:
        """Walk out through the exit; `exit_t` is when the body crosses the exit line."""
        (x0, y0), (x1, _) = self.shop.exit
        x = float(self.rng.uniform(x0 + 0.2, x1 - 0.2))
        self.walk_to((x, y0 + 0.45))
        inside, outside = (x, y0 + 0.45), (x + float(self.rng.uniform(-0.1, 0.1)), y0 - 0.4)
        d = math.dist(inside, outside)
        t_start = self.t
        self._walk([inside, outside])
        frac = 0.45 / d
        self.exit_t = t_start + frac * (self.t - t_start)
        self.wait(0.3)


def _act_time(act: Act) -> float:
    return act.t0 if isinstance(act, Press) else act.t
