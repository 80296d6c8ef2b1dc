"""Shoppers side by side at one shelf: picks that settle into one shelf event, and hands that pass
in front of a neighbour's plate on their way to their own."""

from __future__ import annotations

from typing import Any

from shopkit import T0, Script, store_raw

from appliance.config import parse_config
from appliance.events import PlateChange
from appliance.fusion.loop import plate_partitions, together

A, B = "AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB"


def _two_shoppers(stock: list[dict[str, Any]] | None = None, b_at: tuple[float, float] = (2.8, 3.45)) -> Script:
    """Plates 0.3 m wide (p6 centred at x = 2.5, p7 at x = 2.8; water stands on both unless `stock`
    says otherwise). A stands at p6, B at `b_at`, both in the shop from T0 + 1 to T0 + 20."""
    s = Script(parse_config(store_raw(width=0.3, stock=stock)))
    s.enter(A, T0 + 1, track="a")
    s.enter(B, T0 + 1.5, track="b")
    s.walk("a", [(T0 + 1, 1.0, 0.3), (T0 + 6, 2.5, 3.45), (T0 + 16, 2.5, 3.45), (T0 + 20, 2.4, 0.2),
                 (T0 + 21, 2.4, -0.5)])
    s.walk("b", [(T0 + 1.5, 1.2, 0.3), (T0 + 6, *b_at), (T0 + 16, *b_at), (T0 + 20.5, 2.6, 0.2),
                 (T0 + 21.5, 2.6, -0.5)])
    s.leave(T0 + 20, track="a")
    s.leave(T0 + 20.5, track="b")
    return s


def test_two_neighbours_picks_that_settle_as_one_event_are_charged_each_to_their_taker():
    """A lifts a bottle off p6, B one off p7 0.7 s later: the plates are neighbours and share the
    product, so step detection joins them into one event of two bottles; each plate's own moment
    and the hands at them split it into two picks."""
    s = _two_shoppers()
    s.reach("a", T0 + 8.6, T0 + 9.6, (2.5, 3.98, 1.02))
    s.change("g1.s1.p6", T0 + 9.0, -1040.0, press=(0.4, 200.0))
    s.reach("b", T0 + 9.3, T0 + 10.3, (2.8, 3.98, 1.02))
    s.change("g1.s1.p7", T0 + 9.7, -1040.0, press=(0.4, 200.0))
    events = s.shelf_events(15.0, partners=True)
    assert [e.sensors for e in events if e.delta_g < -500] == [("g1.s1.p6", "g1.s1.p7")]
    _, charged = s.run(T0, T0 + 30)
    assert charged == {A: {"water1l": 1}, B: {"water1l": 1}}


def test_a_hand_passing_in_front_of_a_plate_on_its_way_to_the_next_is_not_the_taker():
    """B reaches past the front of p6 to take gum at p7's far end while A, standing at p6 with no
    hand seen, takes cider from p6: B's hand stopped at p7, so A took the cider."""
    s = _two_shoppers([{"sku": "cider", "sensors": ["g1.s1.p6"]}, {"sku": "gum", "sensors": ["g1.s1.p7"]}],
                      b_at=(2.65, 3.3))
    s.reach("b", T0 + 8.6, T0 + 8.9, (2.6, 3.75, 1.1))   # on the way: in front of p6's edge
    s.reach("b", T0 + 9.0, T0 + 10.0, (2.9, 3.98, 1.02))  # at the gum on p7
    s.change("g1.s1.p6", T0 + 9.0, -515.0, press=(0.4, 150.0))
    s.change("g1.s1.p7", T0 + 9.4, -32.0, press=(0.4, 100.0))
    _, charged = s.run(T0, T0 + 30)
    assert charged == {A: {"cider": 1}, B: {"gum": 1}}


def test_one_act_moves_its_plates_at_one_moment():
    same = [PlateChange("p1", -500.0, 1.0, 10.0, 10.8), PlateChange("p2", -500.0, 1.0, 10.05, 10.8)]
    apart = [PlateChange("p1", -500.0, 1.0, 10.0, 10.5), PlateChange("p2", -500.0, 1.0, 10.7, 11.4)]
    long_busy = [PlateChange("p1", -500.0, 1.0, 4.0, 11.0), PlateChange("p2", -500.0, 1.0, 10.7, 11.4)]
    assert together(same) > -0.2
    assert together(apart) < -4.0
    assert together(long_busy) == 0.0  # a plate busy for seconds has no sharp start to compare
    assert together(apart) >= together([*apart, PlateChange("p3", -500.0, 1.0, 13.0, 13.5)])


def test_plate_partitions_keep_each_block_connected():
    changes = [PlateChange(f"p{i}", -100.0, 1.0) for i in (1, 2, 3)]
    touching = {"p1": ["p2"], "p2": ["p1", "p3"], "p3": ["p2"]}
    cuts = {tuple(tuple(c.sensor for c in block) for block in p) for p in plate_partitions(changes, touching)}
    assert cuts == {(("p1", "p2", "p3"),), (("p1", "p2"), ("p3",)), (("p1",), ("p2", "p3")),
                    (("p1",), ("p2",), ("p3",))}  # never p1 with p3 without p2 between them
