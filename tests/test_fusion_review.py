"""Units put back while their take waits for review: the review item is withdrawn or amended, not left to charge."""

from __future__ import annotations

import pytest
from shopkit import T0, Script, side_by_side

from appliance.events import Evidence, PlateChange, ReviewItem, ShelfEvent
from appliance.fusion.assign import Reach
from appliance.fusion.carts import Cart
from appliance.fusion.loop import WHICH_PRODUCT, WHO_TOOK_IT, ShopFloor
from appliance.replay import ReplayResult, receipts_document
from appliance.shelves.products import Hypothesis, Item

J, K = "JJJJJJJJJJJJJJJJJJJJJJ", "KKKKKKKKKKKKKKKKKKKKKK"


def _held(s: Script) -> list[ReviewItem]:
    return [item for r in s.receipts for item in r.review]


def _document(s: Script, floor: ShopFloor) -> dict[str, object]:
    return receipts_document(ReplayResult(s.receipts, floor.restock, [], [], floor.decisions, "tracks", []))


def _taken_beside_two_then_put_back(taken_g: float, back_g: float) -> tuple[Script, ShopFloor]:
    """J and K stand side by side before p3 (who took it cannot be told); `taken_g` leaves p3 at
    T0 + 12 and `back_g` comes back at T0 + 16. Neither is charged for it: it is in review."""
    s = Script.shop()
    side_by_side(s, (J, K), 1.25)
    s.change("g1.s1.p3", T0 + 12, taken_g)
    s.change("g1.s1.p3", T0 + 16, back_g)
    floor, charged = s.run(T0, T0 + 35)
    assert charged == {J: {}, K: {}}
    return s, floor


def test_a_unit_put_back_while_its_take_waits_for_review_withdraws_the_review_item():
    """Regression: the take stayed in review after the cider was back on its plate, so a person
    deciding it later would charge a shopper for a unit on the shelf; and the plate was said to
    carry a foreign thing of a cider's weight."""
    s, floor = _taken_beside_two_then_put_back(-515.0, +515.0)
    assert _held(s) == []
    outcomes = [d.outcome for d in floor.decisions]
    assert outcomes == ["review: who took it?", "returned while in review"]
    assert all(not ex.foreign and not any(ex.misplaced.values()) for ex in floor.extras.values())
    assert floor.restock == []
    doc = _document(s, floor)
    assert [(v["review"], v["status"]) for v in doc["visits"]] == [([], "nothing taken")] * 2  # type: ignore[index]


def test_one_of_two_units_in_review_put_back_leaves_the_review_item_for_one():
    s, floor = _taken_beside_two_then_put_back(-1030.0, +515.0)
    held = _held(s)
    assert len(held) == 1 and held[0].candidates == (("cider", 1),) and held[0].reason == WHO_TOOK_IT
    assert held[0].evidence.delta_g < -1000.0  # the take's own evidence stays
    assert [d.outcome for d in floor.decisions] == ["review: who took it?", "returned while in review"]
    listed = [item for v in _document(s, floor)["visits"] for item in v["review"]]  # type: ignore[attr-defined]
    assert [item["candidates"] for item in listed] == [[{"sku": "cider", "qty": 1}]]


def test_a_put_back_that_no_review_item_names_is_a_unit_nobody_holds_as_before():
    s = Script.shop()
    side_by_side(s, (J, K), 1.25)
    s.change("g1.s1.p3", T0 + 12, -515.0)
    s.change("g1.s1.p4", T0 + 16, +32.0)  # a gum nobody took
    floor, charged = s.run(T0, T0 + 35)
    assert charged == {J: {}, K: {}}
    held = _held(s)
    assert len(held) == 1 and held[0].candidates[0] == ("cider", 1)
    assert [d.outcome for d in floor.decisions] == ["review: who took it?", "put down, no cart holds it"]
    assert [round(f.grams) for f in floor.extras["g1.s1.p4"].foreign] == [32]


