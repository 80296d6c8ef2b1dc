"""Scoring receipts against the truth (spec/recording.md, "Scoring").

Per visit, the multisets of units are compared: units on both sides are true positives, units
charged but not taken false positives, units taken but not charged false negatives. A by-weight
line counts as one unit, right when its sku matches and its grams lie within max(5 g, 3%).
Overcharge is the money charged for units not taken, as a share of all money charged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ScoreError(ValueError):
    """A receipts or truth document that does not have the shape of spec/recording.md."""


@dataclass(frozen=True, slots=True)
class Score:
    """Counts and money for one or more recordings; the figures are derived properties."""

    tp: int = 0
    fp: int = 0
    fn: int = 0
    visits: int = 0
    exact: int = 0
    charged: int = 0
    overcharged: int = 0
    review_items: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(*(a + b for a, b in zip(self._tuple(), other._tuple())))

    def _tuple(self) -> tuple[int, ...]:
        return (self.tp, self.fp, self.fn, self.visits, self.exact, self.charged, self.overcharged,
                self.review_items)

    @property
    def precision(self) -> float:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0

    @property
    def recall(self) -> float:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def exact_share(self) -> float:
        return self.exact / self.visits if self.visits else 1.0

    @property
    def overcharge_share(self) -> float:
        return self.overcharged / self.charged if self.charged else 0.0

    @property
    def review_per_1000(self) -> float:
        return 1000.0 * self.review_items / self.visits if self.visits else 0.0

    def as_json(self) -> dict[str, float | int]:
        return {
            "visits": self.visits, "tp": self.tp, "fp": self.fp, "fn": self.fn,
            "precision": round(self.precision, 4), "recall": round(self.recall, 4), "f1": round(self.f1, 4),
            "exact_receipts": round(self.exact_share, 4), "charged": self.charged,
            "overcharged": self.overcharged, "overcharge_share": round(self.overcharge_share, 5),
            "review_items": self.review_items, "review_per_1000_visits": round(self.review_per_1000, 1),
        }


def _visits(doc: Any, what: str) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("visits"), list):
        raise ScoreError(f'{what}: expected {{"visits": [...]}}')
    out: dict[str, dict[str, Any]] = {}
    for i, v in enumerate(doc["visits"]):
        if not isinstance(v, dict) or not isinstance(v.get("pass"), str) or not isinstance(v.get("lines"), list):
            raise ScoreError(f'{what}: visits[{i}] needs "pass" (a nonce) and "lines"')
        if v["pass"] in out:
            raise ScoreError(f"{what}: visits[{i}]: pass {v['pass']!r} appears twice")
        for j, line in enumerate(v["lines"]):
            if not isinstance(line, dict) or not isinstance(line.get("sku"), str):
                raise ScoreError(f"{what}: visits[{i}].lines[{j}] needs a sku")
            if ("qty" in line) == ("grams" in line):
                raise ScoreError(f"{what}: visits[{i}].lines[{j}] needs exactly one of qty, grams")
        out[v["pass"]] = v
    return out


def _grams_match(charged: float, true: float) -> bool:
    return abs(charged - true) <= max(5.0, 0.03 * true)


def score_visit(receipt_lines: Sequence[Mapping[str, Any]], truth_lines: Sequence[Mapping[str, Any]]) -> Score:
    """Score one visit's receipt lines against its true lines."""
    got = Counter({ln["sku"]: int(ln["qty"]) for ln in receipt_lines if "qty" in ln})
    want: Counter[str] = Counter()
    for ln in truth_lines:
        if "qty" in ln:
            want[ln["sku"]] += int(ln["qty"])
    unit_price = {ln["sku"]: int(ln["amount"]) / max(int(ln["qty"]), 1) for ln in receipt_lines
                  if "qty" in ln and "amount" in ln}
    tp = sum((got & want).values())
    fp_units = got - want
    fp = sum(fp_units.values())
    fn = sum((want - got).values())
    over = sum(unit_price.get(sku, 0.0) * n for sku, n in fp_units.items())
    charged = sum(int(ln.get("amount", 0)) for ln in receipt_lines)
    got_w = [ln for ln in receipt_lines if "grams" in ln]
    want_w = [ln for ln in truth_lines if "grams" in ln]
    unmatched = list(want_w)
    for ln in got_w:
        match = next((t for t in unmatched if t["sku"] == ln["sku"] and _grams_match(float(ln["grams"]),
                                                                                    float(t["grams"]))), None)
        if match is not None:
            unmatched.remove(match)
            tp += 1
        else:
            fp += 1
            over += int(ln.get("amount", 0))
    fn += len(unmatched)
    return Score(tp, fp, fn, 1, int(fp == 0 and fn == 0), charged, round(over), 0)


def score(receipts: Any, truth: Any) -> Score:
    """Score a receipts document against a truth document (both as parsed JSON)."""
    got = _visits(receipts, "receipts")
    want = _visits(truth, "truth")
    total = Score()
    for nonce in sorted(set(got) | set(want)):
        r = got.get(nonce, {"lines": []})
        s = score_visit(r["lines"], want.get(nonce, {"lines": []})["lines"])
        total = total + s + Score(review_items=len(r.get("review", [])))
    return total
