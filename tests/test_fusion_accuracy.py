"""Fewer wrong charges: loose goods cannot come back heavier than they left, and doubtful
identities send a pick to review instead of to the wrong cart."""

from __future__ import annotations

from shopkit import T0, Script, store_raw

from appliance.config import parse_config

LOOSE = store_raw(
    products=[
        {"sku": "cola", "name": "Cola 500 ml", "price": 1500, "unit_g": 521.0, "unit_sd_g": 2.0},
        {"sku": "gum", "name": "Gum", "price": 900, "unit_g": 32.0, "unit_sd_g": 0.5},
        {"sku": "almonds", "name": "Almonds", "price": 30000, "by_weight": True},
    ],
    stock=[
        {"sku": "cola", "sensors": ["g1.s1.p1", "g1.s1.p2"]},
        {"sku": "gum", "sensors": ["g1.s1.p4"]},
        {"sku": "almonds", "sensors": ["g1.s1.p8"]},
    ],
)


def _walk(s: Script, track: str, stops: list[tuple[float, float]], t_in: float, t_out: float) -> None:
    """In at the entry, standing in front of each x from its time until the next stop, out at t_out."""
    pts = [(t_in, 1.0, 0.3)]
    for i, (t, x) in enumerate(stops):
        pts.append((t, x, 3.45))
        end = stops[i + 1][0] - 1.0 if i + 1 < len(stops) else t_out - 4.0
        pts.append((end, x, 3.45))
    pts += [(t_out, 2.5, 0.2), (t_out + 1, 2.5, -0.5)]
    s.walk(track, pts)


def _grams(s: Script) -> dict[str, dict[str, float]]:
    return {r.visit: {ln.sku: ln.grams for ln in r.lines if ln.grams} for r in s.receipts}


def test_an_own_flask_heavier_than_the_loose_goods_held_is_not_taken_for_a_return_of_them():
    s = Script(parse_config(LOOSE))
    s.enter("LLLLLLLLLLLLLLLLLLLLLL", T0 + 1)
    _walk(s, "t1", [(T0 + 5, 1.75), (T0 + 14, 1.45)], T0 + 1, T0 + 32)
    s.change("g1.s1.p8", T0 + 8, -300.0)   # a scoop of almonds
    s.change("g1.s1.p5", T0 + 17, +480.0)  # their own flask set down on an empty plate
    s.change("g1.s1.p5", T0 + 23, -480.0)  # ... and picked up again
    s.leave(T0 + 32)
    floor, charged = s.run(T0, T0 + 42)
    assert charged == {"LLLLLLLLLLLLLLLLLLLLLL": {"almonds": 0}}
    assert abs(_grams(s)["LLLLLLLLLLLLLLLLLLLLLL"]["almonds"] - 300.0) < 5.0
    assert not floor.restock


def test_loose_goods_set_down_elsewhere_are_still_credited():
    s = Script(parse_config(LOOSE))
    s.enter("MMMMMMMMMMMMMMMMMMMMMM", T0 + 1)
    _walk(s, "t1", [(T0 + 5, 1.75), (T0 + 14, 1.45)], T0 + 1, T0 + 28)
    s.change("g1.s1.p8", T0 + 8, -300.0)
    s.change("g1.s1.p5", T0 + 17, +300.0)  # the whole bag left on another plate
    s.leave(T0 + 28)
    floor, _charged = s.run(T0, T0 + 38)
    assert _grams(s) == {"MMMMMMMMMMMMMMMMMMMMMM": {}}
    assert [(a.sensor, a.sku) for a in floor.restock] == [("g1.s1.p5", "almonds")]


def test_part_of_a_bag_of_loose_goods_cannot_come_back_away_from_its_bin():
    s = Script(parse_config(LOOSE))
    s.enter("NNNNNNNNNNNNNNNNNNNNNN", T0 + 1)
    _walk(s, "t1", [(T0 + 5, 1.75), (T0 + 14, 1.45)], T0 + 1, T0 + 32)
    s.change("g1.s1.p8", T0 + 8, -300.0)
    s.change("g1.s1.p5", T0 + 17, +137.0)  # a phone set down: lighter than the bag, but not the bag
    s.change("g1.s1.p5", T0 + 23, -137.0)
    s.leave(T0 + 32)
    floor, _charged = s.run(T0, T0 + 42)
    assert abs(_grams(s)["NNNNNNNNNNNNNNNNNNNNNN"]["almonds"] - 300.0) < 5.0
    assert not floor.restock


