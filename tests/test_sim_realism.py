"""The simulated plates are about as noisy as real ones, measured the same way on both."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from appliance.sim import simulate
from appliance.sim.realism import aifi_readings, window_noise


def test_window_noise_measures_the_spread_within_each_second() -> None:
    rng = np.random.default_rng(0)
    t = np.tile(np.arange(0, 30, 1 / 60), 2)
    sensor = np.repeat(np.array([0, 1]), t.size // 2)
    grams = np.where(sensor == 0, 100.0, 5000.0) + rng.normal(0, 2.0, t.size) + np.where(t > 15.5, 300.0, 0.0)
    figures = window_noise(t, sensor, grams)
    assert figures.median_g == pytest.approx(2.0, rel=0.08)
    assert figures.max_g > 100, "the window holding the step shows it"
    assert figures.windows == 60


def test_the_real_aifi_recording_reads_as_sixty_hertz_plates_with_the_bottle_taken() -> None:
    t, sensor, grams = aifi_readings(shared_path("data", "aifi-benchmark-1", "plate_data.json"))
    per_plate = np.bincount(sensor)
    assert 250 < per_plate.size < 320 and per_plate.min() == per_plate.max() > 900
    first = sensor == 0
    assert float(np.median(np.diff(t[first]))) == pytest.approx(1 / 60, rel=0.05)
    early, late = t < t.min() + 4, t > t.max() - 3
    drops = [np.nanmedian(grams[(sensor == s) & early]) - np.nanmedian(grams[(sensor == s) & late])
             for s in range(per_plate.size)]
    assert max(drops) == pytest.approx(621.7, abs=15.0)


def test_simulated_quiet_plates_are_about_as_noisy_as_real_ones() -> None:
    real = window_noise(*aifi_readings(shared_path("data", "aifi-benchmark-1", "plate_data.json")))
    out = simulate("single-pick", 2)
    sim = window_noise(out.t, out.sensor, out.grams)
    assert 0.6 * real.median_g <= sim.median_g <= 1.5 * real.median_g
