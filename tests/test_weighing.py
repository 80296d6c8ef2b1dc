"""How precisely a shelf change is weighed: each plate change carries the standard error of its own
delta, from the readings averaged before and after it, and product inference trusts it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from shopkit import T0, Script

from appliance.events import PlateChange, SampleBlock, ShelfEvent
from appliance.shelves.products import measurement_sd
from appliance.shelves.steps import INDEPENDENT_PER_S, StepDetector

RATE_HZ = 60.0
PLATE = "g1.s1.p5"


def wobbling_readings(noise_g: float, levels: list[tuple[float, float]], t1: float, seed: int,
                      presses: list[tuple[float, float, float]] = ()) -> SampleBlock:
    """One plate read at 60 Hz from T0 to T0 + t1: its level (from each (t, grams) on) plus noise that
    wobbles slowly (about INDEPENDENT_PER_S independent readings a second, as real plates do) and
    hands pressing (t0, t1, grams) with their own shake."""
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(0.0, t1, 1.0 / RATE_HZ)
    g = np.full(t.size, levels[0][1])
    for at, grams in levels:
        g[t >= at] = grams
    phi = math.exp(-2.0 * INDEPENDENT_PER_S / RATE_HZ)  # correlation time 1 / (2 * independent per s)
    shocks = rng.normal(0.0, noise_g * math.sqrt(1.0 - phi * phi), t.size)
    wobble = np.empty(t.size)
    state = rng.normal(0.0, noise_g)
    for k, e in enumerate(shocks):
        state = phi * state + e
        wobble[k] = state
    for a, b, grams in presses:
        on = (t >= a) & (t < b)
        g[on] += grams * (1.0 + 0.05 * np.sin(2 * math.pi * 1.3 * (t[on] - a))) + rng.normal(0.0, 0.1 * grams, on.sum())
    return SampleBlock(t, np.full(t.size, 4, dtype=np.int64), g + wobble)


def weigh(block: SampleBlock) -> list[ShelfEvent]:
    """Step detection over one plate's readings, fed in quarter-second blocks as the loop feeds it."""
    config = Script.shop().config
    det = StepDetector(config.sensors, config.shelves)
    out: list[ShelfEvent] = []
    for start in np.arange(T0, float(block.t[-1]) + 0.25, 0.25):
        sel = (block.t >= start) & (block.t < start + 0.25)
        out += det.feed(SampleBlock(block.t[sel], block.sensor[sel], block.grams[sel]))
    return out + det.flush()


def takes_and_returns(noise_g: float, seed: int) -> list[tuple[float, ShelfEvent]]:
    """A 300 g unit taken and put back every 12 s (a hand pressing for half a second before each
    change), 30 times: each true change with the event that weighed it."""
    levels = [(T0, 1500.0)]
    presses = []
    truth = []
    for k in range(30):
        at = T0 + 12.0 + 12.0 * k
        delta = -300.0 if k % 2 == 0 else 300.0
        levels.append((at, levels[-1][1] + delta))
        presses.append((at - 0.5, at, 150.0))
        truth.append((at, delta))
    events = weigh(wobbling_readings(noise_g, levels, 12.0 * 32, seed, presses))
    out = []
    for at, delta in truth:
        (event,) = [e for e in events if at - 3.0 <= e.t_end <= at + 8.0]
        out.append((delta, event))
    return out


def rms_z(weighed: list[tuple[float, ShelfEvent]], sd: list[float]) -> tuple[float, int]:
    """Root mean square of the errors in units of their stated sd, and how many are beyond 3.5."""
    z = np.array([(event.delta_g - delta) / d for (delta, event), d in zip(weighed, sd)])
    return float(np.sqrt(np.mean(z * z))), int(np.sum(np.abs(z) > 3.5))


@pytest.mark.parametrize("noise_g", [1.0, 6.0])
def test_a_plate_changes_standard_error_matches_how_far_it_is_off(noise_g: float) -> None:
    """On a quiet plate and on a noisy one (whose settle window is longer, so averages more), each
    weighed change is off by about the standard error it carries."""
    weighed = takes_and_returns(noise_g, seed=int(noise_g * 10))
    sd = [math.sqrt(sum((c.delta_sd_g or math.inf) ** 2 for c in e.changes)) for _, e in weighed]
    rms, far = rms_z(weighed, sd)
    assert 0.65 <= rms <= 1.35  # 30 changes: the rms itself is known to about 13 %
    assert far <= 1


def test_a_noisy_plates_change_is_trusted_as_far_as_it_was_weighed() -> None:
    """`measurement_sd`, what product inference goes by, is no longer a fixed share of the plate's
    scatter (which made a 6 g plate's changes look 2-3 times worse than they were weighed)."""
    weighed = takes_and_returns(6.0, seed=60)
    rms, far = rms_z(weighed, [measurement_sd(e) for _, e in weighed])
    assert 0.6 <= rms <= 1.3  # (was 0.41: 0.7 of the scatter, where the window averaged far more)
    assert far <= 1


