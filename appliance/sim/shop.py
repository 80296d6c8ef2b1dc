"""The default simulated shop: floor plan, gondolas, plates, planogram and the stock on opening.

A small corner shop, 4.3 m x 4.6 m inside plus a 0.6 m vestibule before the front wall. Four
gondolas of five shelves stand in two aisles (one along each side wall, a back-to-back island in
the middle), loose goods sit in three bins on scales along the back wall. Every shelf is a row
of load-cell plates of about 0.1 m (the bottom shelves hold heavy goods on six wider plates).
Products stand in facings (columns front to back); a facing whose package crosses a plate
boundary rests on both plates, split by overlap, exactly as real stock does.

Coordinates: x to the right along the front wall, y into the shop, z up, metres. Each shelf has
its own coordinate `s` along it (from the end nearest the front wall).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.gate.passes import public_key_b64
from appliance.sim.catalogue import Item, catalogue

ISSUER = "sim-pay"
STANDARD_PLATE_M = 0.1016
SHELF_DEPTH_M = 0.40
SHELF_HEIGHTS_M = (0.15, 0.50, 0.85, 1.20, 1.55)
BIN_HEIGHT_M = 0.85

Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Rect:
    """An axis-aligned floor rectangle a person cannot walk through (a gondola, a wall)."""

    x0: float
    y0: float
    x1: float
    y1: float

    def grown(self, by: float) -> Rect:
        return Rect(self.x0 - by, self.y0 - by, self.x1 + by, self.y1 + by)

    def contains(self, p: Point, margin: float = 0.0) -> bool:
        return self.x0 + margin < p[0] < self.x1 - margin and self.y0 + margin < p[1] < self.y1 - margin


@dataclass(frozen=True, slots=True)
class Shelf:
    """One shelf of a gondola: a straight row of plates at one height."""

    index: int
    gondola: int
    number: int
    origin: Point
    along: Point
    facing: Point
    height: float
    length: float
    plates: tuple[int, ...]

    def point(self, s: float, out: float = 0.0) -> Point:
        """Floor point at `s` along the plates' centre line, `out` metres towards the aisle."""
        return (self.origin[0] + s * self.along[0] + out * self.facing[0],
                self.origin[1] + s * self.along[1] + out * self.facing[1])


@dataclass(frozen=True, slots=True)
class Plate:
    """One load cell. `index` is its position in store.toml's sensor list."""

    index: int
    id: str
    shelf: int
    s0: float
    width: float
    centre: tuple[float, float, float]
    facing: Point
    tare_g: float
    rate_hz: float

    @property
    def s_mid(self) -> float:
        return self.s0 + self.width / 2


@dataclass(frozen=True, slots=True)
class Column:
    """A facing: units of one product standing one behind the other at `s` along a shelf.

    `split` says how a unit's weight divides between plates (a package across a plate boundary
    rests on both). A loose-goods bin is a column whose content is grams, not units.
    """

    index: int
    shelf: int
    key: str
    sku: str
    s: float
    width: float
    split: tuple[tuple[int, float], ...]
    slots: int
    loose: bool = False


@dataclass(frozen=True, slots=True)
class Shop:
    """A whole simulated store: geometry, catalogue, planogram, opening stock and its store.toml."""

    seed: int
    items: dict[str, Item]
    plates: tuple[Plate, ...]
    shelves: tuple[Shelf, ...]
    columns: tuple[Column, ...]
    opening: tuple[tuple[float, ...], ...]
    obstacles: tuple[Rect, ...]
    size: Point
    entry: tuple[Point, Point]
    exit: tuple[Point, Point]
    config_raw: dict[str, Any]

    def plate(self, plate_id: str) -> Plate:
        for p in self.plates:
            if p.id == plate_id:
                return p
        raise KeyError(f"no plate {plate_id!r}")

    def columns_of(self, key: str) -> list[Column]:
        return [c for c in self.columns if c.key == key]

    def split_at(self, shelf: int, s: float, width: float) -> tuple[tuple[int, float], ...]:
        """How a package `width` wide standing at `s` divides its weight between the shelf's plates."""
        parts = _split(self.shelves[shelf], self.plates, s, width)
        if parts:
            return parts
        nearest = min(self.shelves[shelf].plates, key=lambda i: abs(self.plates[i].s_mid - s))
        return ((nearest, 1.0),)

    def stand_spot(self, shelf: int, s: float, away: float) -> Point:
        """Where a person stands to reach `s`: `away` metres out from the shelf's front face."""
        return self.shelves[shelf].point(s, SHELF_DEPTH_M / 2 + away)

    def gondola_of(self, plate: int) -> int:
        return self.shelves[self.plates[plate].shelf].gondola


