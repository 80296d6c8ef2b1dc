"""The charge path's benchmarks still measure what they say (figures are printed by `appliance bench`, not tested)."""

from __future__ import annotations

from pathlib import Path

from appliance.bench.payments import measure_day, run_latency_bench


def test_the_latency_bench_measures_each_visit_from_exit_to_request_and_splits_the_path(tmp_path: Path) -> None:
    visits, _ = measure_day("multi-unit", 1, 0.0, tmp_path)
    assert len(visits) == 1
    v = visits[0]
    assert 0.25 <= v.core_wait <= 0.5  # data time: nothing near the shopper is undecided, so CLOSE_MIN_S and a tick
    assert v.commit > 0 and v.send > 0 and abs(v.live - (v.core_wait + v.commit + v.send)) < 1e-9
    assert v.wall_end_to_end is None  # only measured when played at a real-time pace


def test_the_latency_bench_report_names_the_parts_and_the_goal() -> None:
    lines = run_latency_bench("single-pick", 1, 0.0, progress=lambda text: None)
    text = "\n".join(lines)
    for part in ("exit -> charge request leaving the box", "core loop", "CLOSE_MIN_S", "the box",
                 "goal p99 < 1 s", "conditions:"):  # fmt: skip
        assert part in text, part