def test_some_of_the_loose_goods_poured_back_into_their_bin_are_credited():
    s = Script(parse_config(LOOSE))
    s.enter("OOOOOOOOOOOOOOOOOOOOOO", T0 + 1)
    _walk(s, "t1", [(T0 + 5, 1.75)], T0 + 1, T0 + 28)
    s.change("g1.s1.p8", T0 + 8, -300.0)
    s.change("g1.s1.p8", T0 + 15, +80.0)
    s.leave(T0 + 28)
    _floor, _charged = s.run(T0, T0 + 38)
    assert abs(_grams(s)["OOOOOOOOOOOOOOOOOOOOOO"]["almonds"] - 220.0) < 5.0


LOOKALIKES = store_raw(
    products=[
        {"sku": "juice1l", "name": "Juice 1 L", "price": 2500, "unit_g": 1036.0, "unit_sd_g": 3.0},
        {"sku": "water1l", "name": "Water 1 L", "price": 1200, "unit_g": 1040.0, "unit_sd_g": 3.0},
    ],
    stock=[
        {"sku": "juice1l", "sensors": ["g1.s1.p1", "g1.s1.p2"]},
        {"sku": "water1l", "sensors": ["g1.s1.p6", "g1.s1.p7"]},
    ],
)


def test_a_unit_set_down_on_a_lookalikes_plate_is_credited_to_the_cart_that_holds_it():
    s = Script(parse_config(LOOKALIKES))
    s.enter("PPPPPPPPPPPPPPPPPPPPPP", T0 + 1)
    _walk(s, "t1", [(T0 + 5, 1.05), (T0 + 14, 1.65)], T0 + 1, T0 + 30)
    s.change("g1.s1.p1", T0 + 8, -1036.0)
    s.change("g1.s1.p7", T0 + 17, +1037.0)  # the juice left beside the water, which weighs nearly the same
    s.leave(T0 + 30)
    floor, charged = s.run(T0, T0 + 40)
    assert charged == {"PPPPPPPPPPPPPPPPPPPPPP": {}}
    assert [(a.sensor, a.sku) for a in floor.restock] == [("g1.s1.p7", "juice1l")]


def test_a_bag_of_loose_goods_left_elsewhere_and_picked_up_again_is_charged_again():
    s = Script(parse_config(LOOSE))
    s.enter("QQQQQQQQQQQQQQQQQQQQQQ", T0 + 1)
    _walk(s, "t1", [(T0 + 5, 1.75), (T0 + 14, 1.45)], T0 + 1, T0 + 34)
    s.change("g1.s1.p8", T0 + 8, -300.0)
    s.change("g1.s1.p5", T0 + 17, +300.0)
    s.change("g1.s1.p5", T0 + 24, -300.0)
    s.leave(T0 + 34)
    floor, _charged = s.run(T0, T0 + 44)
    assert abs(_grams(s)["QQQQQQQQQQQQQQQQQQQQQQ"]["almonds"] - 300.0) < 5.0
    assert not floor.extras["g1.s1.p5"].bags["almonds"]


def test_an_own_bottle_weighing_like_the_stock_it_was_set_down_on_is_not_charged_when_picked_up():
    s = Script.shop()
    s.enter("RRRRRRRRRRRRRRRRRRRRRR", T0 + 1)
    _walk(s, "t1", [(T0 + 5, 1.05)], T0 + 1, T0 + 30)
    # their own 523 g bottle, set down across both cola plates (cola weighs 521 g) ...
    s.change("g1.s1.p1", T0 + 8, +300.0)
    s.change("g1.s1.p2", T0 + 8, +223.0)
    # ... and picked up again
    s.change("g1.s1.p1", T0 + 18, -300.0)
    s.change("g1.s1.p2", T0 + 18, -223.0)
    s.leave(T0 + 30)
    _floor, charged = s.run(T0, T0 + 40)
    assert charged == {"RRRRRRRRRRRRRRRRRRRRRR": {}}
