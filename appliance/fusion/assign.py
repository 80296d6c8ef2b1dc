"""Who took it: how well each shopper explains a weight change, as pure functions.

A shopper who takes from a plate stands in front of it (a short step into the aisle from the
plate's centre, about level with it along the shelf) and, when the tracker reports hands, has a
hand at the plate. Each point of a person's track around the event is scored against the changed
plates and the best moment counts. A hand seen at the plate is strong evidence: when one person's
hand is seen there, people whose hands were not seen, or were seen elsewhere, become less likely.

People are also exclusive in time: one person rarely takes from two places at once. Events that
overlap in time are therefore assigned jointly, enumerating who-did-which, so a crowd at one
gondola is resolved as a whole rather than event by event. Scores become confidences, and two
people who cannot be told apart give an honest, low confidence rather than a confident guess.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from appliance.config import FusionSettings, Sensor
from appliance.events import FloatArray

HAND_FRONT_M = 0.3
HAND_BACK_M = 0.3
HAND_SIDE_SLACK_M = 0.02
HAND_ALONG_SD_M = 0.05
TOUCH_SLACK_M = 0.08  # hand points this much short of the furthest reach still count as touching
HAND_HEIGHT_SLACK_M = 0.12
HAND_SD_M = 0.1
HAND_LATE_START_S = 0.2  # `during` opens 0.3 s before the weight moved; the hand arrived about then
HAND_LATE_S = 0.1
HAND_NEAR = 0.5
UNSEEN_WHEN_OTHER_HAND_NEAR = 0.15
STILL_SPEED_M_S = 0.25
STILL_SPEED_SD_M_S = 0.25
HAND_SEEN_ELSEWHERE = 0.3
UNSEEN_LIKELIHOOD = 0.01
NOBODY_SCORE = 0.02
TWO_AT_ONCE = 0.1
MAX_JOINT = 20000


@dataclass(frozen=True, slots=True)
class Reach:
    """How well one person explains a shelf event.

    `body` is the best standing score, `hand` the best hand score (None when the tracker never
    reported that person's hand around the event); `score` combines them with the others'
    evidence, and `confidence` is the posterior that this person's visit did it.
    """

    visit: str
    person: int
    body: float
    hand: float | None
    hand_point: tuple[float, float, float] | None = None
    score: float = 0.0
    confidence: float = 0.0
    unweighed: float = 0.0  # the score without the others' hands counting against one not seen at the plate
    closeness: float = 1.0  # of several hands seen at the plate, how well this one's place fits, best 1

    @property
    def key(self) -> tuple[str, int]:
        return (self.visit, self.person)


def body_scores(xy: FloatArray, plate: Sensor, settings: FusionSettings) -> FloatArray:
    """Score in [0, 1] for each floor position (n, 2) as the place to stand to reach `plate`."""
    fx, fy = plate.facing
    dx = xy[:, 0] - plate.pos[0]
    dy = xy[:, 1] - plate.pos[1]
    depth = dx * fx + dy * fy
    along = -dx * fy + dy * fx
    off = np.maximum(np.abs(depth - settings.stand_depth_m) - settings.stand_depth_slack_m, 0.0)
    # Most takers stand level with the plate; some stand aside (someone else is in front of it)
    # and reach sideways: a narrow core with a wider tail, 1 where the core peaks.
    tail = settings.along_tail_share
    along_score = (1 - tail) * np.exp(-0.5 * (along / settings.along_sd_m) ** 2) + tail * np.exp(
        -0.5 * (along / settings.along_tail_sd_m) ** 2)
    score = along_score * np.exp(-0.5 * (off / settings.depth_sd_m) ** 2)
    score[(depth < 0.0) | (np.hypot(dx, dy) > settings.reach_m)] = 0.0
    return score


def hand_scores(hands: FloatArray, plate: Sensor) -> FloatArray:
    """Score in [0, 1] for each hand point (n, 3); NaN rows (hand unknown) score NaN.

    A hand taking from a plate is level with it and over it along the shelf, anywhere from deep
    in the shelf to just in front of it: depth is forgiven, height and sideways offset are not
    (they tell neighbouring plates and shelves apart).
    """
    fx, fy = plate.facing
    d = hands - np.asarray(plate.pos)
    depth = d[:, 0] * fx + d[:, 1] * fy
    along = -d[:, 0] * fy + d[:, 1] * fx
    off_depth = np.maximum(np.maximum(depth - HAND_FRONT_M, -HAND_BACK_M - depth), 0.0)
    off_along = np.maximum(np.abs(along) - plate.width / 2 - HAND_SIDE_SLACK_M, 0.0)
    off_up = np.maximum(np.abs(d[:, 2]) - HAND_HEIGHT_SLACK_M, 0.0)
    return np.exp(-0.5 * ((off_depth**2 + off_up**2) / HAND_SD_M**2 + (off_along / HAND_ALONG_SD_M) ** 2))


def reach_evidence(
    t: FloatArray, xy: FloatArray, hands: FloatArray, plates: Sequence[Sensor], shares: Sequence[float],
    during: tuple[float, float], settings: FusionSettings,
) -> tuple[float, float | None, tuple[float, float, float] | None]:
    """(body score, best hand score or None, hand point there) of one track around an event.

    The body score is the mean over the points while the hand was on the shelf (`during`): a
    taker stands in place for all of it, whereas someone walking past is in position only for a
    moment. With no point inside, the nearest points in time stand in for it.
    """
    if xy.shape[0] == 0:
        return 0.0, None, None
    body = np.zeros(xy.shape[0])
    known = ~np.isnan(hands[:, 0]) if hands.shape[0] else np.zeros(xy.shape[0], dtype=bool)
    hand = np.zeros(xy.shape[0])
    for plate, share in zip(plates, shares):
        body += share * body_scores(xy, plate, settings)
        if known.any():
            hand += share * np.nan_to_num(hand_scores(hands, plate), nan=0.0)
    inside = (t >= during[0]) & (t <= during[1])
    if inside.sum() >= 2:
        body_score = float(body[inside].mean())
        idx = np.flatnonzero(inside)
    else:
        gap = np.maximum(during[0] - t, t - during[1])
        idx = np.sort(np.argsort(gap)[:3])
        body_score = float(body[idx].mean())
    body_score *= still_factor(t[idx], xy[idx])
    # A hand counts while it could be touching the plate, not on its way past to another one.
    touching = known & (t >= during[0] + HAND_LATE_START_S) & (t <= during[1] + HAND_LATE_S)
    if not touching.any():
        return body_score, None, None
    # Only where the hand reached out furthest: on its way to a neighbouring plate it passes in
    # front of this one, but it stops at the one it takes from.
    fx, fy = plates[0].facing
    depth = (hands[:, 0] - plates[0].pos[0]) * fx + (hands[:, 1] - plates[0].pos[1]) * fy
    deepest = float(np.min(depth[touching]))
    touching &= depth <= deepest + TOUCH_SLACK_M
    k = int(np.argmax(np.where(touching, hand, -1.0)))
    point = (float(hands[k, 0]), float(hands[k, 1]), float(hands[k, 2]))
    return body_score, float(hand[k]), point


def still_factor(t: FloatArray, xy: FloatArray) -> float:
    """How plausible it is that someone moving like this took from a shelf: a taker stands still
    while the hand is on the shelf; someone walking past at a normal pace does not."""
    if t.shape[0] < 2 or t[-1] - t[0] < 0.3:
        return 1.0
    speed = float(np.hypot(*(xy[-1] - xy[0]))) / float(t[-1] - t[0])
    excess = max(0.0, speed - STILL_SPEED_M_S)
    return math.exp(-0.5 * (excess / STILL_SPEED_SD_M_S) ** 2)


def closer_hands(reaches: Sequence[Reach], plates: Sequence[Sensor], shares: Sequence[float],
                 hand_sd_m: float) -> list[Reach]:
    """When two or more people's hands are seen at the changed plates, how much likelier each is
    than the nearest along the shelf.

    A hand score forgives a few centimetres beyond the plate's edge (a package is grabbed where it
    is, not at the plate's centre), so a hand over the neighbouring plate still scores well on its
    own. Between two hands, though, the one nearer the plate is likelier by the tracker's hand
    error: the taker's hand is anywhere across the plate's width, blurred by `hand_sd_m`. Each seen
    hand gets its likelihood under that model relative to the best one's as `closeness` (two hands
    both over the plate stay about as likely as each other); with fewer than two hands seen there
    is nothing to compare. Whether a hand counts as seen at the plate does not change.
    """
    seen = [r for r in reaches if r.hand is not None and r.hand >= HAND_NEAR and r.hand_point is not None]
    if len(seen) < 2:
        return list(reaches)

    def across(point: tuple[float, float, float]) -> float:
        """Likelihood of a hand at `point` for a take from the plates, 1 at a plate's centre."""
        total = 0.0
        for plate, share in zip(plates, shares):
            fx, fy = plate.facing
            along = -(point[0] - plate.pos[0]) * fy + (point[1] - plate.pos[1]) * fx
            total += share * _over_plate(along, plate.width / 2, hand_sd_m) / _over_plate(0.0, plate.width / 2,
                                                                                           hand_sd_m)
        return total

    fit = {id(r): across(r.hand_point) for r in seen if r.hand_point is not None}
    best = max(fit.values())
    if best <= 0.0:
        return list(reaches)
    return [replace(r, closeness=fit[id(r)] / best) if id(r) in fit else r for r in reaches]