def issuer_key(seed: int) -> Ed25519PrivateKey:
    """The simulated payment app's pass-signing key: deterministic from the seed, never a secret."""
    digest = hashlib.sha256(f"walkout-sim issuer {seed}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(digest)


# Planogram: per gondola, per shelf (bottom first), a list of (product key, plates it takes).
# Two keys in a tuple share one plate, each on half of it.
_PLANOGRAM: dict[int, tuple[list[tuple[str | tuple[str, str], int]], ...]] = {
    1: (
        [("water2l", 2), ("cola1500", 2), ("ojuice1l", 2)],
        [("water500", 3), ("water1l", 2), ("greentea500", 2), ("coldbrew500", 2), ("sports620", 3)],
        [("cola500", 3), ("colazero500", 3), ("cider500", 2), ("lager500", 2), ("sports340", 2)],
        [("bananamilk", 2), ("strawmilk", 2), ("melonmilk", 2), ("coffeecan", 2), ("coffeemild", 2),
         ("energy250", 2)],
        [("vitamin100", 2), ("aloe500", 2), ("cornsilk500", 2), ("sparklemon", 3), ("sparkplain", 3)],
    ),
    2: (
        [("chocopie12", 2), ("cookiefam", 2), ("ricecrack", 2)],
        [("honeybutter", 2), ("shrimp", 2), ("shrimpspicy", 2), ("cookies100", 2), ("cornsnack", 2)],
        [("pchipsorig", 2), ("pchipssour", 2), ("pchipscheese", 2), ("chocopie2", 2), ("custard6", 2)],
        [("pepero", 2), ("peperoalm", 1), ("peperonude", 2), ("chocbar", 1), ("chocbaralm", 1), ("jelly", 1),
         ("jellysour", 1), ("caramel", 1)],
        [(("gumstick", "gummint"), 1), ("mints", 2), ("xylitol", 2), ("lollipop", 1), ("energybar", 1),
         ("energybarchoc", 1), ("jerky", 2)],
    ),
    3: (
        [("shin5", 2), ("jin5", 2), ("rice3", 2)],
        [("shin", 2), ("jinmild", 2), ("jinspicy", 2), ("jjapa", 2), ("buldak", 1)],
        [("cupsmall", 2), ("cupbig", 2), ("rice1", 2), ("spam", 1), ("tuna", 1), ("tunaspicy", 1)],
        [("kimbaptuna", 2), ("kimbapbulgogi", 2), ("sandwich", 2), (("fishcake", "sausage"), 1), ("eggs2", 2)],
        [(("laver", "laver3"), 1), ("corn340", 2), ("peach410", 2), ("kimchi300", 2), ("ketchup300", 2)],
    ),
    4: (
        [("rice1kg", 2), ("sugar1kg", 2), ("flour1kg", 2)],
        [("detergent", 2), ("oil900", 2), ("soy500", 2), ("dishsoap", 2)],
        [("toothpaste", 2), ("tissues", 2), ("wipes", 2), ("batteries", 1), ("toothbrush", 1)],
        [("shampoo", 2), ("bodywash", 2), ("handcream", 1), (("lipbalm", "razors"), 1), ("swabs", 2)],
        [("cups10", 2), ("zipbags", 2), ("chopsticks", 2), (("lighter", "cable"), 1), ("umbrella", 1)],
    ),
}

# Gondola placement: plate-line origin, direction along the shelf, facing into the aisle, plates
# per standard shelf. The bottom shelf holds the same length in six wider plates.
_GONDOLAS: dict[int, tuple[Point, Point, Point, int]] = {
    1: ((0.25, 1.80), (0.0, 1.0), (1.0, 0.0), 12),
    2: ((1.95, 1.80), (0.0, 1.0), (-1.0, 0.0), 10),
    3: ((2.35, 1.80), (0.0, 1.0), (1.0, 0.0), 9),
    4: ((4.05, 1.80), (0.0, 1.0), (-1.0, 0.0), 8),
}
_BINS_ORIGIN: Point = (1.20, 4.40)
_BIN_WIDTH_M = 0.30
_LOOSE_KEYS = ("nuts", "gummies", "beans")

# Reporting rates of the shelf boards (one board per shelf, every plate on it at that rate).
# Mostly 10-30 Hz and a couple at 60 Hz, as mixed hardware in a real shop; shuffled per seed.
_BOARD_RATES = (60.0, 60.0, 30.0, 30.0, 25.0, 20.0, 20.0, 15.0, 15.0, 12.5, 12.5,
                10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0, 10.0)


def _board_rates(rng: np.random.Generator) -> list[float]:
    """Shelf board rates in a shuffled order that keeps the shop within its sample budget.

    The budget (about 16.5 readings per plate per second on average) keeps an hour of weights.csv
    under ~400 MB; a shuffle that puts the fast boards on the longest shelves is drawn again.
    """
    plates_per_shelf = [6 if number == 1 else n for *_, n in _GONDOLAS.values() for number in range(1, 6)]
    plates_per_shelf.append(len(_LOOSE_KEYS))
    budget = 16.5 * sum(plates_per_shelf)
    rates = list(_BOARD_RATES)
    while True:
        rng.shuffle(rates)
        if sum(r * n for r, n in zip(rates, plates_per_shelf)) <= budget:
            return rates


def _unit(v: Point) -> Point:
    n = math.hypot(*v)
    return (v[0] / n, v[1] / n)


def default_shop(seed: int = 0) -> Shop:
    """The default small shop; plate tares, rates and opening stock vary with `seed`.

    The layout and the planogram are fixed (a shop does not rearrange itself between days);
    the seed draws what the hardware and the morning's restocking leave to chance: each plate's
    tare and board rate, how full each facing is, and each unit's own true weight.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5409]))
    items = catalogue()
    used: set[str] = set()
    shelves: list[Shelf] = []
    plates: list[Plate] = []
    columns: list[Column] = []
    rates = _board_rates(rng)

    def add_shelf(gondola: int, number: int, origin: Point, along: Point, facing: Point, height: float,
                  widths: list[float], rate: float) -> Shelf:
        idx = len(shelves)
        ids = []
        s0 = 0.0
        for k, w in enumerate(widths, start=1):
            pid = len(plates)
            cx, cy = origin[0] + (s0 + w / 2) * along[0], origin[1] + (s0 + w / 2) * along[1]
            tare = float(rng.uniform(380.0, 900.0) * (w / STANDARD_PLATE_M) ** 0.5)
            plates.append(Plate(pid, f"g{gondola}.s{number}.p{k}", idx, round(s0, 4), round(w, 4),
                                (round(cx, 4), round(cy, 4), height), facing, round(tare, 1), rate))
            ids.append(pid)
            s0 += w
        shelf = Shelf(idx, gondola, number, origin, along, facing, height, round(s0, 4), tuple(ids))
        shelves.append(shelf)
        return shelf

    def place(shelf: Shelf, key: str, lo: float, hi: float, loose: bool = False) -> None:
        if key in used:
            raise ValueError(f"planogram places {key!r} twice")
        used.add(key)
        it = items[key]
        if loose:
            columns.append(Column(len(columns), shelf.index, key, it.sku, (lo + hi) / 2, hi - lo,
                                  _split(shelf, plates, (lo + hi) / 2, hi - lo), 1, loose=True))
            return
        pitch = it.width_m + 0.008
        n = max(1, int((hi - lo) // pitch))
        # deep packages (multi-packs, bags) are stacked two or three high instead of one behind another
        slots = max(3, min(12, int((SHELF_DEPTH_M - 0.02) // (it.depth_m + 0.004))))
        for i in range(n):
            s = lo + (i + 0.5) * (hi - lo) / n
            columns.append(Column(len(columns), shelf.index, key, it.sku, round(s, 4), it.width_m,
                                  _split(shelf, plates, s, it.width_m), slots))

    board = iter(rates)
    for g, (origin, along, facing, n_plates) in _GONDOLAS.items():
        along, facing = _unit(along), _unit(facing)
        length = n_plates * STANDARD_PLATE_M
        for number, height in enumerate(SHELF_HEIGHTS_M, start=1):
            widths = [length / 6] * 6 if number == 1 else [STANDARD_PLATE_M] * n_plates
            shelf = add_shelf(g, number, origin, along, facing, height, widths, next(board))
            plan = _PLANOGRAM[g][number - 1]
            edges = np.cumsum([0.0, *widths])
            k = 0
            for what, n in plan:
                lo, hi = float(edges[k]), float(edges[k + n])
                if isinstance(what, tuple):
                    mid = (lo + hi) / 2
                    place(shelf, what[0], lo, mid)
                    place(shelf, what[1], mid, hi)
                else:
                    place(shelf, what, lo, hi)
                k += n
            if k != len(widths):
                raise ValueError(f"planogram for g{g}.s{number} fills {k} of {len(widths)} plates")
    bins = add_shelf(5, 1, _BINS_ORIGIN, (1.0, 0.0), (0.0, -1.0), BIN_HEIGHT_M,
                     [_BIN_WIDTH_M] * len(_LOOSE_KEYS), next(board))
    for k, key in enumerate(_LOOSE_KEYS):
        place(bins, key, k * _BIN_WIDTH_M, (k + 1) * _BIN_WIDTH_M, loose=True)
    missing = set(items) - used
    if missing:
        raise ValueError(f"products not on any shelf: {sorted(missing)}")

    opening: list[tuple[float, ...]] = []
    for col in columns:
        it = items[col.key]
        if col.loose:
            opening.append((round(float(rng.uniform(2500.0, 4500.0)), 1),))
            continue
        count = int(rng.integers(max(1, math.ceil(0.4 * col.slots)), col.slots + 1))
        sd = it.unit_sd_g or 0.0
        assert it.unit_g is not None
        opening.append(tuple(round(float(w), 2) for w in rng.normal(it.unit_g, sd, size=count)))

    obstacles = (
        Rect(0.05, 1.80, 0.45, 1.80 + 12 * STANDARD_PLATE_M),
        Rect(1.75, 1.80, 2.55, 1.80 + 10 * STANDARD_PLATE_M),
        Rect(3.85, 1.80, 4.25, 1.80 + 8 * STANDARD_PLATE_M),
        Rect(1.20, 4.20, 1.20 + 3 * _BIN_WIDTH_M, 4.60),
        Rect(-1.0, 0.50, 5.30, 0.60),
    )
    size: Point = (4.3, 4.6)
    entry: tuple[Point, Point] = ((0.5, 0.6), (1.3, 0.6))
    exit_: tuple[Point, Point] = ((1.7, 0.6), (2.5, 0.6))
    shop = Shop(seed, items, tuple(plates), tuple(shelves), tuple(columns), tuple(opening), obstacles, size,
                entry, exit_, {})
    shop.config_raw.update(_config_raw(shop, seed))
    return shop


def _split(shelf: Shelf, plates: Sequence[Plate], s: float, width: float) -> tuple[tuple[int, float], ...]:
    lo, hi = s - width / 2, s + width / 2
    parts = []
    for idx in shelf.plates:
        p = plates[idx]
        overlap = min(hi, p.s0 + p.width) - max(lo, p.s0)
        if overlap > 1e-9:
            parts.append((idx, overlap))
    total = sum(o for _, o in parts)
    return tuple((i, round(o / total, 4)) for i, o in parts)


def _config_raw(shop: Shop, seed: int) -> dict[str, Any]:
    """The shop as store.toml (shared/spec/recording.md plus the documented tare_g and rate_hz)."""
    products = []
    for it in shop.items.values():
        p: dict[str, Any] = {"sku": it.sku, "name": it.name, "price": it.price}
        if it.by_weight:
            p["by_weight"] = True
        else:
            p["unit_g"] = it.unit_g
            p["unit_sd_g"] = it.unit_sd_g
        products.append(p)
    sensors = [
        {"id": p.id, "pos": list(p.centre), "facing": [float(p.facing[0]), float(p.facing[1])], "width": p.width,
         "tare_g": p.tare_g, "rate_hz": p.rate_hz}
        for p in shop.plates
    ]
    stock = []
    for it in shop.items.values():
        columns = shop.columns_of(it.key)
        on = sorted({i for c in columns for i, _ in c.split})
        # The middle of its facings on the floor, so that a hand tells apart two products on one plate.
        at = np.mean([shop.shelves[c.shelf].point(c.s) for c in columns], axis=0)
        stock.append({"sku": it.sku, "sensors": [shop.plates[i].id for i in on],
                      "at": [round(float(at[0]), 4), round(float(at[1]), 4)]})
    return {
        "version": 1,
        "store": {"name": "Sim Corner Mart", "currency": "KRW", "timezone": "Asia/Seoul", "id": "sim"},
        "floor": {"size": list(shop.size), "entry": [list(p) for p in shop.entry],
                  "exit": [list(p) for p in shop.exit]},
        "products": products,
        "sensors": sensors,
        "stock": stock,
        "issuers": {ISSUER: {"public_key": public_key_b64(issuer_key(seed))}},
    }
