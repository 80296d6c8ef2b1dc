"""Inventory from weight: units left of each stocked product, and the low-stock signal."""

from __future__ import annotations

import math
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


def stock_levels(config: StoreConfig, steps: StepDetector) -> list[PlateStock]:
    """Units per stock entry from each plate's stable level minus its empty weight (`tare_g`).

    Only plates that hold a single product and declare `tare_g` can be counted; a plate shared by
    two products, or one whose sensor has not reported, gives None rather than a guess.
    """
    index = {s.id: i for i, s in enumerate(config.sensors)}
    products = {p.sku: p for p in config.products}
    holders: dict[str, set[str]] = {}
    for st in config.stock:
        for sid in st.sensors:
            holders.setdefault(sid, set()).add(st.sku)
    out: list[PlateStock] = []
    for st in config.stock:
        p = products[st.sku]
        net = 0.0
        countable = bool(st.sensors)
        for sid in st.sensors:
            sensor = config.sensors[index[sid]]
            level = float(steps.level[index[sid]])
            if sensor.tare_g is None or holders[sid] != {st.sku} or not math.isfinite(level):
                countable = False
                break
            net += level - sensor.tare_g
        if not countable:
            out.append(PlateStock(st.sku, st.sensors, None, None, False))
        elif p.by_weight:
            out.append(PlateStock(st.sku, st.sensors, None, round(max(net, 0.0), 1), False))
        else:
            units = max(0, round(net / (p.unit_g or 1.0)))
            out.append(PlateStock(st.sku, st.sensors, units, round(net, 1), units <= st.low))
    return out