def test_each_plate_change_carries_the_standard_error_of_its_own_delta() -> None:
    """The error of one change is that of the mean it settled at and of the level it left, both
    averaged over seconds: far below a single reading's scatter, which stays in `noise_g`."""
    events = weigh(wobbling_readings(6.0, [(T0, 1500.0), (T0 + 20.0, 1200.0)], 40.0, seed=3,
                                     presses=[(T0 + 19.5, T0 + 20.0, 150.0)]))
    (event,) = events
    (change,) = event.changes
    assert change.noise_g == pytest.approx(6.0, rel=0.35)
    assert change.delta_sd_g is not None
    assert 0.15 * change.noise_g <= change.delta_sd_g <= 0.5 * change.noise_g


def test_measurement_sd_uses_each_plates_own_error_and_judges_unknown_ones_by_their_scatter() -> None:
    known = ShelfEvent(T0, T0 + 1, (PlateChange("p1", -300.0, 6.0, delta_sd_g=1.5),
                                    PlateChange("p2", -200.0, 4.0, delta_sd_g=2.0)))
    assert measurement_sd(known) == pytest.approx(math.sqrt(1.5**2 + 2.0**2 + 1.0))
    unknown = ShelfEvent(T0, T0 + 1, (PlateChange("p1", -300.0, 6.0),))  # e.g. from the AiFi importer
    assert measurement_sd(unknown) > measurement_sd(ShelfEvent(T0, T0 + 1, (known.changes[0],)))


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_a_plate_changes_standard_error_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(ValueError, match="delta_sd_g"):
        PlateChange("p1", -300.0, 1.0, delta_sd_g=bad)


def test_a_palm_resting_on_the_partner_plate_across_two_changes_is_read_into_neither() -> None:
    """A palm rests on p7 for eight seconds; meanwhile p6, its partner, settles twice (its share of
    the palm, then the palm's lifting). p7's readings under the palm are neither its level after
    the first change nor its level before the second: read so, the palm became 700 g set down in
    one event and 700 g taken in the other, and one of the two alone is an overcharge."""
    s = Script.shop()
    s.hands["g1.s1.p7"] = [(T0 + 4.0, T0 + 12.0, 700.0)]
    s.change("g1.s1.p6", T0 + 4.2, +60.0, press=None)
    s.change("g1.s1.p6", T0 + 12.0, -60.0, press=None)
    events = s.shelf_events(20, partners=True)
    assert [round(e.delta_g / 10) for e in events] == [6, -6]
    assert all(abs(c.delta_g) < 3.0 for e in events for c in e.changes if c.sensor == "g1.s1.p7")


def test_the_level_after_a_change_is_weighed_from_every_quiet_reading_until_it_is_released() -> None:
    """On a 3 g plate the settling window alone (1 s) weighs a change to about half the scatter; the
    readings that come in before the event is released say more, and the change carries that
    smaller error honestly (its errors are still about the size it states)."""
    weighed = takes_and_returns(3.0, seed=30)
    sd = [math.sqrt(sum((c.delta_sd_g or math.inf) ** 2 for c in e.changes)) for _, e in weighed]
    assert float(np.mean(sd)) <= 0.45 * 3.0  # (the settling window alone: 0.51 of the scatter)
    rms, far = rms_z(weighed, sd)
    assert 0.65 <= rms <= 1.35
    assert far <= 1


def _sachet(seed: int, grams: float) -> list[ShelfEvent]:
    """A hand presses a 3 g plate for half a second at T0 + 19.5 and leaves it `grams` lighter."""
    return weigh(wobbling_readings(3.0, [(T0, 1500.0), (T0 + 20.0, 1500.0 - grams)], 40.0, seed,
                                   [(T0 + 19.5, T0 + 20.0, 150.0)]))


def test_a_sachet_too_light_to_stand_out_from_the_settling_window_is_weighed_again_and_found() -> None:
    """A 5 g sachet off a plate with 3 g of scatter: the 1 s settling window cannot tell it from the
    scatter (it needs 6 g), so it was read as a palm that changed nothing, or, when the scatter
    happened to push it past 6 g, weighed that far off. Kept in doubt and weighed against the
    seconds of readings after it, most are found and weighed close to 5 g."""
    found = []
    for seed in range(1, 11):
        found += [e.delta_g for e in _sachet(seed, 5.0) if e.delta_g < 0 and T0 + 18.0 <= e.t_end <= T0 + 22.0]
    assert len(found) >= 6, found  # (was 4 of 10, weighed -5.7 to -6.8 g)
    assert all(abs(g + 5.0) <= 1.5 for g in found), found


def test_a_palm_that_leaves_nothing_behind_is_not_weighed_again_into_a_change() -> None:
    """The same press with nothing taken: the second weighing finds no change near the press."""
    for seed in range(1, 11):
        assert not [e for e in _sachet(seed, 0.0) if T0 + 18.0 <= e.t_end <= T0 + 22.0], seed