def _over_plate(along: float, half: float, sd: float) -> float:
    """How likely (up to a constant) a hand reported `along` from a plate's centre is for a take from
    that plate: the hand is anywhere across its width (half-width `half`), blurred by the error `sd`."""
    def cdf(x: float) -> float:
        return 0.5 * (1.0 + math.erf(x / (sd * math.sqrt(2.0))))
    return cdf(along + half) - cdf(along - half)


def weigh(reaches: Sequence[Reach]) -> list[Reach]:
    """Combine body and hand evidence across the candidates of one event into scores."""
    someone_near = any(r.hand is not None and r.hand >= HAND_NEAR for r in reaches)
    out = []
    for r in reaches:
        base = max(r.body, r.hand or 0.0)
        if r.hand is not None and r.hand >= HAND_NEAR:
            score = base * r.closeness
            out.append(Reach(r.visit, r.person, r.body, r.hand, r.hand_point, score, unweighed=score))
            continue
        # Two separate pieces of evidence against a person whose hand was not seen at the plate:
        # their own hand seen elsewhere, and someone else's hand seen there.
        own = HAND_SEEN_ELSEWHERE if r.hand is not None else 1.0
        others = UNSEEN_WHEN_OTHER_HAND_NEAR if someone_near else 1.0
        out.append(Reach(r.visit, r.person, r.body, r.hand, r.hand_point, base * own * others,
                         unweighed=base * own))
    return out


