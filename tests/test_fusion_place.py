"""Products sharing a plate that weight cannot tell apart: the hand's place along the shelf decides."""

from __future__ import annotations

from typing import Any

import pytest
from shopkit import T0, Script, store_raw

from appliance.config import ConfigError, parse_config
from appliance.shelves.products import Planogram, place_log_likelihoods

GUMS = [
    {"sku": "gum", "name": "Gum 5 sticks", "price": 500, "unit_g": 15.0, "unit_sd_g": 0.4},
    {"sku": "mint", "name": "Gum Mint 5 sticks", "price": 500, "unit_g": 16.0, "unit_sd_g": 0.4},
]


def _shop(at: bool = True) -> dict[str, Any]:
    """Plate g1.s1.p4 (centre x = 1.3, 0.1 m wide) holds gum on its left half and mint on its right."""
    stock: list[dict[str, Any]] = [{"sku": "gum", "sensors": ["g1.s1.p4"]}, {"sku": "mint", "sensors": ["g1.s1.p4"]}]
    if at:
        stock[0]["at"] = [1.275, 4.0]
        stock[1]["at"] = [1.325, 4.0]
    return store_raw(products=GUMS, stock=stock)


def _take_from_p4(raw: dict[str, Any], nonce: str, grams: float,
                  hand_x: float | None) -> tuple[dict[str, dict[str, int]], int]:
    """One shopper in front of g1.s1.p4 takes `grams` from it, the hand seen at `hand_x` (or not at
    all); returns what was charged and how many lines were held for review."""
    s = Script(parse_config(raw))
    s.enter(nonce, T0 + 1)
    s.walk("t1", [(T0 + 1, 1.0, 0.3), (T0 + 6, 1.3, 3.45), (T0 + 16, 1.3, 3.45), (T0 + 20, 2.5, 0.2),
                  (T0 + 21, 2.5, -0.5)])
    if hand_x is not None:
        s.reach("t1", T0 + 8.0, T0 + 9.6, (hand_x, 3.98, 1.02))
    s.change("g1.s1.p4", T0 + 9, -grams)
    s.leave(T0 + 20)
    _, charged = s.run(T0, T0 + 30)
    return charged, sum(len(r.review) for r in s.receipts)


def _take_gum(at: bool, hand_x: float | None) -> dict[str, dict[str, int]]:
    """A shopper takes one unit that weighs 15.9 g (weight alone says mint) with the hand at `hand_x`."""
    return _take_from_p4(_shop(at), "GGGGGGGGGGGGGGGGGGGGGG", 15.9, hand_x)[0]


def test_the_hand_on_the_gum_half_of_the_plate_names_gum_although_the_weight_is_closer_to_mint():
    assert _take_gum(at=True, hand_x=1.27) == {"GGGGGGGGGGGGGGGGGGGGGG": {"gum": 1}}


def test_the_hand_on_the_mint_half_names_mint():
    assert _take_gum(at=True, hand_x=1.33) == {"GGGGGGGGGGGGGGGGGGGGGG": {"mint": 1}}


@pytest.mark.parametrize(("at", "hand_x"), [(False, 1.27), (True, None)])
def test_without_the_products_places_or_a_hand_seen_the_weight_decides(at, hand_x):
    """No `[[stock]] at`, or no hand point: the likelier weight (mint) stays, as before."""
    assert _take_gum(at=at, hand_x=hand_x) == {"GGGGGGGGGGGGGGGGGGGGGG": {"mint": 1}}


@pytest.mark.parametrize(("hands", "likelier"), [
    ([(1.27, 3.98)], "gum"),
    ([(1.33, 3.98)], "mint"),
    ([(1.26, 3.9), (1.29, 4.0), (1.28, 3.95)], "gum"),
])
def test_place_likelihoods_favour_the_product_under_the_hand(hands, likelier):
    config = parse_config(_shop())
    plate = next(s for s in config.sensors if s.id == "g1.s1.p4")
    fit = place_log_likelihoods(["gum", "mint"], hands, plate, Planogram(config), 0.04)
    assert fit is not None and max(fit, key=lambda k: fit[k]) == likelier


