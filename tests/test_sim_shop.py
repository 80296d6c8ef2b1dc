"""The default shop looks like a real small shop, with weights that collide the way real ones do."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from appliance.config import parse_config
from appliance.gate.passes import public_key_b64
from appliance.sim import default_shop
from appliance.sim.catalogue import Item, ean13
from appliance.sim.floorplan import FloorPlan, _segment_hits
from appliance.sim.shop import Rect, issuer_key


@pytest.fixture(scope="module")
def shop():  # type: ignore[no-untyped-def]
    return default_shop(1)


def test_the_store_toml_is_a_valid_configuration_with_tares_and_rates(shop) -> None:  # type: ignore[no-untyped-def]
    cfg = parse_config(shop.config_raw)
    assert cfg.store.currency == "KRW"
    assert all(s.tare_g is not None and 300 < s.tare_g < 3000 for s in cfg.sensors)
    assert all(s.rate_hz in (10.0, 12.5, 15.0, 20.0, 25.0, 30.0, 60.0) for s in cfg.sensors)
    assert {s.rate_hz for s in cfg.sensors} >= {10.0, 30.0, 60.0}
    assert sum(s.rate_hz == 60.0 for s in cfg.sensors) < 0.1 * len(cfg.sensors)
    assert set(cfg.issuers) == {"sim-pay"}


def test_four_gondolas_of_five_shelves_with_six_to_twelve_plates_of_about_a_decimetre(shop) -> None:  # type: ignore[no-untyped-def]
    gondolas = Counter(sh.gondola for sh in shop.shelves if sh.gondola <= 4)
    assert gondolas == {1: 5, 2: 5, 3: 5, 4: 5}
    for sh in shop.shelves:
        if sh.gondola <= 4:
            assert 6 <= len(sh.plates) <= 12
            assert all(0.09 <= shop.plates[i].width <= 0.21 for i in sh.plates)
    for p in shop.plates:
        assert abs(p.facing[0] ** 2 + p.facing[1] ** 2 - 1) < 1e-9


def test_sixty_plus_products_with_realistic_won_prices(shop) -> None:  # type: ignore[no-untyped-def]
    items = list(shop.items.values())
    assert len(items) >= 60
    assert all(300 <= it.price <= 40000 for it in items)
    assert len({it.sku for it in items}) == len(items)
    assert {it.key for it in items if it.by_weight} == {"nuts", "gummies", "beans"}


def _plates_of(shop, key):  # type: ignore[no-untyped-def]
    return sorted({i for c in shop.columns_of(key) for i, _ in c.split})


def test_flavour_variants_weigh_within_ten_grams_on_neighbouring_plates(shop) -> None:  # type: ignore[no-untyped-def]
    pairs = 0
    packaged = [it for it in shop.items.values() if not it.by_weight]
    for a, b in itertools.combinations(packaged, 2):
        assert a.unit_g is not None and b.unit_g is not None
        if abs(a.unit_g - b.unit_g) <= 10:
            pa, pb = _plates_of(shop, a.key), _plates_of(shop, b.key)
            same_shelf = shop.plates[pa[0]].shelf == shop.plates[pb[0]].shelf
            if same_shelf and min(abs(x - y) for x in pa for y in pb) <= 1:
                pairs += 1
    assert pairs >= 10


@pytest.mark.parametrize(("big", "small", "n"), [
    ("water1l", "water500", 2),
    ("chocopie12", "chocopie2", 6),
    ("rice3", "rice1", 3),
    ("shin5", "shin", 5),
])
def test_packs_weigh_about_as_much_as_their_singles(shop, big: str, small: str, n: int) -> None:  # type: ignore[no-untyped-def]
    b, s = shop.items[big], shop.items[small]
    assert b.unit_g is not None and s.unit_g is not None
    assert abs(b.unit_g - n * s.unit_g) <= 6.0


def test_featherweights_and_heavy_goods_are_both_stocked(shop) -> None:  # type: ignore[no-untyped-def]
    weights = [it.unit_g for it in shop.items.values() if it.unit_g]
    assert sum(15 <= w <= 40 for w in weights) >= 6
    assert sum(w < 15 for w in weights) >= 2
    assert sum(1000 <= w <= 2100 for w in weights) >= 6


def test_products_span_one_to_three_plates_and_some_plates_hold_two(shop) -> None:  # type: ignore[no-untyped-def]
    spans = Counter(len(_plates_of(shop, k)) for k, it in shop.items.items() if not it.by_weight)
    assert set(spans) <= {1, 2, 3, 4} and spans[1] and spans[2] and spans[3]
    per_plate = Counter(i for st in shop.config_raw["stock"] for i in st["sensors"])
    assert sum(n >= 2 for n in per_plate.values()) >= 5
    assert any(len(c.split) > 1 for c in shop.columns), "some units straddle two plates"


def test_loose_goods_sit_in_bins_on_scales(shop) -> None:  # type: ignore[no-untyped-def]
    for key in ("nuts", "gummies", "beans"):
        (col,) = shop.columns_of(key)
        assert col.loose and len(col.split) == 1
        assert 2000 <= shop.opening[col.index][0] <= 5000


def test_every_unit_has_its_own_weight_around_the_declared_mean(shop) -> None:  # type: ignore[no-untyped-def]
    for col, fill in zip(shop.columns, shop.opening):
        it = shop.items[col.key]
        if it.by_weight:
            continue
        assert 1 <= len(fill) <= col.slots
        assert it.unit_g is not None and it.unit_sd_g is not None
        assert all(abs(w - it.unit_g) < 5 * it.unit_sd_g + 0.01 for w in fill)
    z = [(w - it.unit_g) / it.unit_sd_g for col, fill in zip(shop.columns, shop.opening)
         if not (it := shop.items[col.key]).by_weight for w in fill]  # type: ignore[operator]
    assert len(z) > 500
    assert abs(float(np.mean(z))) < 0.1 and float(np.std(z)) == pytest.approx(1.0, abs=0.1)


def test_the_issuer_key_is_deterministic_from_the_seed() -> None:
    assert public_key_b64(issuer_key(5)) == public_key_b64(issuer_key(5))
    assert public_key_b64(issuer_key(5)) != public_key_b64(issuer_key(6))
    assert default_shop(5).config_raw["issuers"]["sim-pay"]["public_key"] == public_key_b64(issuer_key(5))


def test_the_layout_is_fixed_but_the_morning_stock_varies_with_the_seed() -> None:
    a, b = default_shop(1), default_shop(2)
    assert [p.id for p in a.plates] == [p.id for p in b.plates]
    assert [p.centre for p in a.plates] == [p.centre for p in b.plates]
    assert a.opening != b.opening
    assert default_shop(1).config_raw == a.config_raw


@pytest.mark.parametrize(("first12", "code"), [
    ("880100100001", "8801001000011"),
    ("400638133393", "4006381333931"),
    ("978030640615", "9780306406157"),
])
def test_ean13_check_digits(first12: str, code: str) -> None:
    assert ean13(first12) == code


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"price": -1}, "price"),
    ({"unit_g": None}, "unit_g"),
    ({"width_m": 0.0}, "package size"),
])
def test_a_catalogue_item_rejects_impossible_values(kwargs: dict, error: str) -> None:  # type: ignore[type-arg]
    base = {"key": "x", "sku": "1", "name": "X", "price": 100, "unit_g": 10.0, "unit_sd_g": 0.5, "width_m": 0.05,
            "depth_m": 0.05}
    with pytest.raises(ValueError, match=error):
        Item(**{**base, **kwargs})


@pytest.mark.parametrize(("a", "b", "hits"), [
    ((0.0, 0.5), (2.0, 0.5), True),    # straight through
    ((0.0, 1.5), (2.0, 1.5), False),   # passes above
    ((0.0, 0.0), (1.0, 0.0), False),   # runs along the edge
    ((0.5, 0.5), (0.6, 0.6), True),    # inside
])
def test_a_walk_is_blocked_only_by_going_through_an_obstacle(a, b, hits: bool) -> None:  # type: ignore[no-untyped-def]
    assert _segment_hits(a, b, Rect(0.0, 0.0, 1.0, 1.0)) is hits


def test_routes_go_around_gondolas_and_stay_clear(shop) -> None:  # type: ignore[no-untyped-def]
    plan = FloorPlan(shop.obstacles, Rect(0.25, 0.85, 4.05, 4.35))
    start, goal = (1.0, 1.0), (3.2, 2.3)   # from the front of aisle 1 to the middle of aisle 2
    route = plan.route(start, goal)
    assert route[0] == start and route[-1] == goal and len(route) >= 3
    for a, b in itertools.pairwise(route):
        assert plan.clear(a, b)
        assert not any(_segment_hits(a, b, r) for r in shop.obstacles)
    assert plan.route(start, (1.2, 2.5)) == [start, (1.2, 2.5)]
