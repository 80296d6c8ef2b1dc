"""Product inference: from a settled weight change to the products and counts that explain it.

Every hypothesis ("2 x cola 500 ml", "1 x cola + 1 x cider", "312 g of loose almonds") gets a
log-likelihood from how well its weight fits the change, given each product's unit spread and the
plates' noise, plus a prior: fewer units and fewer distinct products are likelier, products stocked
on the changed plates are likelier than products from elsewhere, and every plate that changed must
hold one of the hypothesis' products (or touch a plate that does, for a unit straddling two).
The posterior over all hypotheses and an "unexplained" alternative is the product confidence.
Weight alone may not decide (flavour variants within grams of each other); the caller adds what
else it knows: where the hand was, and which products the nearby carts hold.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from appliance.config import Product, Sensor, StoreConfig
from appliance.events import PlateChange, ShelfEvent

MAX_UNITS = 10
LOG_EXTRA_UNIT = math.log(0.35)
LOG_EXTRA_PRODUCT = math.log(0.03)
LOG_NOT_STOCKED_HERE = math.log(0.15)
LOG_PLATE_UNEXPLAINED = math.log(0.002)
LOG_PLATE_TOUCHING = math.log(0.01)
LOG_UNEXPLAINED = math.log(0.02) - math.log(5000.0)
# Stock set down that no cart holds: only someone the box lost track of could have had it.
LOG_UNIT_NOBODY_HOLDS = math.log(0.05)
LOG_BY_WEIGHT_DENSITY = -math.log(3000.0)
MEASURE_FLOOR_G = 1.0
UNKNOWN_SD_SHARE = 0.7  # a change's error as a share of its plate's scatter, when not known better
MIN_BY_WEIGHT_G = 5.0  # a scoop lighter than this is noise, not a sale
# Load cells misread a change in proportion to it (calibration gain, creep after a heavy load).
RELATIVE_ERROR = 0.005


def measurement_sd(event: ShelfEvent) -> float:
    """How well an event's change was weighed (grams): each plate's own standard error of its change
    (from what was averaged before and after it; judged from its scatter when unknown), and a floor
    for what no plate reads better than."""
    return math.sqrt(sum(_change_var(c) for c in event.changes) + MEASURE_FLOOR_G**2)


def _change_var(change: PlateChange) -> float:
    if change.delta_sd_g is None:
        return (UNKNOWN_SD_SHARE * change.noise_g) ** 2
    return change.delta_sd_g**2


@dataclass(frozen=True, slots=True)
class Item:
    """Units of a product, or grams of a by-weight product (qty 0). `sku` may name a foreign item."""

    sku: str
    qty: int = 0
    grams: float = 0.0


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """One explanation of a weight change and its posterior probability."""

    items: tuple[Item, ...]
    log_lik: float
    probability: float = 0.0
    residual_g: float = 0.0

    @property
    def unexplained(self) -> bool:
        return not self.items


@dataclass(frozen=True, slots=True)
class Candidate:
    """A thing that could be on the changed plates: a product, or a foreign item of known weight."""

    sku: str
    unit_g: float
    unit_sd_g: float
    by_weight: bool
    plates: frozenset[str]
    log_prior: float = 0.0
    available: int | None = None  # units that can be involved without someone the box lost (None: any)
    single: bool = False  # one thing (a foreign item as it weighed), not units of a product: there once or not


class Planogram:
    """Which products stand on which plates, and the geometry needed to reason about them."""

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.products: dict[str, Product] = {p.sku: p for p in config.products}
        self.sensor_index = {s.id: i for i, s in enumerate(config.sensors)}
        self.sensors = {s.id: s for s in config.sensors}
        self.on_plate: dict[str, list[str]] = {s.id: [] for s in config.sensors}
        self.plates_of: dict[str, list[str]] = {}
        for st in config.stock:
            for sid in st.sensors:
                if st.sku not in self.on_plate[sid]:
                    self.on_plate[sid].append(st.sku)
                self.plates_of.setdefault(st.sku, [])
                if sid not in self.plates_of[st.sku]:
                    self.plates_of[st.sku].append(sid)
        self.at: dict[str, tuple[float, float]] = {st.sku: st.at for st in config.stock if st.at is not None}

    def candidate(self, sku: str, log_prior: float = 0.0) -> Candidate:
        p = self.products[sku]
        return Candidate(sku, p.unit_g or 0.0, p.unit_spread_g, p.by_weight,
                         frozenset(self.plates_of.get(sku, ())), log_prior)

    def stocked(self, plates: Sequence[str]) -> list[str]:
        out: list[str] = []
        for sid in plates:
            for sku in self.on_plate.get(sid, ()):
                if sku not in out:
                    out.append(sku)
        return out


def along_shelf(x: float, y: float, plate: Sensor) -> float:
    """Signed distance (metres) of floor point x, y from the plate's centre, along the shelf."""
    fx, fy = plate.facing
    return (x - plate.pos[0]) * -fy + (y - plate.pos[1]) * fx


