"""Inventory from weight: units left of each stocked product, and the low-stock signal."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from appliance.config import StoreConfig
from appliance.shelves.steps import StepDetector


@dataclass(frozen=True, slots=True)
class PlateStock:
    """Units of one product on its plates (None when weight alone cannot tell), and whether it is low."""

    sku: str
    sensors: tuple[str, ...]
    units: int | None
    grams: float | None
    low: bool


@dataclass(frozen=True, slots=True)
class LowStock:
    """The moment a product's units fell to its `low` threshold."""

    t: float
    sku: str
    units: int


class Inventory:
    """Counts units per stock entry from each plate's stable level minus its empty weight (`tare_g`).

    Only plates that hold a single product and declare `tare_g` can be counted; a plate shared by
    two products, or one whose sensor has not reported, gives None rather than a guess.
    """

    def __init__(self, config: StoreConfig) -> None:
        self.config = config
        self.index = {s.id: i for i, s in enumerate(config.sensors)}
        self.products = {p.sku: p for p in config.products}
        holders: dict[str, set[str]] = {}
        for st in config.stock:
            for sid in st.sensors:
                holders.setdefault(sid, set()).add(st.sku)
        self.holders = holders
        self.entries_on: dict[str, list[int]] = {}
        for k, st in enumerate(config.stock):
            for sid in st.sensors:
                self.entries_on.setdefault(sid, []).append(k)
        self._was_low: dict[int, bool] = {}

    def level(self, k: int, steps: StepDetector) -> PlateStock:
        st = self.config.stock[k]
        p = self.products[st.sku]
        net = 0.0
        for sid in st.sensors:
            sensor = self.config.sensors[self.index[sid]]
            lvl = float(steps.level[self.index[sid]])
            if sensor.tare_g is None or self.holders[sid] != {st.sku} or not math.isfinite(lvl):
                return PlateStock(st.sku, st.sensors, None, None, False)
            net += lvl - sensor.tare_g
        if not st.sensors:
            return PlateStock(st.sku, st.sensors, None, None, False)
        if p.by_weight:
            return PlateStock(st.sku, st.sensors, None, round(max(net, 0.0), 1), False)
        units = max(0, round(net / (p.unit_g or 1.0)))
        return PlateStock(st.sku, st.sensors, units, round(net, 1), units <= st.low)

    def levels(self, steps: StepDetector) -> list[PlateStock]:
        return [self.level(k, steps) for k in range(len(self.config.stock))]

    def check(self, t: float, sensors: Iterable[str], steps: StepDetector) -> list[LowStock]:
        """After a change on `sensors`: the products that have just become low."""
        out: list[LowStock] = []
        for k in sorted({k for sid in sensors for k in self.entries_on.get(sid, ())}):
            stock = self.level(k, steps)
            low = stock.low
            if low and not self._was_low.get(k, False) and stock.units is not None:
                out.append(LowStock(t, stock.sku, stock.units))
            self._was_low[k] = low
        return out


def stock_levels(config: StoreConfig, steps: StepDetector) -> list[PlateStock]:
    """Units per stock entry right now (see Inventory)."""
    return Inventory(config).levels(steps)
