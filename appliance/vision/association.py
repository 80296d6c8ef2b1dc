"""Track life cycle and staged association, shared by the floor tracker and the image tracker.

Each step matches sightings to tracks in stages, each an optimal assignment (scipy's
`linear_sum_assignment`): sure sightings to the tracks seen lately, confirmed or still
tentative (so a new track competes fairly with an old one for the person it follows); then weak
sightings (boxes the detector was unsure of, often a half-hidden person) to the confirmed tracks
still unmatched, as ByteTrack does; then sure sightings to tracks lost for longer, searched for
farther the longer they were lost. Weak sightings never revive a lost track: a half-seen box near
a hidden person is as often someone walking past them.

This is where the shop's priors act: a person who vanished inside the shop is still inside, so a
lost track waits to be found again instead of being replaced by a new one. Where a track may be
found, how sure a new one must be before it counts, and when a lost one is forgotten are
questions the `TrackSpace` answers.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from appliance.events import FloatArray
from appliance.vision.motion import Motion


@dataclass(frozen=True, slots=True)
class Assignment:
    """Which rows were paired with which columns, and what was left over on each side."""

    pairs: tuple[tuple[int, int], ...]
    rows_left: tuple[int, ...]
    cols_left: tuple[int, ...]


def assign(cost: FloatArray, gate: float) -> Assignment:
    """The pairing of rows to columns with the least total cost, using only pairs costing at most `gate`.

    Pairs above the gate (or infinite) are forbidden, never merely expensive, so one far-off pair
    cannot pull the others into a worse solution.
    """
    rows, cols = cost.shape
    allowed = np.isfinite(cost) & (cost <= gate)
    if not allowed.any():
        return Assignment((), tuple(range(rows)), tuple(range(cols)))
    big = float(np.max(np.where(allowed, cost, 0.0))) + 1.0 + abs(gate)
    r_idx, c_idx = linear_sum_assignment(np.where(allowed, cost, big * max(rows, cols)))
    pairs = tuple((int(r), int(c)) for r, c in zip(r_idx, c_idx) if allowed[r, c])
    used_r = {r for r, _ in pairs}
    used_c = {c for _, c in pairs}
    return Assignment(
        pairs, tuple(r for r in range(rows) if r not in used_r), tuple(c for c in range(cols) if c not in used_c)
    )


@dataclass(slots=True)
class Track:
    """One followed person: motion estimate, when it was last seen and how sure we are it is real.

    `trait` is a running average of a measured property that does not change while the person
    is followed (the floor tracker uses their height), NaN until first measured.
    """

    number: int
    motion: Motion
    at: float
    seen: float
    hits: int
    needed: int
    confirmed: bool
    score: float
    last: FloatArray
    trait: float = float("nan")
    trait_count: int = 0
    sure: float = float("-inf")

    def lost_for(self, t: float) -> float:
        return t - self.seen


class TrackSpace(Protocol):
    """Where tracks live (floor metres, image pixels) and the priors that hold there."""

    def costs(self, tracks: Sequence[Track], z: FloatArray, r: FloatArray, t: float, lost: bool,
              traits: FloatArray) -> FloatArray:
        """Cost of continuing each track with each sighting; above 1 (or inf) forbids the pair.

        `lost` asks for the wide search used for tracks unseen for a while; `traits` holds each
        sighting's measured trait (NaN where unmeasured).
        """
        ...

    def accel_sd(self, track: Track) -> FloatArray:
        """How sharply the person may change speed, per dimension (units per second squared)."""
        ...

    def birth(self, z: FloatArray) -> tuple[int, FloatArray]:
        """Hits a new track starting at `z` needs before it counts, and its initial speed spread."""
        ...

    def forget_after(self, track: Track) -> float:
        """Seconds a confirmed track may stay unseen at its last place before it ends."""
        ...

    def held(self, track: Track, t: float) -> FloatArray:
        """Which dimensions have no velocity when predicting to `t` (booleans, one per dimension):
        a person unseen for a while has stopped; some dimensions may never move on their own."""
        ...


@dataclass(frozen=True, slots=True)
class Match:
    """A track and the index of the sighting that continued it this step."""

    track: Track
    index: int


class TrackBook:
    """All live tracks in one space and the staged association that updates them.

    Args:
        space: geometry and priors (see `TrackSpace`).
        recent_s: a track unseen for at most this long is matched in the first stages with the
            tight cost; after that a confirmed track counts as lost and a tentative one ends.
        confirm_at_start: tracks born on the very first step count at once (people already in
            view when tracking starts).
        weak_hold_s: weak sightings continue a track only this long after a sure one last did.
            They bridge a moment of occlusion; a track that only weak sightings have continued
            for longer is more likely held by a false box (goods on a shelf that look like a
            person) than by its person, who is then better searched for as lost.
    """

    def __init__(self, space: TrackSpace, recent_s: float, confirm_at_start: bool = True,
                 weak_hold_s: float = float("inf")) -> None:
        self.space = space
        self.recent_s = recent_s
        self.confirm_at_start = confirm_at_start
        self.weak_hold_s = weak_hold_s
        self.tracks: list[Track] = []
        self._next = 1
        self._steps = 0

    def step(self, t: float, z: FloatArray, r: FloatArray, score: FloatArray, score_high: float,
             traits: FloatArray | None = None) -> list[Match]:
        """Advance to time `t` with sightings `z` (n, d), covariances `r` (n, d, d), scores (n,)
        and optionally a measured trait per sighting (n,), NaN where unmeasured."""
        traits = np.full(len(z), np.nan) if traits is None else traits
        self.predict(t)
        matches, fresh = self.associate(t, z, r, score, score_high, traits)
        self.correct(t, [(m.track, z[m.index], r[m.index], float(score[m.index]), float(traits[m.index]))
                         for m in matches], score_high)
        matches.extend(Match(self.start(t, z[i], r[i], float(score[i]), float(traits[i])), i) for i in fresh)
        self.finish(t)
        return matches

    def predict(self, t: float) -> None:
        """Move every track to time `t` under its motion (first part of a step)."""
        for tr in self.tracks:
            tr.motion = tr.motion.stopped(self.space.held(tr, t)).predicted(t - tr.at, self.space.accel_sd(tr))
            tr.at = t

    def associate(self, t: float, z: FloatArray, r: FloatArray, score: FloatArray, score_high: float,
                  traits: FloatArray) -> tuple[list[Match], list[int]]:
        """The staged matching of one set of sightings to the predicted tracks, changing nothing.

        Returns the matches and the sure sightings left over (candidates for new tracks). Several
        cameras each call this against the same prediction: a track may then be continued by one
        sighting from each camera, never by two from one.
        """
        high = [i for i in range(len(z)) if score[i] >= score_high]
        low = [i for i in range(len(z)) if score[i] < score_high]
        recent = [tr for tr in self.tracks if tr.confirmed and tr.lost_for(t) <= self.recent_s]
        tentative = [tr for tr in self.tracks if not tr.confirmed and tr.lost_for(t) <= self.recent_s]
        lost = [tr for tr in self.tracks if tr.confirmed and tr.lost_for(t) > self.recent_s]
        matches: list[Match] = []
        high, recent = self._stage(recent, high, z, r, t, False, traits, matches)
        weak_ok = [tr for tr in recent if t - tr.sure <= self.weak_hold_s]
        self._stage(weak_ok, low, z, r, t, False, traits, matches)
        # A person found again continues their own track before a new one still being confirmed
        # can claim them (that one then dies unconfirmed instead of becoming a second person).
        high, _ = self._stage(lost, high, z, r, t, True, traits, matches)
        high, _ = self._stage(tentative, high, z, r, t, False, traits, matches)
        return matches, high

    def correct(self, t: float, seen: Sequence[tuple[Track, FloatArray, FloatArray, float, float]],
                score_high: float = 0.0) -> None:
        """Update tracks with what continued them at `t`: (track, z, r, score, trait) rows; a track
        listed more than once (seen by several cameras) takes each measurement in turn. Scores of
        at least `score_high` count as sure sightings (see `weak_hold_s`)."""
        counted: set[int] = set()
        for tr, z, r, score, trait in seen:
            tr.motion = tr.motion.corrected(z, r)
            tr.seen = t
            if score >= score_high:
                tr.sure = t
            if tr.number not in counted:
                tr.hits += 1
                counted.add(tr.number)
                tr.score = score
            else:
                tr.score = max(tr.score, score)
            tr.last = z
            tr.confirmed = tr.confirmed or tr.hits >= tr.needed
            self._learn(tr, trait)

    def start(self, t: float, z: FloatArray, r: FloatArray, score: float, trait: float) -> Track:
        """A new track at sighting `z`, confirmed when the space says one sighting is enough (or
        on the very first step with `confirm_at_start`)."""
        needed, speed_sd = self.space.birth(z)
        tr = Track(self._next, Motion.start(z, r, speed_sd), t, t, 1, needed,
                   needed <= 1 or (self._steps == 0 and self.confirm_at_start), score, z, sure=t)
        self._learn(tr, trait)
        self._next += 1
        self.tracks.append(tr)
        return tr

    def finish(self, t: float) -> None:
        """End the step at `t`: forget the tracks lost for too long."""
        self.tracks = [tr for tr in self.tracks if self._keep(tr, t)]
        self._steps += 1

    @staticmethod
    def _learn(tr: Track, trait: float, memory: int = 30) -> None:
        """Running average over the last `memory` or so measurements."""
        if np.isfinite(trait):
            tr.trait_count = min(tr.trait_count + 1, memory)
            tr.trait = trait if tr.trait_count == 1 else tr.trait + (trait - tr.trait) / tr.trait_count

    def _stage(
        self, tracks: list[Track], idx: list[int], z: FloatArray, r: FloatArray, t: float, lost: bool,
        traits: FloatArray, out: list[Match],
    ) -> tuple[list[int], list[Track]]:
        if not tracks or not idx:
            return idx, tracks
        cost = self.space.costs(tracks, z[idx], r[idx], t, lost, traits[idx])
        result = assign(cost, 1.0)
        out.extend(Match(tracks[a], idx[b]) for a, b in result.pairs)
        return [idx[c] for c in result.cols_left], [tracks[k] for k in result.rows_left]

    def _keep(self, tr: Track, t: float) -> bool:
        if tr.seen == t:
            return True
        if not tr.confirmed:
            return tr.lost_for(t) <= self.recent_s
        return tr.lost_for(t) <= self.space.forget_after(tr)