def test_more_hand_sightings_make_the_place_surer():
    config = parse_config(_shop())
    plate = next(s for s in config.sensors if s.id == "g1.s1.p4")
    one = place_log_likelihoods(["gum", "mint"], [(1.29, 3.98)], plate, Planogram(config), 0.04)
    four = place_log_likelihoods(["gum", "mint"], [(1.29, 3.98)] * 4, plate, Planogram(config), 0.04)
    assert one is not None and four is not None
    assert four["gum"] - four["mint"] > one["gum"] - one["mint"] > 0


def test_no_place_known_gives_no_opinion():
    config = parse_config(_shop(at=False))
    plate = next(s for s in config.sensors if s.id == "g1.s1.p4")
    assert place_log_likelihoods(["gum", "mint"], [(1.27, 3.98)], plate, Planogram(config), 0.04) is None
    config = parse_config(_shop())
    assert place_log_likelihoods(["gum", "mint"], [], plate, Planogram(config), 0.04) is None


def test_a_place_far_from_the_products_plates_is_a_config_error_naming_the_key():
    raw = _shop()
    raw["stock"][1]["at"] = [3.3, 1.0]
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert "stock[1].at" in str(err.value) and "g1.s1.p4" in str(err.value)


BARS = [
    {"sku": "sausage", "name": "Sausage Stick", "price": 1500, "unit_g": 71.0, "unit_sd_g": 1.2},
    {"sku": "fishcake", "name": "Fish Cake Bar", "price": 2000, "unit_g": 76.0, "unit_sd_g": 1.5},
]


def _take_bar(hand_x: float | None) -> tuple[dict[str, dict[str, int]], int]:
    """Plate g1.s1.p4 holds sausage sticks (71 g) on its left half and fish cake bars (76 g) on its
    right. A unit that weighs 73.5 g leaves it: by weight it could be either (their prices differ).
    The hand is seen at `hand_x` (or not at all). Returns what was charged and the review count."""
    stock: list[dict[str, Any]] = [{"sku": "sausage", "sensors": ["g1.s1.p4"], "at": [1.275, 4.0]},
                                   {"sku": "fishcake", "sensors": ["g1.s1.p4"], "at": [1.325, 4.0]}]
    return _take_from_p4(store_raw(products=BARS, stock=stock), "BBBBBBBBBBBBBBBBBBBBBB", 73.5, hand_x)


@pytest.mark.parametrize(("hand_x", "sku"), [(1.27, "sausage"), (1.33, "fishcake")])
def test_where_the_hand_was_names_a_product_whose_weight_is_as_close_as_its_neighbours(hand_x, sku):
    """Weight cannot tell a 71 g from a 76 g bar in a 73.5 g change; the hand on one half of the plate
    says which facing it took from (the line was held for review whatever the hand showed)."""
    assert _take_bar(hand_x) == ({"BBBBBBBBBBBBBBBBBBBBBB": {sku: 1}}, 0)


def test_without_a_hand_seen_a_change_between_two_products_prices_is_held_for_review():
    assert _take_bar(None) == ({"BBBBBBBBBBBBBBBBBBBBBB": {}}, 1)


SMALLS = [
    {"sku": "lighter", "name": "Lighter", "price": 800, "unit_g": 18.0, "unit_sd_g": 0.5},
    {"sku": "cable", "name": "Charging Cable", "price": 6900, "unit_g": 35.0, "unit_sd_g": 0.5},
]


@pytest.mark.parametrize(("hand_x", "charged", "held"), [(1.27, {"lighter": 2}, 0), (1.33, {"cable": 1}, 0),
                                                         (None, {}, 1)])
def test_the_hand_place_also_decides_between_counts_of_different_products(hand_x, charged, held):
    """Two 18 g lighters weigh about what one 35 g cable does: weight alone cannot tell a 35.4 g change
    (held for review), but the hand seen at one half of the plate names two lighters or one cable."""
    stock: list[dict[str, Any]] = [{"sku": "lighter", "sensors": ["g1.s1.p4"], "at": [1.275, 4.0]},
                                   {"sku": "cable", "sensors": ["g1.s1.p4"], "at": [1.325, 4.0]}]
    raw = store_raw(products=SMALLS, stock=stock)
    assert _take_from_p4(raw, "LLLLLLLLLLLLLLLLLLLLLL", 35.4, hand_x) == ({"LLLLLLLLLLLLLLLLLLLLLL": charged}, held)
