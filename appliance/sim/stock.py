"""Units on the shelves and in people's hands: plays every shopper's acts in time order.

Plans say "lift a cola near here"; this module decides which physical unit that is (the front
unit of the nearest facing that still holds one), moves it, and keeps the ledger the truth comes
from. The rule for who pays (documented in truth.json too): a unit is charged to the visit whose
member lifted it from a shelf, wherever it goes afterwards (a handover to a companion or to a
stranger does not move the charge); a unit set down on any shelf is nobody's again. Loose goods
are charged to the scooping visit by the grams that left the bin, less what they poured back.
Things people brought in themselves are never anybody's charge.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from appliance.sim.acts import Give, Lift, Place, Press, Scoop, Split
from appliance.sim.shop import Shop
from appliance.sim.shoppers import Shopper

FOREIGN_WIDTH_M = 0.07
_REACH_ALONG_M = 0.45


@dataclass(slots=True)
class Unit:
    """One physical unit (or a foreign object); `taker` is the visit charged while it is off the shelf."""

    uid: int
    key: str
    sku: str | None
    grams: float
    taker: str | None = None


@dataclass(slots=True)
class _Spot:
    """Where units stand on a shelf: a planogram facing, or wherever someone set something down."""

    shelf: int
    s: float
    split: Split
    units: list[Unit]
    home: str | None


@dataclass(frozen=True, slots=True)
class Step:
    """A load change on one plate: `delta_g` applied over `dur` from `t`, landing with an overshoot."""

    plate: int
    t: float
    dur: float
    delta_g: float
    impact_g: float = 0.0
    impact_tau: float = 0.1


@dataclass(slots=True)
class Outcome:
    """What the acts did: plate load changes, the opening loads, and the ledger per visit."""

    opening_g: list[float]
    steps: list[Step] = field(default_factory=list)
    units: dict[str, dict[str, int]] = field(default_factory=dict)
    grams: dict[str, dict[str, float]] = field(default_factory=dict)
    events: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    misplaced: list[dict[str, Any]] = field(default_factory=list)
    left_behind: list[dict[str, Any]] = field(default_factory=list)


def _order(act: Lift | Place | Scoop | Give) -> float:
    return act.t


def resolve(shop: Shop, people: Sequence[Shopper]) -> Outcome:
    """Apply all people's acts to the opening stock in time order and return what changed."""
    uid = 0
    spots: list[_Spot] = []
    bins: dict[int, float] = {}
    for col, fill in zip(shop.columns, shop.opening):
        if col.loose:
            bins[col.index] = fill[0]
            spots.append(_Spot(col.shelf, col.s, col.split, [], None))
            continue
        units = []
        for grams in fill:
            units.append(Unit(uid, col.key, col.sku, grams))
            uid += 1
        spots.append(_Spot(col.shelf, col.s, col.split, units, col.key))
    opening = [0.0] * len(shop.plates)
    for spot in spots:
        for unit in spot.units:
            for plate, frac in spot.split:
                opening[plate] += unit.grams * frac
    for col in shop.columns:
        if col.loose:
            for plate, frac in col.split:
                opening[plate] += bins[col.index] * frac

    visit_of = {p.person: p.visit for p in people}
    held: dict[str, list[Unit]] = defaultdict(list)
    for p in people:
        for name, grams in p.belongings.items():
            held[p.person].append(Unit(uid, name, None, grams))
            uid += 1
    out = Outcome(opening)
    ledger_grams: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    acts = [a for p in people for a in p.acts if not isinstance(a, Press)]
    acts.sort(key=_order)

    def note(act: Lift | Place | Scoop | Give, what: str, **extra: Any) -> None:
        visit = visit_of[act.person]
        out.events.setdefault(visit, []).append({"t": round(act.t, 3), "person": act.person, "act": what, **extra})

    def plate_ids(split: Split) -> list[str]:
        return [shop.plates[i].id for i, _ in split]

    for act in acts:
        if isinstance(act, Lift):
            best: tuple[float, _Spot, Unit] | None = None
            for spot in spots:
                if spot.shelf != act.shelf or abs(spot.s - act.s) > _REACH_ALONG_M:
                    continue
                mine = [u for u in spot.units if u.key == act.key]
                # the nearest facing that still has one; an emptied facing sends the hand to the next
                if mine and (best is None or abs(spot.s - act.s) < best[0]):
                    best = (abs(spot.s - act.s), spot, mine[-1])
            if best is None:
                note(act, "reached-empty", key=act.key)
                continue
            _, spot, unit = best
            spot.units.remove(unit)
            held[act.person].append(unit)
            for plate, frac in spot.split:
                out.steps.append(Step(plate, act.t, act.dur, -unit.grams * frac))
            first_time = unit.sku is not None and unit.taker is None
            if first_time:
                unit.taker = visit_of[act.person]
            note(act, "take" if unit.sku else "pick-up-own", key=unit.key, sku=unit.sku,
                 grams=round(unit.grams, 2), sensors=plate_ids(spot.split), charged_to=unit.taker)
        elif isinstance(act, Place):
            mine = [u for u in held[act.person] if u.key == act.key]
            if not mine:
                note(act, "put-nothing", key=act.key)
                continue
            unit = mine[-1]
            held[act.person].remove(unit)
            home = next((sp for sp in spots if sp.home == act.key and sp.shelf == act.shelf
                         and abs(sp.s - act.s) < 0.02), None)
            if home is not None:
                target = home
            else:
                width = shop.items[act.key].width_m if act.key in shop.items else FOREIGN_WIDTH_M
                target = _Spot(act.shelf, act.s, shop.split_at(act.shelf, act.s, width), [], None)
                spots.append(target)
            target.units.append(unit)
            for plate, frac in target.split:
                g = unit.grams * frac
                out.steps.append(Step(plate, act.t, act.dur, g, g * act.impact, act.impact_tau))
            was = unit.taker
            unit.taker = None
            note(act, "put-back" if home is not None else ("put-elsewhere" if unit.sku else "put-down-own"),
                 key=unit.key, sku=unit.sku, grams=round(unit.grams, 2), sensors=plate_ids(target.split),
                 credited_to=was)
        elif isinstance(act, Scoop):
            col = shop.columns[act.column]
            visit = visit_of[act.person]
            if act.grams > 0:
                g = min(act.grams, max(0.0, bins[col.index] - 50.0))
            else:
                g = -min(-act.grams, ledger_grams[visit][col.sku])
            if abs(g) < 1e-9:
                note(act, "scoop-nothing", sku=col.sku)
                continue
            bins[col.index] -= g
            ledger_grams[visit][col.sku] += g
            for plate, frac in col.split:
                out.steps.append(Step(plate, act.t, act.dur, -g * frac))
            note(act, "scoop" if g > 0 else "pour-back", sku=col.sku, grams=round(abs(g), 2),
                 sensors=plate_ids(col.split))
        else:
            assert isinstance(act, Give)
            mine = [u for u in held[act.person] if u.key == act.key]
            if not mine:
                note(act, "give-nothing", key=act.key, to=act.to)
                continue
            unit = mine[-1]
            held[act.person].remove(unit)
            held[act.to].append(unit)
            note(act, "give", key=unit.key, sku=unit.sku, to=act.to, to_visit=visit_of[act.to],
                 charged_to=unit.taker)

    for p in people:
        for press in p.acts:
            if isinstance(press, Press) and press.kind == "rest":
                out.events.setdefault(p.visit, []).append({
                    "t": round(press.t0, 3), "person": p.person, "act": "rest-hand", "until": round(press.t1, 3),
                    "peak_g": round(press.force_g, 1), "sensors": plate_ids(press.split)})
    for events in out.events.values():
        events.sort(key=lambda e: e["t"])

    charged: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for items in held.values():
        for unit in items:
            if unit.sku is not None and unit.taker is not None:
                charged[unit.taker][unit.sku] += 1
    out.units = {v: dict(c) for v, c in charged.items()}
    out.grams = {v: {sku: g for sku, g in c.items() if g > 0.05} for v, c in ledger_grams.items()}
    for spot in spots:
        for unit in spot.units:
            if unit.sku is None:
                out.left_behind.append({"item": unit.key, "grams": round(unit.grams, 1),
                                        "sensors": plate_ids(spot.split)})
            elif spot.home != unit.key:
                out.misplaced.append({"sku": unit.sku, "sensors": plate_ids(spot.split)})
    return out