def place_log_likelihoods(skus: Sequence[str], hands: Sequence[tuple[float, float]], plate: Sensor,
                          planogram: Planogram, hand_sd_m: float) -> dict[str, float] | None:
    """How well the hand's places along the shelf during a take fit each product's facings on `plate`.

    Each product is taken from anywhere across its own facings: from its `at` halfway to the next
    product's `at` on either side (or to the plate's edge), a uniform spread, blurred by the
    tracker's hand error. The hand points are averaged, so several sightings of one touch count
    as one better measurement. None when a product has no `at` or no hand point is known: then
    only weight (and the carts) decide.

    Args:
        skus: the products that weight cannot tell apart.
        hands: floor x, y of the taker's hand at the plate while touching it.
        plate: the plate the weight left.
        planogram: where each product stands (`[[stock]] at`).
        hand_sd_m: the tracker's hand error.
    """
    if not hands or any(sku not in planogram.at for sku in skus):
        return None
    places = {sku: along_shelf(*planogram.at[sku], plate) for sku in skus}
    neighbours = [along_shelf(*planogram.at[other], plate) for other in planogram.on_plate.get(plate.id, ())
                  if other in planogram.at]
    hand = sum(along_shelf(x, y, plate) for x, y in hands) / len(hands)
    out: dict[str, float] = {}
    for sku, place in places.items():
        gaps = [abs(place - other) for other in neighbours if abs(place - other) > 1e-6]
        half = min(gaps) / 2 if gaps else plate.width / 2
        var = half * half / 3.0 + hand_sd_m * hand_sd_m / len(hands)
        out[sku] = _gauss(hand - place, var)
    return out


def _gauss(residual: float, var: float) -> float:
    return -0.5 * residual * residual / var - 0.5 * math.log(2 * math.pi * var)


def _beyond_available(c: Candidate, n: int) -> float:
    """Log prior of `n` units of `c` being involved when only `c.available` can be."""
    return 0.0 if c.available is None else max(0, n - c.available) * LOG_UNIT_NOBODY_HOLDS


