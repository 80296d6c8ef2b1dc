"""The named scenarios, from one shopper taking one thing to a crowded, faulty, adversarial shop.

Each scenario is a short story written against a Scene (who comes in, what they do), plus how
the shop's sensors and tracker behave that day. What each person picks, where they stand and
every timing are drawn from the seed, so each seed is a different day of the same story. The
stories never look at how the appliance decides; they only play out what people do.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from appliance.sim.loadcells import SensorProfile
from appliance.sim.scene import Scene
from appliance.sim.shop import Column
from appliance.sim.shoppers import Shopper
from appliance.sim.tracker import TrackerProfile


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named story with its sensor and tracker behaviour.

    `single_shopper` is true when at most one visit is in the shop at any time; `difficulty`
    runs from 1 (easy) to 5 (adversarial); `params` are the story's tunable numbers, which
    `simulate(..., **overrides)` may change (e.g. `shoppers`, `duration_s`).
    """

    name: str
    description: str
    single_shopper: bool
    difficulty: int
    story: Callable[[Scene], None]
    sensors: SensorProfile = field(default_factory=SensorProfile)
    tracker: TrackerProfile = field(default_factory=TrackerProfile)
    params: tuple[tuple[str, float], ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.difficulty <= 5:
            raise ValueError(f"difficulty must be 1-5, got {self.difficulty}")


# --- story helpers -----------------------------------------------------------------------------------


def _packaged(sc: Scene) -> list[str]:
    return [k for k, it in sc.shop.items.items() if not it.by_weight]


def _loose(sc: Scene) -> list[str]:
    return [k for k, it in sc.shop.items.items() if it.by_weight]


def _keys(sc: Scene, n: int, exclude: tuple[str, ...] = ()) -> list[str]:
    pool = [k for k in _packaged(sc) if k not in exclude]
    picks = sc.rng.choice(len(pool), size=n, replace=False)
    return [pool[int(i)] for i in picks]


def _key(sc: Scene, exclude: tuple[str, ...] = ()) -> str:
    return _keys(sc, 1, exclude)[0]


def _max_units(sc: Scene, key: str) -> int:
    unit_g = sc.shop.items[key].unit_g or 0.0
    return 2 if unit_g > 900 else 3


def _shelf_of(sc: Scene, key: str) -> tuple[int, int]:
    col = sc.shop.columns_of(key)[0]
    sh = sc.shop.shelves[col.shelf]
    return sh.gondola, sh.number


def _elsewhere(sc: Scene, key: str) -> str:
    """Where a shopper sets down something they no longer want: another gondola (half the time),
    another shelf of the same gondola, or the next product along the same shelf (a wrong plate)."""
    g, n = _shelf_of(sc, key)
    roll = sc.rng.random()
    if roll < 0.5:
        pool = [k for k in _packaged(sc) if _shelf_of(sc, k)[0] != g]
    elif roll < 0.8:
        pool = [k for k in _packaged(sc) if _shelf_of(sc, k)[0] == g and _shelf_of(sc, k)[1] != n]
    else:
        pool = [k for k in _packaged(sc) if _shelf_of(sc, k) == (g, n) and k != key]
    pool = pool or [k for k in _packaged(sc) if k != key]
    return pool[int(sc.rng.integers(len(pool)))]


def _lean_pair(sc: Scene) -> tuple[Column, Column]:
    """A plate to lean on at waist or chest height and a facing on another shelf within the same reach."""
    cols = [c for c in sc.shop.columns if not c.loose]
    rests = [c for c in cols if sc.shop.shelves[c.shelf].number in (3, 4)]
    while True:
        rest = rests[int(sc.rng.integers(len(rests)))]
        g = sc.shop.shelves[rest.shelf].gondola
        takes = [c for c in cols if sc.shop.shelves[c.shelf].gondola == g and c.shelf != rest.shelf
                 and abs(c.s - rest.s) < 0.25 and sc.shop.shelves[c.shelf].number in (2, 5)]
        if takes:
            return rest, takes[int(sc.rng.integers(len(takes)))]


def _u(sc: Scene, lo: float, hi: float) -> float:
    return float(sc.rng.uniform(lo, hi))


def _first(sc: Scene) -> float:
    return sc.start + _u(sc, 5.0, 12.0)


def _glance(sc: Scene, p: Shopper, exclude: tuple[str, ...] = ()) -> None:
    """Walk up to some product and look at it for a moment."""
    p.go_to(_key(sc, exclude))
    p.wait(_u(sc, 1.0, 8.0))


def _errand(sc: Scene, p: Shopper, hard: float = 0.0) -> None:
    """A random shopping trip: a few stops, each with a behaviour drawn from what shoppers do.

    `hard` (0-1) raises the share of the awkward behaviours: wrong-shelf returns, resting hands,
    leaning across, own items set down.
    """
    rng = sc.rng
    holding: list[str] = []
    behaviours = {
        "take": 0.42, "take-several": 0.10, "take-one-by-one": 0.06, "look": 0.10, "touch": 0.08,
        "return": 0.07, "return-elsewhere": 0.02 + 0.06 * hard, "rest": 0.03 + 0.05 * hard,
        "lean": 0.02 + 0.05 * hard, "loose": 0.04, "own-item": 0.01 + 0.03 * hard,
    }
    names = list(behaviours)
    weights = [behaviours[n] for n in names]
    total = sum(weights)
    for _ in range(int(rng.integers(1, 6))):
        for _ in range(int(rng.integers(0, 3))):
            _glance(sc, p)
        what = names[int(rng.choice(len(names), p=[w / total for w in weights]))]
        key = _key(sc)
        if what == "take":
            p.take(key)
            holding.append(key)
        elif what == "take-several":
            p.take(key, n=int(rng.integers(2, _max_units(sc, key) + 1)), together=True)
            holding.append(key)
        elif what == "take-one-by-one":
            p.take(key, n=2, together=False)
            holding.append(key)
        elif what == "look":
            _glance(sc, p)
        elif what == "touch":
            p.touch(key)
        elif what in ("return", "return-elsewhere") and holding:
            back = holding.pop(int(rng.integers(len(holding))))
            p.put_back(back, where=_elsewhere(sc, back) if what == "return-elsewhere" else None)
        elif what in ("return", "return-elsewhere"):
            p.take(key)
            p.wait(_u(sc, 2.0, 12.0))
            p.put_back(key)
        elif what == "rest":
            p.rest_hand(key, _u(sc, 2.0, 10.0))
            p.take(key)
            holding.append(key)
        elif what == "lean":
            rest, take = _lean_pair(sc)
            p.lean_across(rest, take)
            holding.append(take.key)
        elif what == "loose":
            bin_key = _loose(sc)[int(rng.integers(len(_loose(sc))))]
            p.scoop(bin_key, _u(sc, 120.0, 600.0))
        elif "own-bottle" not in p.own_spots:
            p.belongings.setdefault("own-bottle", round(_u(sc, 350.0, 650.0), 1))
            p.put_down_own("own-bottle", key)
            p.wait(_u(sc, 2.0, 8.0))
            other = _key(sc)
            p.take(other)
            holding.append(other)
            if rng.random() < 0.6:
                p.pick_up_own("own-bottle")
    if rng.random() < 0.3:
        _glance(sc, p)
    p.leave()


def _arrivals(sc: Scene, n: int, window: float) -> list[float]:
    """Arrival times of n groups spread over `window` seconds (a Poisson process, sorted)."""
    times = sorted(float(t) for t in sc.rng.uniform(0.0, window, n))
    return [sc.start + 4.0 + t for t in times]


# --- the stories -------------------------------------------------------------------------------------


def _single_pick(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    if sc.rng.random() < 0.5:
        _glance(sc, p)
    p.take(_key(sc))
    p.leave()


def _multi_unit(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    a, b, c = _keys(sc, 3)
    p.take(a, n=int(sc.rng.integers(2, _max_units(sc, a) + 1)), together=True)
    p.take(b, n=2, together=False)
    if sc.rng.random() < 0.5:
        p.take(c, n=int(sc.rng.integers(1, 3)), together=bool(sc.rng.random() < 0.5))
    p.leave()


def _browse(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    for key in _keys(sc, int(sc.rng.integers(2, 5))):
        p.go_to(key)
        p.wait(_u(sc, 1.0, 6.0))
        if sc.rng.random() < 0.5:
            p.touch(key)
    if sc.rng.random() < 0.6:
        key = _key(sc)
        p.take(key)
        p.wait(_u(sc, 1.5, 6.0))
        p.put_back(key)
    p.leave()


def _return_same(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    back, keep = _keys(sc, 2)
    p.take(back, n=int(sc.rng.integers(1, 3)))
    if sc.rng.random() < 0.5:
        p.wait(_u(sc, 2.0, 8.0))
    else:
        _glance(sc, p, (back,))
    p.put_back(back)
    p.take(keep)
    p.leave()


def _return_wrong_shelf(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    back, keep = _keys(sc, 2)
    p.take(back)
    p.take(keep)
    p.wait(_u(sc, 1.0, 5.0))
    p.put_back(back, where=_elsewhere(sc, back))
    p.leave()


def _hand_rest(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    key = _key(sc)
    p.rest_hand(key, _u(sc, 3.0, 12.0))
    p.take(key)
    other = _key(sc, (key,))
    p.rest_hand(other, _u(sc, 2.0, 8.0))
    if sc.rng.random() < 0.5:
        p.take(other)
    p.leave()


def _lean_across(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    rest, take = _lean_pair(sc)
    p.lean_across(rest, take)
    if sc.rng.random() < 0.5:
        p.take(_key(sc))
    p.leave()


def _straddle(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    straddlers = sorted({c.key for c in sc.shop.columns if len(c.split) > 1 and not c.loose})
    a, b = (straddlers[int(i)] for i in sc.rng.choice(len(straddlers), size=2, replace=False))
    p.take(a, straddling=True)
    p.take(b, n=2, straddling=True)
    p.wait(_u(sc, 1.0, 4.0))
    p.put_back(b)
    p.leave()


def _loose_goods(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    bins = _loose(sc)
    first, second = (bins[int(i)] for i in sc.rng.choice(len(bins), size=2, replace=False))
    p.scoop(first, _u(sc, 150.0, 600.0))
    if sc.rng.random() < 0.4:
        p.wait(_u(sc, 1.0, 4.0))
        p.pour_back(first, _u(sc, 30.0, 100.0))
    if sc.rng.random() < 0.5:
        p.scoop(second, _u(sc, 80.0, 300.0), scoops=1)
    p.take(_key(sc))
    p.leave()


def _party(sc: Scene) -> None:
    size = int(sc.rng.integers(2, 5))
    people = sc.visit(_first(sc), party=size)
    for i, p in enumerate(people):
        if i and sc.rng.random() < 0.3:
            _glance(sc, p)
            p.leave()
            continue
        for key in _keys(sc, int(sc.rng.integers(1, 3))):
            p.take(key)
        if sc.rng.random() < 0.25:
            key = _key(sc)
            p.take(key)
            p.wait(_u(sc, 1.0, 5.0))
            p.put_back(key)
        p.leave()


def _strangers_handoff(sc: Scene, at: float) -> None:
    """Two strangers on their own passes; one hands the other something (the taker is charged)."""
    s1 = sc.visit(at)[0]
    s2 = sc.visit(at + _u(sc, 3.0, 8.0))[0]
    gift = _key(sc)
    s1.take(gift)
    _glance(sc, s2)
    sc.meet(s1, s2)
    s1.give(s2, gift)
    if sc.rng.random() < 0.3:
        s2.put_back(gift)
    s1.leave()
    s2.leave()


def _handoff(sc: Scene) -> None:
    a, b = sc.visit(_first(sc), party=2)
    key = _key(sc)
    a.take(key)
    sc.meet(a, b)
    a.give(b, key)
    b.take(_key(sc, (key,)))
    a.leave()
    b.leave()
    # (never before the recording starts: a take nobody could have seen is no test of the box)
    _strangers_handoff(sc, max(sc.start + 4.0, a.t - _u(sc, 10.0, 30.0)))


def _crowd(sc: Scene) -> None:
    _crowd_at(sc, _first(sc), int(sc.rng.integers(2, 4)))


def _crowd_at(sc: Scene, t: float, n: int) -> None:
    """n shoppers on their own passes, arriving seconds apart, pick side by side at one gondola."""
    gondola = int(sc.rng.integers(1, 5))
    cols = [c for c in sc.shop.columns if not c.loose and sc.shop.shelves[c.shelf].gondola == gondola]
    people: list[Shopper] = []
    for _ in range(n):
        people += sc.visit(t)
        t += _u(sc, 2.0, 7.0)
    # one facing per person, side by side along the gondola, each on a shelf of their own choosing
    length = max(c.s for c in cols)
    spacing = _u(sc, 0.3, 0.5)
    s0 = _u(sc, 0.05, max(0.06, length - spacing * (n - 1)))
    chosen: list[Column] = []
    for i in range(n):
        target = s0 + i * spacing
        shelf = int(sc.rng.choice(sorted({c.shelf for c in cols})))
        on_shelf = [c for c in cols if c.shelf == shelf]
        if chosen and sc.rng.random() < 0.3:
            # reaching into the neighbour's plate: same plate or the one beside it
            prev = chosen[-1]
            on_shelf = [c for c in cols if c.shelf == prev.shelf and c.index != prev.index] or on_shelf
            target = prev.s
        chosen.append(min(on_shelf, key=lambda c: abs(c.s - target)))
    for p, col in zip(people, chosen):
        p.approach(col)
    together = max(p.t for p in people)
    for p, col in zip(people, chosen):
        p.wait_until(together + _u(sc, 0.0, 1.5))
        p.take_from(col, n=int(sc.rng.integers(1, 3)))
        if sc.rng.random() < 0.5:
            near = [c for c in cols if abs(c.s - col.s) < 0.3 and c.index != col.index]
            if near:
                p.take_from(near[int(sc.rng.integers(len(near)))])
    last = people[int(sc.rng.integers(n))]
    last.put_back(chosen[people.index(last)].key)
    for p in people:
        p.leave()


def _noisy_sensors(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    keys = _keys(sc, 4)
    for key in keys[:3]:
        p.take(key)
    p.put_back(keys[1])
    p.take(keys[3], n=2)
    p.leave()


def _tracker_faults(sc: Scene) -> None:
    gondola_keys = [k for k in _packaged(sc) if _shelf_of(sc, k)[0] in (1, 2)]
    t = _first(sc)
    people: list[Shopper] = []
    for _ in range(3):
        people += sc.visit(t)
        t += _u(sc, 4.0, 10.0)
    for i, p in enumerate(people):
        keys = [gondola_keys[int(j)] for j in sc.rng.choice(len(gondola_keys), size=2, replace=False)]
        if i % 2:
            keys.reverse()
        for key in keys:
            p.take(key)
        _glance(sc, p)
        p.leave()


def _foreign_item(sc: Scene) -> None:
    (p,) = sc.visit(_first(sc))
    drinks = [k for k in _packaged(sc) if _shelf_of(sc, k)[0] == 1]
    where = drinks[int(sc.rng.integers(len(drinks)))]
    p.belongings["own-bottle"] = round(_u(sc, 350.0, 650.0), 1)
    p.put_down_own("own-bottle", where)
    p.wait(_u(sc, 1.0, 4.0))
    p.take(_key(sc))
    if sc.rng.random() < 0.6:
        p.pick_up_own("own-bottle")
    p.leave()


def _busy(sc: Scene, hard: float) -> None:
    """`shoppers` visits arriving at random over the day: mostly single shoppers and parties on
    errands, now and then a crowd at one gondola or two strangers handing something over."""
    n = int(sc.params["shoppers"])
    window = float(sc.params["duration_s"]) - 240.0
    arrivals = _arrivals(sc, n, max(30.0, window))
    i = 0
    while i < len(arrivals):
        at, left = arrivals[i], len(arrivals) - i
        roll = sc.rng.random()
        if roll < 0.08 and left >= 2:
            k = min(left, int(sc.rng.integers(2, 4)))
            _crowd_at(sc, at, k)
            i += k
            continue
        if roll < 0.14 and left >= 2:
            _strangers_handoff(sc, at)
            i += 2
            continue
        size = 1 if sc.rng.random() < 0.75 else int(sc.rng.integers(2, 5))
        people = sc.visit(at, party=size)
        if size > 1 and sc.rng.random() < 0.5:
            a, b = people[0], people[1]
            key = _key(sc)
            a.take(key)
            sc.meet(a, b)
            a.give(b, key)
        for p in people:
            _errand(sc, p, hard)
        i += 1


def _rush(sc: Scene) -> None:
    _busy(sc, 0.3)


def _day(sc: Scene) -> None:
    _busy(sc, 0.3)


def _adversarial(sc: Scene) -> None:
    t = _first(sc)
    a, b, c = sc.visit(t, party=3)
    strangers = [sc.visit(t + _u(sc, 2.0, 5.0))[0], sc.visit(t + _u(sc, 6.0, 10.0))[0]]
    # the party's first member leans on a plate while two strangers pick beside them, one from the
    # same or the neighbouring plate, all at once
    rest, take = _lean_pair(sc)
    gondola = sc.shop.shelves[rest.shelf].gondola
    cols = [col for col in sc.shop.columns if not col.loose and sc.shop.shelves[col.shelf].gondola == gondola]
    beside = [[col for col in cols if abs(col.s - rest.s) < reach and col.index not in (rest.index, take.index)]
              for reach in (0.2, 0.6)]
    picks = [beside[0][int(sc.rng.integers(len(beside[0])))] if beside[0] else take,
             beside[1][int(sc.rng.integers(len(beside[1])))] if beside[1] else take]
    a.approach(rest)
    for s, col in zip(strangers, picks):
        s.approach(col)
    together = max(p.t for p in (a, *strangers))
    a.wait_until(together)
    lean_start = a.t
    a.lean_across(rest, take)
    for s, col in zip(strangers, picks):
        s.wait_until(lean_start + _u(sc, 0.0, 2.0))
        s.take_from(col, n=int(sc.rng.integers(1, 3)), together=bool(sc.rng.random() < 0.5))
    sc.meet(a, b)
    a.give(b, take.key)
    back = _key(sc)
    b.take(back)
    b.put_back(back, where=_elsewhere(sc, back))
    c.scoop(_loose(sc)[int(sc.rng.integers(3))], _u(sc, 100.0, 500.0))
    c.rest_hand(_key(sc), _u(sc, 3.0, 9.0))
    c.take(_key(sc), n=2, together=False)
    straddlers = [col for col in sc.shop.columns if len(col.split) > 1 and not col.loose]
    strangers[0].take_from(straddlers[int(sc.rng.integers(len(straddlers)))])
    strangers[1].belongings["own-bottle"] = round(_u(sc, 350.0, 650.0), 1)
    strangers[1].put_down_own("own-bottle", _key(sc))
    gift = _key(sc)
    strangers[0].take(gift)
    sc.meet(strangers[0], strangers[1])
    strangers[0].give(strangers[1], gift)
    if sc.rng.random() < 0.5:
        strangers[1].pick_up_own("own-bottle")
    for p in (a, b, c, *strangers):
        p.leave()


_NOISY = SensorProfile(noise_median_g=1.0, noise_spread=1.17, drift_g_per_h=25.0, gain_sd=0.002, creep=0.004,
                       jitter_s=0.004, drop_p=0.03, gaps_per_h=40.0, fault_p=0.004, spike_p=0.0005,
                       vibration_g=5.0, dead_silent=1, dead_faulting=1)
_FAULTY_TRACKER = TrackerProfile(noise_m=0.10, miss_p=0.08, hand_share=0.2, fragment_per_min=2.0, switch_p=0.5,
                                 switch_dist_m=0.6, ghost_per_min=1.0, gate_track_share=0.05)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("single-pick", "one shopper takes one unit of one product and leaves", True, 1, _single_pick,
             tracker=TrackerProfile(hand_share=0.7)),
    Scenario("multi-unit", "one shopper takes several units: some in one grab, some one after another", True, 1,
             _multi_unit),
    Scenario("browse", "one shopper looks, touches, picks something up and puts it back; takes nothing", True, 1,
             _browse),
    Scenario("return-same", "one shopper puts a unit back where it came from and keeps another product", True, 2,
             _return_same),
    Scenario("return-wrong-shelf", "one shopper puts a unit back on another gondola's or shelf's plate", True, 2,
             _return_wrong_shelf),
    Scenario("hand-rest", "one shopper rests a palm on plates (large, wobbling loads) before and while taking",
             True, 2, _hand_rest),
    Scenario("lean-across", "one shopper leans on one plate while taking from another shelf within reach", True, 3,
             _lean_across, tracker=TrackerProfile(hand_share=0.4)),
    Scenario("straddle", "one shopper takes units that rest across two plates and puts one back", True, 2,
             _straddle),
    Scenario("loose-goods", "one shopper scoops loose goods sold by weight, maybe pours some back", True, 2,
             _loose_goods),
    Scenario("party", "a group of 2-4 on one pass shops in different aisles; one shared cart", False, 3, _party),
    Scenario("handoff", "items handed over within a party and between strangers; the taker pays", False, 3,
             _handoff),
    Scenario("crowd", "2-3 shoppers on their own passes pick side by side at one gondola at once", False, 4,
             _crowd, tracker=TrackerProfile(hand_share=0.4, switch_p=0.25)),
    Scenario("noisy-sensors", "one shopper; noisy, drifting plates with drops, glitches and two dead sensors", True,
             3, _noisy_sensors, sensors=_NOISY),
    Scenario("tracker-faults", "three shoppers crossing in two aisles; tracks fragment, swap ids, ghosts appear",
             False, 3, _tracker_faults, tracker=_FAULTY_TRACKER),
    Scenario("foreign-item", "one shopper sets down their own bottle on a shelf, maybe picks it up again", True, 2,
             _foreign_item),
    Scenario("rush", "a busy 10 minutes: 12 visits arrive at random and do everything shoppers do", False, 4,
             _rush, params=(("shoppers", 12), ("duration_s", 600.0))),
    Scenario("day", "one hour, 20 visits, everything mixed (long: not in the standard suite)", False, 4, _day,
             params=(("shoppers", 20), ("duration_s", 3600.0))),
    Scenario("adversarial", "all hard behaviours at once, with noisy sensors and a faulty tracker", False, 5,
             _adversarial, sensors=_NOISY, tracker=_FAULTY_TRACKER),
)}

STANDARD_SUITE: tuple[str, ...] = tuple(name for name in SCENARIOS if name != "day")
