"""Step detection: how a plate's change is measured next to plates that a hand has just left."""

from __future__ import annotations

import pytest
from shopkit import T0, Script


def _pick_beside_a_palm_weighs_one_bottle(palm: tuple[float, float], seconds: int) -> None:
    """Water stands across p6 and p7. A bottle that stood on p6 alone is taken at T0 + 10 s while a
    palm of 700 g rests on p7 over `palm` (seconds after T0). p7 did not move across the pick, so
    the pick weighs one bottle and p7 has no part in it."""
    s = Script.shop()
    s.hands["g1.s1.p7"] = [(T0 + palm[0], T0 + palm[1], 700.0)]
    s.change("g1.s1.p6", T0 + 10.0, -1040.0, press=(0.6, 150.0))
    events = s.shelf_events(seconds, partners=True)
    picks = [e for e in events if e.delta_g < -100]
    assert len(picks) == 1
    assert picks[0].delta_g == pytest.approx(-1040.0, abs=3.0)
    assert all(abs(c.delta_g) < 3.0 for c in picks[0].changes if c.sensor == "g1.s1.p7")


def test_a_palm_lifted_from_the_partner_plate_just_before_a_pick_is_not_part_of_the_pick() -> None:
    # the palm lifts two seconds before the pick
    _pick_beside_a_palm_weighs_one_bottle((3.0, 7.5), 16)


def test_a_palm_resting_on_the_partner_plate_just_after_a_pick_is_not_weighed_as_part_of_it() -> None:
    """Half a second after the pick a palm comes to rest on p7 for a few seconds. The pick is
    released once p7 is still again, and p7's readings under the palm are not its level after the
    pick (before, the palm was read as 700 g set down on p7 and weighed to a fraction of a gram)."""
    _pick_beside_a_palm_weighs_one_bottle((10.5, 15.0), 22)


def test_a_neighbours_take_and_return_around_a_pick_does_not_stretch_the_picks_moment() -> None:
    """Regression: a unit lifted from the next plate and put back 2 s later joined the pick's event
    (netting to nothing) and stretched its time to the return, so the picker seemed busy at the
    shelf for seconds longer and a neighbour's next take was given to someone else."""
    s = Script.shop()
    s.change("g1.s1.p4", T0 + 4.5, -32.0, press=None)
    s.change("g1.s1.p3", T0 + 5.0, -515.0, press=(0.6, 150.0))
    s.change("g1.s1.p4", T0 + 6.8, +32.0, press=None)
    events = s.shelf_events(14)
    (pick,) = [e for e in events if e.delta_g < -100]
    assert {c.sensor for c in pick.changes} >= {"g1.s1.p3"}
    assert all(abs(c.delta_g) < 3.0 for c in pick.changes if c.sensor == "g1.s1.p4")
    assert pick.t_end < T0 + 6.0, (pick.t_start - T0, pick.t_end - T0)  # the return came at T0 + 6.8


def test_a_plate_stirred_for_seconds_before_a_take_reports_the_moment_of_the_take() -> None:
    """A palm resting on the shelf above shakes the plate from T0 + 4 (readings wander by tens of
    grams); the bottle leaves at T0 + 9. The event is timed by the take, not by the shaking, so the
    people around the shelf are judged where they stood when the bottle left."""
    s = Script.shop()
    s.hands["g1.s1.p3"] = [(T0 + 4.0, T0 + 9.0, 0.0)]
    s.change("g1.s1.p3", T0 + 9.0, -515.0, press=None)
    events = s.shelf_events(16)
    (pick,) = [e for e in events if e.delta_g < -100]
    assert T0 + 8.0 <= pick.t_start <= T0 + 9.0, pick.t_start - T0
    assert pick.delta_g == pytest.approx(-515.0, abs=3.0)
    (change,) = [c for c in pick.changes if c.sensor == "g1.s1.p3"]
    assert change.t_start == pick.t_start  # each plate's own moment travels with the event


def test_a_small_take_from_a_noisy_plate_is_found_though_no_reading_stands_out() -> None:
    """A 31 g cable leaves a plate whose readings scatter by 14 g: no single reading is far enough off
    to make the plate busy, and its level would drift to the new weight unnoticed. The level parting
    from the plate's slowly moving anchor gives it away; the change is timed from the readings."""
    s = Script.shop()
    s.noise = 14.0
    s.change("g1.s1.p5", T0 + 30.0, -31.0, press=None)
    events = s.shelf_events(60)
    (take,) = events
    assert [c.sensor for c in take.changes] == ["g1.s1.p5"]
    assert take.delta_g == pytest.approx(-31.0, abs=8.0)
    assert T0 + 28.5 <= take.t_start <= T0 + 30.5, take.t_start - T0


def test_noisy_drifting_plates_left_alone_report_nothing() -> None:
    # Eight plates scattering by 14 g for five minutes, one of them drifting 100 g an hour.
    s = Script.shop()
    s.noise = 14.0
    for k in range(1, 300):
        s.set_level("g1.s1.p2", T0 + k, 1500.0 + k * 100.0 / 3600.0)
    assert s.shelf_events(300) == []


def test_a_noisy_partner_plate_moving_against_a_take_is_not_counted_in_it() -> None:
    """Cola stands across p1 and p2; p2 scatters by 12 g. A bottle leaves p1 alone: p2's level
    across the take moves only by its scatter, and when that is upwards (a take cannot put weight on
    the plate beside it) it must not make the bottle look lighter than it is."""
    for seed in range(1, 11):
        s = Script.shop()
        s.seed = seed
        s.plate_noise = {"g1.s1.p2": 12.0}
        s.change("g1.s1.p1", T0 + 10.0, -521.0, press=None)
        (take,) = s.shelf_events(20, partners=True)
        for c in take.changes:
            if c.sensor == "g1.s1.p2":
                assert c.delta_g < 0 or abs(c.delta_g) >= 4.0 * c.noise_g, (seed, c)