def assign_jointly(
    events: Sequence[Sequence[Reach]], overlapping: Sequence[Sequence[bool]]
) -> list[list[Reach]]:
    """Posterior per event over its candidates' visits, treating people as exclusive in time.

    Args:
        events: for each event, its candidates with scores (from `weigh`).
        overlapping: overlapping[i][j] is True when events i and j happen at the same time.

    Returns:
        For each event, its candidates best first with `confidence` = the probability that the
        candidate's visit (any of its people) did it. Someone unseen doing it keeps a small share.
    """
    options: list[list[Hashable | None]] = [[r.key for r in rs] + [None] for rs in events]
    weights: list[dict[Hashable | None, float]] = [
        {**{r.key: max(r.score, 0.0) for r in rs}, None: UNSEEN_LIKELIHOOD} for rs in events
    ]
    # A hand seen at a plate counts against the people whose hands were not seen there, unless its
    # owner is taking from another plate at the same time (a hand on its way to the next plate).
    near = [{r.key for r in rs if r.hand is not None and r.hand >= HAND_NEAR} for rs in events]
    lifted = [{r.key: r.unweighed for r in rs if r.unweighed > r.score} for rs in events]
    size = math.prod(len(o) for o in options)
    marg: list[dict[Hashable | None, float]] = [dict.fromkeys(o, 0.0) for o in options]
    if len(events) > 1 and size <= MAX_JOINT:
        for combo in itertools.product(*options):
            w = 1.0
            for i, who in enumerate(combo):
                if who in lifted[i] and all(_busy_elsewhere(k, i, combo, overlapping) for k in near[i]):
                    w *= lifted[i][who]
                else:
                    w *= weights[i][who]
                if w == 0.0:
                    break
            if w == 0.0:
                continue
            for i in range(len(combo)):
                if combo[i] is None:
                    continue
                for j in range(i + 1, len(combo)):
                    if combo[j] == combo[i] and overlapping[i][j]:
                        w *= TWO_AT_ONCE
            for i, who in enumerate(combo):
                marg[i][who] += w
    else:
        marg = [dict(w) for w in weights]
    out: list[list[Reach]] = []
    for rs, m in zip(events, marg):
        total = sum(m.values()) or 1.0
        by_visit: dict[str, float] = {}
        for r in rs:
            by_visit[r.visit] = by_visit.get(r.visit, 0.0) + m[r.key] / total
        ranked = sorted(rs, key=lambda r: (-by_visit[r.visit], -m[r.key], r.visit, r.person))
        seen: set[str] = set()
        best: list[Reach] = []
        for r in ranked:
            if r.visit in seen:
                continue
            seen.add(r.visit)
            best.append(Reach(r.visit, r.person, r.body, r.hand, r.hand_point, r.score, by_visit[r.visit]))
        out.append(best)
    return out


def _busy_elsewhere(who: Hashable, i: int, combo: Sequence[Hashable | None],
                    overlapping: Sequence[Sequence[bool]]) -> bool:
    """Whether `combo` has `who` doing another event at the same time as event i."""
    return any(combo[j] == who for j in range(len(combo)) if j != i and overlapping[i][j])


def plate_shares(deltas: Sequence[float]) -> list[float]:
    """How much each changed plate counts when scoring positions: by the size of its change."""
    mags = [abs(d) for d in deltas]
    total = sum(mags)
    if total <= 0 or not math.isfinite(total):
        return [1.0 / len(mags)] * len(mags) if mags else []
    return [m / total for m in mags]
