"""The simulated load cells and tracker report the world as real devices would, faults included."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from appliance.sim import default_shop, loadcells, tracker
from appliance.sim.acts import Press, Reach
from appliance.sim.loadcells import DeadSensor, SensorProfile
from appliance.sim.stock import Step
from appliance.sim.tracker import TrackerProfile
from appliance.sim.world import PersonPath

QUIET = SensorProfile(noise_median_g=0.0, noise_spread=0.0, drift_g_per_h=0.0, gain_sd=0.0, creep=0.0, jitter_s=0.0,
                      drop_p=0.0, gaps_per_h=0.0, fault_p=0.0, spike_p=0.0, vibration_g=0.0)
T0 = 1_700_000_000.0


@pytest.fixture(scope="module")
def shop():  # type: ignore[no-untyped-def]
    return default_shop(3)


def _plate(out: loadcells.Readings, index: int) -> tuple[np.ndarray, np.ndarray]:
    m = out.sensor == index
    return out.t[m], out.grams[m]


def test_a_noiseless_plate_reads_tare_plus_stock_and_steps_exactly(shop) -> None:  # type: ignore[no-untyped-def]
    opening = [1000.0] * len(shop.plates)
    steps = [Step(5, T0 + 2.0, 0.2, -521.0), Step(5, T0 + 4.0, 0.3, 521.0, impact_g=150.0, impact_tau=0.1)]
    out = loadcells.render(shop, opening, steps, [], QUIET, 1, T0, T0 + 6.0)
    t, g = _plate(out, 5)
    tare = shop.plates[5].tare_g
    assert np.allclose(g[t < T0 + 2.0], tare + 1000.0)
    assert np.allclose(g[(t > T0 + 2.3) & (t < T0 + 4.0)], tare + 479.0)
    assert g[(t > T0 + 4.3) & (t < T0 + 4.5)].max() > tare + 1000.0 + 20.0, "a set-down lands with an overshoot"
    assert np.allclose(g[t > T0 + 5.2], tare + 1000.0, atol=0.01)


def test_a_press_adds_force_only_while_the_hand_is_there(shop) -> None:  # type: ignore[no-untyped-def]
    press = Press("p1", T0 + 1.0, T0 + 3.0, 800.0, ((7, 0.75), (8, 0.25)), 0.3, ((0.2, 2.0, 0.0),), "rest")
    out = loadcells.render(shop, [500.0] * len(shop.plates), [], [press], QUIET, 1, T0, T0 + 4.0)
    for index, share in ((7, 0.75), (8, 0.25)):
        t, g = _plate(out, index)
        base = shop.plates[index].tare_g + 500.0
        assert np.allclose(g[(t < T0 + 1.0) | (t > T0 + 3.0)], base)
        during = g[(t > T0 + 1.4) & (t < T0 + 2.6)] - base
        assert during.mean() == pytest.approx(800.0 * share, rel=0.15)
        assert during.std() > 0.05 * 800.0 * share, "a resting hand wobbles"


def test_dead_sensors_fall_silent_or_report_faults_from_their_time_on(shop) -> None:  # type: ignore[no-untyped-def]
    dead = (DeadSensor(2, T0 + 3.0, "silent"), DeadSensor(3, T0 + 3.0, "faulting"))
    out = loadcells.render(shop, [500.0] * len(shop.plates), [], [], QUIET, 1, T0, T0 + 6.0, dead)
    t, _ = _plate(out, 2)
    assert t.max() < T0 + 3.0
    t, g = _plate(out, 3)
    assert np.isnan(g[t >= T0 + 3.0]).all() and np.isfinite(g[t < T0 + 3.0]).all()


def test_handling_a_gondola_shakes_its_other_plates_not_other_gondolas(shop) -> None:  # type: ignore[no-untyped-def]
    profile = SensorProfile(noise_median_g=0.5, noise_spread=0.0, vibration_g=4.0, drop_p=0.0, gaps_per_h=0.0,
                            fault_p=0.0, spike_p=0.0)
    pressed = shop.shelves[2].plates[0]
    press = Press("p1", T0 + 2.0, T0 + 8.0, 1200.0, ((pressed, 1.0),), 0.3, (), "rest")
    out = loadcells.render(shop, [500.0] * len(shop.plates), [], [press], profile, 1, T0, T0 + 10.0)
    same_gondola = shop.shelves[2].plates[3]
    other_gondola = next(p.index for p in shop.plates if shop.gondola_of(p.index) != shop.gondola_of(pressed))

    def spread(index: int, a: float, b: float) -> float:
        t, g = _plate(out, index)
        return float(np.std(g[(t > a) & (t < b)]))

    assert spread(same_gondola, T0 + 2.5, T0 + 7.5) > 3 * spread(same_gondola, T0 + 0.1, T0 + 1.9)
    assert spread(other_gondola, T0 + 2.5, T0 + 7.5) < 2 * spread(other_gondola, T0 + 0.1, T0 + 1.9)


@pytest.mark.parametrize(("field", "value"), [("noise_median_g", -1.0), ("drop_p", 1.0), ("dead_silent", -1)])
def test_a_sensor_profile_rejects_impossible_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field.split("_")[0]):
        SensorProfile(**{field: value})


def _walk(person: str, start: tuple[float, float], end: tuple[float, float], t0: float, t1: float) -> PersonPath:
    t = np.linspace(t0, t1, int((t1 - t0) * 10) + 1)
    f = (t - t0) / (t1 - t0)
    xy = np.stack([start[0] + f * (end[0] - start[0]), start[1] + f * (end[1] - start[1])], axis=1)
    return PersonPath(person, t, xy)


NO_FAULTS = TrackerProfile(noise_m=0.02, miss_p=0.0, fragment_per_min=0.0, switch_p=0.0, hand_share=0.0)


def test_two_people_passing_close_swap_ids_when_the_tracker_is_confused(shop) -> None:  # type: ignore[no-untyped-def]
    a = _walk("p1", (1.0, 1.0), (1.0, 4.0), T0, T0 + 6.0)
    b = _walk("p2", (1.1, 4.0), (1.1, 1.0), T0, T0 + 6.0)
    for p_switch, swapped in ((0.0, False), (1.0, True)):
        profile = TrackerProfile(noise_m=0.02, miss_p=0.0, fragment_per_min=0.0, switch_p=p_switch)
        seen = tracker.render(shop, [a, b], {}, profile, 1, T0, T0 + 6.0)
        start_id = seen.id_at("p1", T0 + 0.5)
        end_rows = [p for p in seen.points if p.track == start_id and p.t > T0 + 5.0]
        assert end_rows
        ends_near_b = abs(end_rows[-1].y - 1.0) < 0.5
        assert ends_near_b is swapped
        assert seen.switches == (1 if swapped else 0)
        assert len({p.track for p in seen.points}) == 2


def test_a_lost_person_comes_back_under_a_new_id_nearby(shop) -> None:  # type: ignore[no-untyped-def]
    path = _walk("p1", (0.8, 1.0), (3.5, 4.0), T0, T0 + 60.0)
    profile = TrackerProfile(noise_m=0.05, miss_p=0.0, fragment_per_min=6.0, switch_p=0.0)
    seen = tracker.render(shop, [path], {}, profile, 2, T0, T0 + 60.0)
    ids = list(dict.fromkeys(p.track for p in seen.points))
    assert len(ids) == seen.fragments + 1 >= 3
    for old, new in itertools.pairwise(ids):
        last = [p for p in seen.points if p.track == old][-1]
        first = next(p for p in seen.points if p.track == new)
        assert 0.45 <= first.t - last.t <= 6.5
        assert math.dist((last.x, last.y), (first.x, first.y)) < 0.2 * 6.5 + 0.5


def test_missed_frames_thin_the_rows_but_keep_the_id(shop) -> None:  # type: ignore[no-untyped-def]
    path = _walk("p1", (0.8, 1.0), (0.8, 4.0), T0, T0 + 30.0)
    seen = tracker.render(shop, [path], {}, TrackerProfile(miss_p=0.3, fragment_per_min=0.0), 3, T0, T0 + 30.0)
    assert 0.6 * 300 < len(seen.points) < 0.8 * 300
    assert len({p.track for p in seen.points}) == 1


def test_hand_points_follow_the_reach_out_to_the_shelf_and_back(shop) -> None:  # type: ignore[no-untyped-def]
    path = _walk("p1", (1.0, 2.0), (1.0, 2.0001), T0, T0 + 5.0)
    reach = Reach("p1", T0 + 1.0, T0 + 1.5, T0 + 2.5, T0 + 3.0, (0.4, 2.0, 1.2), (0.9, 2.0, 1.4))
    profile = TrackerProfile(noise_m=0.02, miss_p=0.0, fragment_per_min=0.0, hand_share=1.0, hand_frame_p=1.0,
                             hand_noise_m=0.0)
    seen = tracker.render(shop, [path], {"p1": [reach]}, profile, 4, T0, T0 + 5.0)
    hands = [(p.t, p.hand) for p in seen.points if p.hand is not None]
    assert all(T0 + 1.0 <= t <= T0 + 3.0 for t, _ in hands) and len(hands) >= 18
    held = [h for t, h in hands if T0 + 1.5 <= t <= T0 + 2.5]
    assert all(h == pytest.approx((0.4, 2.0, 1.2)) for h in held)
    out_way = [h[0] for t, h in hands if t < T0 + 1.5]
    assert out_way == sorted(out_way, reverse=True), "the hand moves out towards the shelf"


def test_ghosts_are_short_tracks_of_their_own(shop) -> None:  # type: ignore[no-untyped-def]
    path = _walk("p1", (0.8, 1.0), (0.8, 4.0), T0, T0 + 120.0)
    seen = tracker.render(shop, [path], {}, TrackerProfile(ghost_per_min=3.0, fragment_per_min=0.0), 5, T0,
                          T0 + 120.0)
    assert seen.ghosts > 0
    person_ids = {tid for _, tid in seen.ids["p1"]}
    ghost_rows = [p for p in seen.points if p.track not in person_ids]
    assert ghost_rows and len({p.track for p in ghost_rows}) == seen.ghosts
    assert len(ghost_rows) <= seen.ghosts * 26


@pytest.mark.parametrize(("field", "value"), [("rate_hz", 0.5), ("miss_p", 1.5), ("noise_m", -0.1)])
def test_a_tracker_profile_rejects_impossible_values(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        TrackerProfile(**{field: value})
