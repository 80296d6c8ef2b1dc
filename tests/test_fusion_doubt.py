"""When the box cannot tell what a shopper put back, the shopper gets the benefit of the doubt."""

from __future__ import annotations

from shopkit import T0, Script, store_raw

from appliance.config import parse_config

LOOKALIKES = [
    {"sku": "jelly", "name": "Fruit Jelly 50 g", "price": 1000, "unit_g": 55.0, "unit_sd_g": 0.8},
    {"sku": "cups", "name": "Paper Cups 10-pack", "price": 1500, "unit_g": 55.0, "unit_sd_g": 1.0},
    {"sku": "gum", "name": "Gum", "price": 900, "unit_g": 32.0, "unit_sd_g": 0.5},
]
STOCK = [{"sku": "jelly", "sensors": ["g1.s1.p1"]}, {"sku": "cups", "sensors": ["g1.s1.p2"]},
         {"sku": "gum", "sensors": ["g1.s1.p6"]}]
NONCE = "DDDDDDDDDDDDDDDDDDDDDD"


def _take_both_then_put_one_down(put_g: float, on: str) -> tuple[dict[str, dict[str, int]], Script]:
    """A shopper takes a jelly from p1 and cups from p2 (both weigh 55 g), then sets `put_g` down on
    plate `on`; returns what was charged, and the script (for the floor's decisions)."""
    s = Script(parse_config(store_raw(products=LOOKALIKES, stock=STOCK)))
    s.enter(NONCE, T0 + 1)
    s.walk("t1", [(T0 + 1, 1.0, 0.3), (T0 + 6, 1.1, 3.45), (T0 + 14, 1.1, 3.45), (T0 + 16, 1.5, 3.45),
                  (T0 + 22, 1.5, 3.45), (T0 + 26, 2.5, 0.2), (T0 + 27, 2.5, -0.5)])
    s.change("g1.s1.p1", T0 + 8, -55.0)
    s.change("g1.s1.p2", T0 + 11, -55.0)
    s.change(on, T0 + 18, put_g)
    s.leave(T0 + 26)
    _, charged = s.run(T0, T0 + 36)
    return charged, s


def test_a_unit_that_could_be_either_of_two_lookalikes_is_credited_as_the_dearer():
    """55.0 g fits the jelly (sd 0.8 g) a little better than the cups (sd 1.0 g): neither is sure.
    Crediting the jelly would charge 1,500 for cups the shopper may have put back; crediting the
    cups charges the jelly, which costs the shopper less whichever it was."""
    charged, _ = _take_both_then_put_one_down(55.0, "g1.s1.p5")
    assert charged == {NONCE: {"jelly": 1}}


def test_a_return_the_weight_names_clearly_is_credited_as_weighed():
    """Back on the jelly's own plate, where cups are not stocked, the jelly is the sure reading:
    the doubt rule does not override it."""
    charged, _ = _take_both_then_put_one_down(55.0, "g1.s1.p1")
    assert charged == {NONCE: {"cups": 1}}
