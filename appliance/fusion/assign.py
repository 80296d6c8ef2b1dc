"""Who took it: how well each shopper's position explains a weight change, as pure functions.

A shopper who takes from a plate stands in front of it (a short step into the aisle from the
plate's centre, within an arm's reach to either side) and, when the tracker reports hands, has a
hand at the plate. Each point of a shopper's track during the event is scored against the changed
plates and the best moment counts. Scores of all candidates become confidences, so two people
side by side at one gondola make an honest, lower confidence rather than a confident guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from appliance.config import Sensor
from appliance.events import FloatArray

STAND_DEPTH_M = 0.6
STAND_DEPTH_SLACK_M = 0.2
STAND_DEPTH_SD_M = 0.25
ALONG_SD_M = 0.35
HAND_SLACK_M = 0.3
HAND_SD_M = 0.12
BODY_WEIGHT_WHEN_HAND_SEEN = 0.25
CONFIDENCE_FLOOR = 0.05
NOBODY_SCORE = 0.02


@dataclass(frozen=True, slots=True)
class Reach:
    """How well one visit's people explain a shelf event: score in [0, 1], and where the hand was."""

    visit: str
    score: float
    hand: tuple[float, float, float] | None = None
    confidence: float = 0.0


def body_scores(xy: FloatArray, plate: Sensor, reach_m: float) -> FloatArray:
    """Score in [0, 1] for each floor position (n, 2) as the place to stand to reach `plate`."""
    fx, fy = plate.facing
    dx = xy[:, 0] - plate.pos[0]
    dy = xy[:, 1] - plate.pos[1]
    depth = dx * fx + dy * fy
    along = -dx * fy + dy * fx
    off = np.maximum(np.abs(depth - STAND_DEPTH_M) - STAND_DEPTH_SLACK_M, 0.0)
    cost = (along / ALONG_SD_M) ** 2 + (off / STAND_DEPTH_SD_M) ** 2
    score = np.exp(-0.5 * cost)
    score[(depth < 0.0) | (np.hypot(dx, dy) > reach_m)] = 0.0
    return score


def hand_scores(hands: FloatArray, plate: Sensor) -> FloatArray:
    """Score in [0, 1] for each hand point (n, 3); NaN rows (hand unknown) score NaN."""
    d = np.linalg.norm(hands - np.asarray(plate.pos), axis=1)
    off = np.maximum(d - HAND_SLACK_M, 0.0)
    return np.exp(-0.5 * (off / HAND_SD_M) ** 2)


def reach_score(
    xy: FloatArray, hands: FloatArray, plates: Sequence[Sensor], shares: Sequence[float], reach_m: float
) -> tuple[float, tuple[float, float, float] | None]:
    """Best score over a track's points during an event, against plates weighted by their share.

    Where the hand is known at a point, it decides (a hand far from the plate says "not this one"
    even when the body stands right in front of it); the body still counts a little because hand
    estimates fail on occlusion.
    """
    if xy.shape[0] == 0:
        return 0.0, None
    total = np.zeros(xy.shape[0])
    hand_known = ~np.isnan(hands[:, 0]) if hands.shape[0] else np.zeros(xy.shape[0], dtype=bool)
    for plate, share in zip(plates, shares):
        body = body_scores(xy, plate, reach_m)
        if hand_known.any():
            hs = np.nan_to_num(hand_scores(hands, plate), nan=0.0)
            body = np.where(hand_known, np.maximum(hs, BODY_WEIGHT_WHEN_HAND_SEEN * body), body)
        total += share * body
    k = int(np.argmax(total))
    hand = tuple(float(v) for v in hands[k]) if hand_known.any() and hand_known[k] else None
    return float(total[k]), hand  # type: ignore[return-value]


def with_confidence(reaches: Sequence[Reach]) -> list[Reach]:
    """Confidences from scores, best first: score / (sum of scores + a floor for 'someone unseen')."""
    total = sum(r.score for r in reaches) + CONFIDENCE_FLOOR
    ranked = sorted(reaches, key=lambda r: (-r.score, r.visit))
    return [Reach(r.visit, r.score, r.hand, r.score / total) for r in ranked]


def plate_shares(deltas: Sequence[float]) -> list[float]:
    """How much each changed plate counts when scoring positions: by the size of its change."""
    mags = [abs(d) for d in deltas]
    total = sum(mags)
    if total <= 0 or not math.isfinite(total):
        return [1.0 / len(mags)] * len(mags) if mags else []
    return [m / total for m in mags]
