"""The scorer follows spec/recording.md's Scoring section."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.sim.score import ScoreError, score


def _doc(*visits: tuple[str, list[dict[str, Any]]]) -> dict[str, Any]:
    return {"visits": [{"pass": p, "lines": lines} for p, lines in visits]}


@pytest.mark.parametrize(
    ("got", "want", "tp", "fp", "fn", "exact"),
    [
        ([{"sku": "a", "qty": 2, "amount": 200}], [{"sku": "a", "qty": 2}], 2, 0, 0, 1),
        ([{"sku": "a", "qty": 3, "amount": 300}], [{"sku": "a", "qty": 2}], 2, 1, 0, 0),
        ([], [{"sku": "a", "qty": 1}], 0, 0, 1, 0),
        ([{"sku": "b", "qty": 1, "amount": 50}], [{"sku": "a", "qty": 1}], 0, 1, 1, 0),
        ([{"sku": "n", "grams": 308.5, "amount": 31}], [{"sku": "n", "grams": 300.0}], 1, 0, 0, 1),
        ([{"sku": "n", "grams": 320.0, "amount": 32}], [{"sku": "n", "grams": 300.0}], 0, 1, 1, 0),
        ([{"sku": "n", "grams": 104.0, "amount": 10}], [{"sku": "n", "grams": 100.0}], 1, 0, 0, 1),
        ([], [], 0, 0, 0, 1),
    ],
)
def test_units_are_compared_as_multisets(got: Any, want: Any, tp: int, fp: int, fn: int, exact: int) -> None:
    s = score(_doc(("v1", got)), _doc(("v1", want)))
    assert (s.tp, s.fp, s.fn, s.exact) == (tp, fp, fn, exact)


def test_figures_overcharge_and_review_rate() -> None:
    receipts = {"visits": [
        {"pass": "v1", "lines": [{"sku": "a", "qty": 2, "amount": 2000}], "review": [{"reason": "who?"}]},
        {"pass": "v2", "lines": [{"sku": "b", "qty": 1, "amount": 500}]},
    ]}
    truth = _doc(("v1", [{"sku": "a", "qty": 1}]), ("v2", [{"sku": "b", "qty": 1}, {"sku": "c", "qty": 1}]))
    s = score(receipts, truth)
    assert (s.tp, s.fp, s.fn) == (2, 1, 1)
    assert s.precision == pytest.approx(2 / 3) and s.recall == pytest.approx(2 / 3)
    assert s.overcharge_share == pytest.approx(1000 / 2500)
    assert s.exact_share == 0.0 and s.review_per_1000 == 500.0


def test_a_visit_missing_from_the_receipts_counts_all_its_units_as_missed() -> None:
    s = score(_doc(), _doc(("v1", [{"sku": "a", "qty": 3}])))
    assert (s.fn, s.visits, s.exact) == (3, 1, 0)


def test_a_malformed_document_is_a_clear_error() -> None:
    with pytest.raises(ScoreError, match="needs exactly one of qty, grams"):
        score(_doc(("v1", [{"sku": "a"}])), _doc())