def explain(
    event: ShelfEvent,
    planogram: Planogram,
    extra: Mapping[str, float] | None = None,
    foreign: Sequence[Candidate] = (),
    touching: Mapping[str, Sequence[str]] | None = None,
    available: Mapping[str, int] | None = None,
) -> list[Hypothesis]:
    """Hypotheses for one shelf event, best first, with posteriors that sum to 1.

    Args:
        event: the settled change (negative total: taken; positive: put down).
        planogram: the store's products and where they stand.
        extra: more products that could be involved with their log prior (for a put-down: the
            products the nearby carts hold, which may be returned anywhere).
        foreign: items known to sit on these plates that are not stock (put down earlier).
        touching: plate id -> neighbouring plate ids, for units straddling two plates.
        available: how many units of a product can be involved: for a put-down, what the carts that
            could return it hold; for a take of a product not stocked here, what was set down here.
            Every unit beyond is one only someone the box lost track of could have had.
    """
    plates = [c.sensor for c in event.changes]
    magnitude = abs(event.delta_g)
    cands: dict[str, Candidate] = {}
    for sku in planogram.stocked(plates):
        cands[sku] = planogram.candidate(sku)
    for sku, prior in (extra or {}).items():
        if sku in planogram.products:
            here = sku in cands
            c = planogram.candidate(sku, (0.0 if here else LOG_NOT_STOCKED_HERE) + prior)
            if not here:
                # A unit from a cart can be set down anywhere: it stands on whatever plates changed.
                c = Candidate(c.sku, c.unit_g, c.unit_sd_g, c.by_weight, frozenset(plates), c.log_prior)
            if available is not None and sku in available:
                c = replace(c, available=available[sku])
            cands[sku] = c
    for f in foreign:
        cands[f.sku] = f
    meas_var = measurement_sd(event) ** 2 + (RELATIVE_ERROR * magnitude) ** 2
    significant = [c.sensor for c in event.changes if abs(c.delta_g) >= max(3.0 * c.noise_g, 4.0)]
    touch = touching or {}

    total_change = sum(abs(c.delta_g) for c in event.changes) or 1.0
    share = {c.sensor: abs(c.delta_g) / total_change for c in event.changes}

    def plate_penalty(skus: Sequence[str]) -> float:
        """Changed plates that none of the products stands on make a hypothesis unlikely; a plate
        touching one of theirs less so (a unit pushed over the edge), in proportion to its share."""
        held: set[str] = set()
        for sku in skus:
            held |= cands[sku].plates
        pen = 0.0
        for sid in significant:
            if sid in held or not held:
                continue
            if any(n in held for n in touch.get(sid, ())):
                pen += LOG_PLATE_TOUCHING * min(1.0, share[sid] / 0.3)
            else:
                pen += LOG_PLATE_UNEXPLAINED
        return pen

    hyps: list[Hypothesis] = []
    units = [c for c in cands.values() if not c.by_weight and c.unit_g > 0]
    for c in units:
        centre = round(magnitude / c.unit_g)
        for n in {centre - 1, centre, centre + 1}:
            if not 1 <= n <= (1 if c.single else MAX_UNITS):
                continue
            resid = magnitude - n * c.unit_g
            var = n * c.unit_sd_g**2 + meas_var
            ll = (_gauss(resid, var) + (n - 1) * LOG_EXTRA_UNIT + c.log_prior + _beyond_available(c, n)
                  + plate_penalty([c.sku]))
            hyps.append(Hypothesis((Item(c.sku, n),), ll, residual_g=resid))
    for i, a in enumerate(units):
        for b in units[i + 1 :]:
            for na in range(1, 2 if a.single else MAX_UNITS):
                rest = magnitude - na * a.unit_g
                if rest < 0.5 * b.unit_g:
                    break
                nb = round(rest / b.unit_g)
                if not 1 <= nb <= (1 if b.single else MAX_UNITS - na):
                    continue
                resid = rest - nb * b.unit_g
                var = na * a.unit_sd_g**2 + nb * b.unit_sd_g**2 + meas_var
                ll = (_gauss(resid, var) + (na + nb - 1) * LOG_EXTRA_UNIT + LOG_EXTRA_PRODUCT
                      + a.log_prior + b.log_prior + _beyond_available(a, na) + _beyond_available(b, nb)
                      + plate_penalty([a.sku, b.sku]))
                hyps.append(Hypothesis((Item(a.sku, na), Item(b.sku, nb)), ll, residual_g=resid))
    for c in cands.values():
        if c.by_weight and magnitude >= MIN_BY_WEIGHT_G:
            ll = LOG_BY_WEIGHT_DENSITY + c.log_prior + plate_penalty([c.sku])
            hyps.append(Hypothesis((Item(c.sku, 0, round(magnitude, 1)),), ll))
    hyps.append(Hypothesis((), LOG_UNEXPLAINED, residual_g=magnitude))
    top = max(h.log_lik for h in hyps)
    weights = [math.exp(h.log_lik - top) for h in hyps]
    total = sum(weights)
    ranked = sorted(
        (Hypothesis(h.items, h.log_lik, w / total, h.residual_g) for h, w in zip(hyps, weights)),
        key=lambda h: (-h.probability, tuple((i.sku, i.qty) for i in h.items)),
    )
    return ranked
