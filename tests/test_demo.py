"""The terminal demo tells the shop's story as it happens, paced against an injected clock."""

from __future__ import annotations

import io

import pytest

from appliance.demo import format_money, play
from appliance.sim.live import simulated_recording


def test_the_demo_shows_entries_picks_and_receipts_and_checks_itself_against_the_truth() -> None:
    rec = simulated_recording("single-pick", 1)
    out = io.StringIO()
    stats = play(rec, speed=0, out=out)
    text = out.getvalue()
    assert "-> V1 entered" in text and "V1 took 1 x" in text and "<- V1 left: 1 x" in text
    assert "against the simulator's truth: F1 1.000" in text
    assert stats.visits == 1 and stats.receipts == 1 and stats.lines == 1
    assert "cus_" not in text and "WO1." not in text, "nothing from the pass may be shown"


def test_the_demo_keeps_pace_with_shop_time() -> None:
    rec = simulated_recording("single-pick", 1)
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    play(rec, speed=10.0, out=io.StringIO(), sleep=sleep, clock=lambda: now[0])
    assert sum(slept) == pytest.approx((rec.end - rec.start) / 10.0, abs=0.1)


@pytest.mark.parametrize(("amount", "currency", "text"), [(3900, "KRW", "3,900 KRW"), (1250, "USD", "12.50 USD")])
def test_money_is_shown_in_the_currency_s_units(amount: int, currency: str, text: str) -> None:
    assert format_money(amount, currency) == text