# --- which review item a unit put back comes from ------------------------------------------------------

A, B, C = "AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB", "CCCCCCCCCCCCCCCCCCCCCC"


def _item(visit: str, t: float, *candidates: tuple[str, int], reason: str = WHO_TOOK_IT) -> ReviewItem:
    return ReviewItem(visit, reason, candidates, Evidence(T0 + t, ("g1.s1.p3",), -515.0, 0.9, 0.5, reason))


def _reach(visit: str) -> Reach:
    return Reach(visit, 0, 0.9, None, score=1.0, confidence=0.5)


SHELF = [
    ("a1", A, 10, ("cider", 1)), ("a2", A, 14, ("cider", 1), ("cola", 1)), ("a3", A, 15, ("gum", 1)),
    ("b1", B, 12, ("cider", 2)), ("c1", C, 30, ("cider", 1)),
]


@pytest.mark.parametrize(("carts", "reaches", "expected"), [
    ({A: ["a1"]}, [], "a1"),  # the only visit with the product in review
    ({A: ["a1", "a2", "a3"]}, [], "a2"),  # of one visit's items naming it, the newest
    ({A: ["a1"], B: ["b1"]}, [], None),  # two visits, nobody at the plate: not a guess
    ({A: ["a1"], B: ["b1"]}, [B], "b1"),  # the one at the plate
    ({A: ["a1"], B: ["b1"], C: []}, [C, A], "a1"),  # the nearest reach with such an item
    ({A: ["a3"], C: ["c1"]}, [], None),  # a gum in review; a take after the put-down began
    ({A: [], B: []}, [A], None),
])
def test_a_unit_put_back_is_matched_to_one_review_item_or_none(
        carts: dict[str, list[str]], reaches: list[str], expected: str | None) -> None:
    floor = ShopFloor(Script.shop().config)
    made = {name: _item(visit, t, *cands) for name, visit, t, *cands in SHELF}
    for visit, names in carts.items():
        floor.carts[visit] = Cart(visit, review=[made[n] for n in names])
    put_back = ShelfEvent(T0 + 20, T0 + 20.5, (PlateChange("g1.s1.p3", 515.0, 1.0),))
    found = floor._review_source(put_back, "cider", [_reach(v) for v in reaches])
    assert (None if found is None else found[0]) is (None if expected is None else made[expected])


def test_a_put_back_takes_its_units_off_the_item_and_says_which_product_it_was():
    floor = ShopFloor(Script.shop().config)
    events: list[tuple[ReviewItem, ReviewItem | None]] = []

    class Listener:
        def visit_opened(self, visit: object) -> None: ...
        def cart_changed(self, change: object) -> None: ...
        def held_for_review(self, item: ReviewItem) -> None: ...
        def credited_after_exit(self, change: object) -> None: ...
        def review_amended(self, item: ReviewItem, amended: ReviewItem | None) -> None:
            events.append((item, amended))

    floor.listener = Listener()
    item = _item(A, 10, ("cider", 2), ("cola", 2), ("cider", 1), reason=WHICH_PRODUCT)
    floor.carts[A] = Cart(A, review=[item])
    one = Hypothesis((Item("cider", 1),), 0.0, 1.0)

    def put_back(t: float) -> bool:
        event = ShelfEvent(T0 + t, T0 + t + 0.5, (PlateChange("g1.s1.p3", 515.0, 1.0),))
        return floor._returned_in_review(event, "g1.s1.p3", one.items[0], [_reach(A)], one)

    assert put_back(20)
    amended = floor.carts[A].review[0]
    assert amended.candidates == (("cider", 1),) and amended.evidence == item.evidence
    assert events == [(item, amended)]
    assert put_back(25)
    assert floor.carts[A].review == [] and events[1] == (amended, None)
    assert not put_back(30)  # nothing of it is in review any more
    assert [d.outcome for d in floor.decisions] == ["returned while in review"] * 2
    assert not floor.extras and not floor.restock
