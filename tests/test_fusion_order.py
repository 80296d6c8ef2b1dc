"""What a put-down credits depends on what the carts hold: it is decided after the changes before it."""

from __future__ import annotations

from shopkit import T0, Script, store_raw

from appliance.config import parse_config

S, R = "SSSSSSSSSSSSSSSSSSSSSS", "RRRRRRRRRRRRRRRRRRRRRR"


def _shop_with_a_second_gondola() -> Script:
    """The test shop, plus two plates of a second gondola 3.7 m along (x = 5.0, 5.1), stocking nothing."""
    raw = store_raw()
    raw["sensors"] += [{"id": f"g2.s1.p{i + 1}", "pos": [5.0 + 0.1 * i, 4.0, 1.0], "facing": [0.0, -1.0],
                        "width": 0.1, "tare_g": 500.0} for i in range(2)]
    return Script(parse_config(raw))


def test_a_unit_put_down_elsewhere_is_credited_although_its_take_was_decided_late():
    """S takes a gum from p4 (the hand seen there) while R, beside S, leans on p5 for 11 s: the take
    waits for p5 to settle (the two are decided with p5 in mind). Meanwhile S walks to the other
    gondola and sets the gum down there. The put-down must wait for the take: decided first, it
    would find no cart holding a gum, credit nobody, and S would pay for the gum left on the shelf."""
    s = _shop_with_a_second_gondola()
    s.enter(S, T0 + 1, track="tS")
    s.walk("tS", [(T0 + 1, 1.0, 0.3), (T0 + 6, 1.3, 3.45), (T0 + 11, 1.3, 3.45), (T0 + 14, 5.0, 3.45),
                  (T0 + 18, 5.0, 3.45), (T0 + 24, 2.5, 0.2), (T0 + 25, 2.5, -0.5)])
    s.reach("tS", T0 + 8.0, T0 + 9.6, (1.3, 3.98, 1.02))
    s.change("g1.s1.p4", T0 + 9, -32.0)
    s.change("g2.s1.p1", T0 + 16, 32.0)
    s.enter(R, T0 + 2, track="tR")
    s.walk("tR", [(T0 + 2, 1.0, 0.3), (T0 + 7, 1.4, 3.45), (T0 + 22, 1.4, 3.45), (T0 + 27, 2.5, 0.2),
                  (T0 + 28, 2.5, -0.5)])
    s.change("g1.s1.p5", T0 + 20, 0.0, press=(11.5, 300.0))
    s.leave(T0 + 24.5, "tS")
    s.leave(T0 + 27.5, "tR")
    floor, charged = s.run(T0, T0 + 45)
    assert charged[S] == {}
    assert charged[R] == {}
    assert [d.outcome for d in floor.decisions if d.event.delta_g > 20] == ["returned to the wrong place"]
