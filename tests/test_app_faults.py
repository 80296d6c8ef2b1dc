"""A simulated day through the whole appliance while the processor has a bad day: every visit charged once."""

from __future__ import annotations

from pathlib import Path

from appliance.bench.faults import OUTAGE_S, TRANSPORT_FAULTS, run_faulty_day


def test_timeouts_500s_409s_dropped_answers_and_ten_minutes_down_charge_every_visit_once(tmp_path: Path) -> None:
    day = run_faulty_day("rush", 4, tmp_path, shoppers=6, duration_s=150.0)
    assert day.to_pay >= 4
    assert (day.double_charges, day.lost_visits, day.not_final, day.wrong_amounts) == (0, 0, 0, 0)
    assert day.paid == day.to_pay and day.paid + day.none_due == day.visits
    injected = sum(n for _, n in TRANSPORT_FAULTS)
    # every fault was hit, and the outage was retried through:
    assert day.faults_unused == 0 and day.charge_requests > day.to_pay + injected
    assert day.box_clock_s >= OUTAGE_S  # the ten minutes passed on the box's (hand-moved) clock
    assert day.clean
