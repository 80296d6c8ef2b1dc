"""Visits: binding the people who come through the gate to the pass that opened it, until they leave.

A pass opens the gate for up to `party` people. Tracks that start at the entry (or are named by
the gate) become the visit's people; a track that starts anywhere else is a tracker losing and
finding someone again, so it is stitched to the person most recently lost nearby rather than
treated as a newcomer. A person leaves when the exit gate registers them (the nearest member at
the exit) or, when the gate reports no exits, when their track crosses the exit line outward; a
visit ends when all its people have left.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from appliance.config import StoreConfig
from appliance.events import GateEvent, TrackPoint
from appliance.gate.floor import FloorMemory, TrackHistory, crosses, segment_distance
from appliance.gate.passes import PassClaims

logger = logging.getLogger(__name__)

ENTRY_RADIUS_M = 1.5
EXIT_RADIUS_M = 2.0
LOST_AFTER_S = 0.15
STITCH_WINDOW_S = 8.0
STITCH_BASE_M = 0.8
STITCH_SURE_S = 0.4
WALK_SPEED_M_S = 1.5
FRAME_TOLERANCE_S = 0.03
EARLY_CROSSING_S = 2.0
PRE_EXISTING_S = 1.0
JUST_ARRIVED_S = 10.0
EXIT_MATCH_S = 2.0
STILL_SEEN_S = 1.0
STILL_SEEN_M = 0.8
JUST_ARRIVED_PENALTY_M = 1.5
ADOPT_WINDOW_S = 2.0
WAITING_SEEN_S = 0.5
MOTION_SPAN_S = 1.0
STALE_GAP_S = 1.0
STALE_MATCH_M = 0.2
STALE_RATIO = 0.5
WANDER_M_S = 0.3
SWAP_NEAR_M = 1.2
SWAP_MIN_COST_M2 = 0.25**2
SWAP_RATIO = 0.25
SWAP_JUMP_M = 0.3
ROTATION_MAX = 5
ENCOUNTER_OPEN_M = 0.5
ENCOUNTER_CLOSE_M = 0.9
ENCOUNTER_MAX_S = 4.0
ENCOUNTER_WALK_M_S = 0.4
ENCOUNTER_MIN_COST_M2 = 0.3**2
ENCOUNTER_RATIO = 0.4
SWAP_RATIO_JUMP = 0.4
VELOCITY_WINDOW_S = 0.6
MAX_SPEED_M_S = 2.0
MISSED_WITHIN_S = 0.6
# Heights the cameras measure (TrackPoint.stature; about 7 cm error each): a person's own is the
# median of the first STATURE_LEARN_N readings on their tracks; a track's recent one, the median of
# at least STATURE_RECENT_N readings in the last STATURE_RECENT_S.
STATURE_LEARN_N = 20
STATURE_RECENT_S = 2.0
STATURE_RECENT_N = 10
STATURE_APART_M = 0.08  # two people this different in height can be told apart by it
STATURE_MATCH_M = 0.04  # a recent height this close to a person's is theirs


def _velocity(h: TrackHistory, before: float) -> tuple[float, float] | None:
    """Average velocity over the second of points up to `before` (None with too few)."""
    tt = h.t
    k1 = len(tt) - 1
    while k1 >= 0 and tt[k1] > before:
        k1 -= 1
    k0 = k1
    while k0 > 0 and tt[k0 - 1] >= before - 1.0:
        k0 -= 1
    if k1 < 0 or tt[k1] - tt[k0] < 0.5:
        return None
    span = tt[k1] - tt[k0]
    return (h.x[k1] - h.x[k0]) / span, (h.y[k1] - h.y[k0]) / span


def _predict(h: TrackHistory, at: float | None = None) -> tuple[float, float, float, float] | None:
    """Where a track should be from its motion: at its newest point's time from the points before
    it, or (with `at`) at time `at` from all its points. Returns (x, y, vx, vy)."""
    n = len(h.t) if at is not None else len(h.t) - 1
    if n < 2:
        return None
    t_new = at if at is not None else h.t[-1]
    t_prev = h.t[n - 1]
    n += 1
    k = n - 2
    while k > 0 and h.t[k - 1] >= t_prev - VELOCITY_WINDOW_S:
        k -= 1
    span = t_prev - h.t[k]
    if span >= 0.2:
        vx = (h.x[n - 2] - h.x[k]) / span
        vy = (h.y[n - 2] - h.y[k]) / span
        speed = math.hypot(vx, vy)
        if speed > MAX_SPEED_M_S:
            vx, vy = vx * MAX_SPEED_M_S / speed, vy * MAX_SPEED_M_S / speed
    else:
        vx = vy = 0.0
    dt = t_new - t_prev
    if dt > 1.0:
        return None
    return h.x[n - 2] + vx * dt, h.y[n - 2] + vy * dt, vx, vy


@dataclass(slots=True)
class Person:
    """One person of a visit, followed through however many track ids the tracker gives them."""

    tracks: list[str]
    left: float | None = None
    also: tuple[str, ...] = ()  # other visits this person may belong to, when binding could not tell
    seen: float = -math.inf  # when the floor last reported any of their tracks
    heights: list[float] = field(default_factory=list)  # the first measured heights (memory only)

    @property
    def stature(self) -> float:
        """Their height as first measured, NaN until STATURE_LEARN_N readings."""
        if len(self.heights) < STATURE_LEARN_N:
            return math.nan
        return float(sorted(self.heights)[len(self.heights) // 2])


@dataclass(slots=True)
class Visit:
    """One pass's time in the shop. `nonce` names it (the pass's nonce, in memory only)."""

    nonce: str
    entered: float
    party: int
    claims: PassClaims | None = None
    people: list[Person] = field(default_factory=list)
    left: float | None = None

    @property
    def open_slots(self) -> int:
        return self.party - len(self.people)

    @property
    def tracks(self) -> list[str]:
        return [t for p in self.people for t in p.tracks]


class VisitBook:
    """Keeps open visits and who belongs to them; fed gate events and track points in time order.

    Args:
        config: the store (entry and exit lines, floor size).
        memory: where track points are held (shared with fusion).
        bind_window_s: how long after a pass is accepted newcomers at the entry still belong to it.
        exits_from_gate: True when the exit gate reports people leaving; otherwise leaving is seen
            as a track crossing the exit line outward.
    """

    def __init__(self, config: StoreConfig, memory: FloorMemory, bind_window_s: float,
                 exits_from_gate: bool = True) -> None:
        self.config = config
        self.memory = memory
        self.bind_window_s = bind_window_s
        self.exits_from_gate = exits_from_gate
        self.visits: dict[str, Visit] = {}
        self.owner: dict[str, tuple[str, int]] = {}
        self.unbound: dict[str, TrackHistory] = {}
        self.closed: list[Visit] = []
        self.alias: dict[str, str] = {}
        self.crossed: dict[str, float] = {}
        self._tracking_since = math.inf
        self._crossings: list[tuple[float, tuple[str, int]]] = []
        self._encounters: dict[tuple[str, str], tuple[float, tuple[float, float], tuple[float, float],
                                                       tuple[float, float], tuple[float, float]]] = {}
        self._pending_exits: list[float] = []
        self._postponed: dict[str, float | None] = {}
        self.swaps = 0
        self._serial = 0
        self._handed_on: set[str] = set()
        self._frame_t = -math.inf
        self._heights: dict[str, list[tuple[float, float]]] = {}  # recent (t, height) per internal track
        self._frame: list[str] = []
        floor = config.floor
        self._entry = floor.entry
        self._exit = floor.exit
        centre = (floor.size[0] / 2, floor.size[1] / 2)
        self._inside_entry = self._side(self._entry, centre)
        self._inside_exit = self._side(self._exit, centre)

    @staticmethod
    def _side(seg: tuple[tuple[float, float], tuple[float, float]], p: tuple[float, float]) -> int:
        (ax, ay), (bx, by) = seg
        v = (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax)
        return 1 if v > 0 else -1

    # --- entries and binding --------------------------------------------------------------------

    def entry(self, event: GateEvent, claims: PassClaims) -> Visit:
        """A pass was accepted: open its visit and bind whoever is already waiting at the entry."""
        visit = Visit(claims.nonce, event.t, claims.party, claims)
        self.visits[visit.nonce] = visit
        if event.track:
            self._bind(self.alias.get(event.track, event.track), visit)
        # People who crossed the entry line just before the gate reported the pass (clocks and
        # tracker latency differ by a moment) belong to it, in the order they crossed.
        early = sorted((t, tid) for tid, t in self.crossed.items()
                       if tid in self.unbound and event.t - EARLY_CROSSING_S <= t <= event.t)
        for _t, tid in early:
            if visit.open_slots <= 0:
                break
            self._bind(tid, visit)
        return visit

    def _bind(self, track: str, visit: Visit, person: int | None = None) -> None:
        if track in self.owner:
            return
        if person is None:
            if visit.open_slots <= 0:
                return
            visit.people.append(Person([track]))
            person = len(visit.people) - 1
        else:
            visit.people[person].tracks.append(track)
        self.owner[track] = (visit.nonce, person)
        self.unbound.pop(track, None)

    def _awaiting(self, t: float) -> list[Visit]:
        return sorted((v for v in self.visits.values() if v.open_slots > 0 and v.left is None
                       and t - self.bind_window_s <= v.entered <= t + EARLY_CROSSING_S
                       and v.entered >= self._tracking_since - PRE_EXISTING_S),
                      key=lambda v: v.entered)

    def _served(self, awaiting: list[Visit], h: TrackHistory, crossed: float) -> Visit:
        """Whose person `h`, across the entry at `crossed`, is, of the passes with places still
        empty (oldest first): the newest one accepted before they crossed. The gate serves one party
        at a time (spec/recording.md: the next person across belongs to the pass just accepted), so
        once a newer pass was accepted, an older one's empty places will not be filled from the
        entry: its people crossed unseen or did not come. Binding them the oldest first instead
        would hand every later shopper the pass before theirs. A track first seen already inside
        crossed before it was seen, at walking pace."""
        if crossed == h.first_t and self._near_entry(h.first_xy, inside=True):
            crossed -= segment_distance(h.first_xy, self._entry) / WALK_SPEED_M_S
        before = [v for v in awaiting if v.entered <= crossed]
        return before[-1] if before else awaiting[0]

    def _adopt(self, h: TrackHistory) -> bool:
        """People already inside when tracking began (the box restarted, or a recording starts
        mid-visit) cannot be seen crossing the entry: they belong to the visits that entered
        before. Which of those visits is whose cannot be told; each such person is bound to one
        and marked as possibly any of them, so fusion sends their picks to review rather than
        guessing."""
        if h.first_t > self._tracking_since + ADOPT_WINDOW_S:
            return False
        earlier = sorted((v for v in self.visits.values() if v.open_slots > 0 and v.left is None
                          and v.entered < self._tracking_since - PRE_EXISTING_S), key=lambda v: v.entered)
        if not earlier:
            return False
        self._bind(h.track, earlier[0])
        owned = self.owner[h.track]
        others = tuple(v.nonce for v in earlier[1:])
        self.visits[owned[0]].people[owned[1]].also = others
        return True

    def last_seen(self, person: Person) -> TrackHistory | None:
        """The newest of a person's tracks that has points (after a swap the newest id may have
        none yet: the tracker lost them at the moment it gave their id away)."""
        for tid in reversed(person.tracks):
            h = self.memory.tracks.get(tid)
            if h is not None and h.t:
                return h
        return None

    def _lost_person(self, h: TrackHistory) -> tuple[Visit, int] | None:
        """The person most plausibly continued by new track `h`: lost recently, close by."""
        found = self._lost_person_scored(h)
        return (found[1], found[2]) if found else None

    @staticmethod
    def _continuation(last: TrackHistory, h: TrackHistory) -> float | None:
        """How well new track `h` continues `last` (lower is better: metres apart plus a little for
        the time between), or None when it cannot (`last` still tracked, lost too long ago, or
        too far to have walked)."""
        gap = h.first_t - last.last_t
        if not LOST_AFTER_S <= gap <= STITCH_WINDOW_S:
            return None
        dist = math.dist(last.last_xy, h.first_xy)
        if dist > STITCH_BASE_M + WALK_SPEED_M_S * gap:
            return None
        return dist + 0.3 * gap

    def _lost_person_scored(self, h: TrackHistory) -> tuple[float, Visit, int] | None:
        best: tuple[float, Visit, int] | None = None
        for visit in self.visits.values():
            if visit.left is not None:
                continue
            for i, person in enumerate(visit.people):
                if person.left is not None:
                    continue
                last = self.last_seen(person)
                if last is None:
                    continue
                score = self._continuation(last, h)
                if score is not None and (best is None or score < best[0]):
                    best = (score, visit, i)
        return best

    def _lost_outside(self, h: TrackHistory) -> float | None:
        """How well new track `h` continues someone lost while waiting outside the entry (a newcomer
        the tracker missed as they crossed): the best continuation score, None if nobody fits."""
        best: float | None = None
        for tid, other in self.unbound.items():
            if tid == h.track or not other.t:
                continue
            if not self._near_entry(other.last_xy, inside=False):
                continue
            score = self._continuation(other, h)
            if score is not None and (best is None or score < best):
                best = score
        return best

    def track(self, p: TrackPoint) -> None:
        """A tracker's point: remember it, bind new tracks, repair swapped ids, notice people leaving.

        The tracker's id is mapped to an internal track id; after a detected id swap the two
        tracker ids continue under new internal ids bound to each other's person, so every internal
        track belongs to one person for its whole life.
        """
        if self._tracking_since == math.inf:
            self._tracking_since = p.t
        if p.t > self._frame_t + FRAME_TOLERANCE_S:
            self._repair_swaps()
            self._frame_t = p.t
            self._frame = []
        internal = self.alias.get(p.track, p.track)
        h = self.memory.add(TrackPoint(p.t, internal, p.x, p.y, p.hand))
        self._frame.append(internal)
        owned = self.owner.get(internal)
        if owned is None:
            self._place(h)
            owned = self.owner.get(internal)
            if owned is None:
                return
        if owned[0] in self.visits:
            person = self.visits[owned[0]].people[owned[1]]
            person.seen = p.t
            if p.stature is not None:
                recent = self._heights.setdefault(internal, [])
                recent.append((p.t, p.stature))
                if recent[0][0] < p.t - STATURE_RECENT_S:
                    self._heights[internal] = [r for r in recent if r[0] >= p.t - STATURE_RECENT_S]
                if len(person.heights) < STATURE_LEARN_N:
                    person.heights.append(p.stature)
        if len(h.t) >= 2 and owned[0] in self.visits:
            step = crosses((h.x[-2], h.y[-2]), (h.x[-1], h.y[-1]), self._exit)
            if step != 0 and step != self._inside_exit:
                self._crossed_out(owned, p.t)
        self._expire_pending(p.t)

    # --- leaving: the exit gate's count, matched to who walked out -------------------------------------

    def _crossed_out(self, owned: tuple[str, int], t: float) -> None:
        """A shopper's track crossed the exit line outward."""
        visit = self.visits[owned[0]]
        if visit.people[owned[1]].left is not None:
            return  # the gate already named them leaving: no exit of the gate is still theirs
        if not self.exits_from_gate:
            self._leave(visit, owned[1], t)
            return
        waiting = [e for e in self._pending_exits if abs(e - t) <= EXIT_MATCH_S]
        if waiting:
            self._pending_exits.remove(waiting[0])
            self._leave(visit, owned[1], waiting[0])
        else:
            self._crossings.append((t, owned))

    def tick(self, now: float) -> None:
        """Time passes without track points: settle exits that waited long enough, and give up on
        shoppers not seen for `gone_unseen_s`."""
        self._expire_pending(now)
        self._give_up_unseen(now)

    def _give_up_unseen(self, now: float) -> None:
        """Close what nothing more can happen to. A shopper the floor has not reported for
        `gone_unseen_s` has left unnoticed (an exit the gate counted that nobody was seen walking
        out for, or one the gate missed): they leave as of when they were last seen. A visit whose
        people have all left closes once nobody else can still join it (the bind window is over),
        and a pass nobody came in on closes empty after `gone_unseen_s`. Otherwise such visits
        would stay open, uncharged, until the box stops."""
        limit = self.config.gate.gone_unseen_s
        for visit in self.visits.values():
            if visit.left is not None:
                continue
            for i, person in enumerate(visit.people):
                seen = max(person.seen, visit.entered)
                if person.left is None and now - seen > limit:
                    logger.warning("a shopper not seen for %.0f s is taken to have left", limit)
                    self._leave(visit, i, seen)
            if self._nobody_to_come(visit, now):
                visit.left = max(p.left for p in visit.people if p.left is not None)
            elif not visit.people and now - visit.entered > limit:
                logger.warning("a pass nobody was seen coming in on is closed after %.0f s", limit)
                visit.left = now

    def _expire_pending(self, now: float) -> None:
        """Exits nobody was seen walking out for: give them to whoever is nearest the exit."""
        self._crossings = [c for c in self._crossings if now - c[0] <= EXIT_MATCH_S * 2]
        for t in [e for e in self._pending_exits if now - e > EXIT_MATCH_S]:
            self._pending_exits.remove(t)
            self._nearest_leaves(t)

    # --- id swaps ------------------------------------------------------------------------------------

    def motion(self, tid: str) -> TrackHistory:
        """A track's recent points for judging its motion: a track just started by a repaired swap
        (or a stitch) has too few points of its own, so the same person's previous track lends its
        last second before it."""
        h = self.memory.tracks[tid]
        if h.t and h.last_t - h.first_t >= MOTION_SPAN_S:
            return h
        owned = self.owner.get(tid)
        visit = self.visits.get(owned[0]) if owned else None
        if owned is None or visit is None:
            return h
        tracks = visit.people[owned[1]].tracks
        k = tracks.index(tid) if tid in tracks else 0
        prev = self.memory.tracks.get(tracks[k - 1]) if k > 0 else None
        if prev is None or not prev.t or not h.t or h.first_t - prev.last_t > STITCH_WINDOW_S:
            return h
        end = len(prev.t)
        while end > 0 and prev.t[end - 1] >= h.first_t:
            end -= 1
        if end == 0:
            return h
        j = end - 1
        while j > 0 and prev.t[j - 1] >= prev.t[end - 1] - MOTION_SPAN_S:
            j -= 1
        return TrackHistory(tid, prev.t[j], (prev.x[j], prev.y[j]), prev.t[j:end] + h.t, prev.x[j:end] + h.x,
                            prev.y[j:end] + h.y, prev.hand[j:end] + h.hand)

    def _repair_swaps(self) -> None:
        """Check the frame just completed: did two nearby people's tracker ids trade places?

        Each track's new point is compared with where its own recent motion predicts it; when the
        points fit the other track's prediction much better than their own, the ids swapped. The
        tracker's error wanders by centimetres, so only a clear improvement counts.
        """
        # (A frame can be minutes old when the shop was empty, and its tracks forgotten since.)
        bound = [tid for tid in dict.fromkeys(self._frame) if tid in self.owner and tid in self.memory.tracks]
        if not bound:
            return
        # Someone not bound to any pass (yet, or any more) can trade ids with a shopper too.
        loose = [tid for tid in dict.fromkeys(self._frame) if tid in self.unbound and tid in self.memory.tracks]
        preds: dict[str, tuple[float, float, float, float]] = {}
        for tid in bound + loose:
            pred = _predict(self.motion(tid))
            if pred is not None:
                preds[tid] = pred
        # People missed in this frame, by their newest track: a repair below that hands on their id
        # also puts that track in `done`, so the list holds for every check of the frame.
        missed = self._missed_this_frame()
        done = self._repair_rotations(bound + loose, preds, missed)
        pairs = list(itertools.combinations(bound, 2)) + [(a, u) for a in bound for u in loose]
        for a, b in pairs:
            if a in done or b in done or a not in preds or b not in preds:
                continue
            if self.owner.get(a) == self.owner.get(b):
                continue
            pa, pb = preds[a], preds[b]
            if math.dist(pa[:2], pb[:2]) > SWAP_NEAR_M:
                continue
            ha, hb = self.memory.tracks[a], self.memory.tracks[b]
            na, nb = ha.last_xy, hb.last_xy
            keep = math.dist(na, pa[:2]) ** 2 + math.dist(nb, pb[:2]) ** 2
            swap = math.dist(na, pb[:2]) ** 2 + math.dist(nb, pa[:2]) ** 2
            if keep > SWAP_MIN_COST_M2 and swap < SWAP_RATIO * keep:
                self._swap(a, b)
                done.update((a, b))
        # One id jumped onto where someone else should be while that someone missed this frame:
        # the tracker gave their id away; from now on each id continues the other person.
        others = missed
        # An id back after a long gap counts the same way: it reappears where its own person may
        # have wandered to, but right where a person who vanished this frame was heading.
        for a in bound:
            if a in done:
                continue
            ha = self.memory.tracks[a]
            ma = self.motion(a)
            stale = a not in preds and len(ma.t) >= 2 and ma.t[-1] - ma.t[-2] > STALE_GAP_S
            if a in preds:
                jump = math.dist(ha.last_xy, preds[a][:2])
                if jump < SWAP_JUMP_M:
                    continue
                limit = SWAP_RATIO_JUMP * jump
            elif stale:
                # where its own person may be after the gap: as far as they walked, or might have
                wander = max(math.dist(ma.last_xy, (ma.x[-2], ma.y[-2])), WANDER_M_S * (ma.t[-1] - ma.t[-2]))
                limit = min(STALE_MATCH_M, STALE_RATIO * wander)
            else:
                continue
            best: tuple[float, str] | None = None
            for b in others:
                if b in done or self.owner.get(b) == self.owner[a]:
                    continue
                guess = _predict(self.motion(b), at=ha.last_t)
                if guess is None:
                    continue
                d = math.dist(ha.last_xy, guess[:2])
                if d < limit and (best is None or d < best[0]):
                    best = (d, b)
            if best is not None:
                self._swap(a, best[1], move_b=False)
                done.update((a, best[1]))
        self._follow_encounters(bound, done)
        self._repair_by_stature(bound, done)

    def _recent_height(self, tid: str) -> float:
        """The median height measured on this track in the last STATURE_RECENT_S, NaN if too few."""
        recent = [h for t, h in self._heights.get(tid, ()) if t >= self._frame_t - STATURE_RECENT_S]
        if len(recent) < STATURE_RECENT_N:
            return math.nan
        return float(sorted(recent)[len(recent) // 2])

    def _repair_by_stature(self, bound: list[str], done: set[str]) -> None:
        """Ids the tracker traded unnoticed: two shoppers of different heights each now measure as
        tall as the other was when they came in, and they passed close to each other lately. Each
        id then continues the other person (the cameras' heights: `TrackPoint.stature`)."""
        now = [(tid, self._recent_height(tid)) for tid in bound if tid not in done]
        now = [(tid, h) for tid, h in now if math.isfinite(h)]
        for (a, ha), (b, hb) in itertools.combinations(now, 2):
            if a in done or b in done or self.owner[a][0] == self.owner[b][0]:
                continue
            pa, pb = self._person_of(a), self._person_of(b)
            if pa is None or pb is None:
                continue
            sa, sb = pa.stature, pb.stature
            if not abs(sa - sb) >= STATURE_APART_M:
                continue  # (NaN: not learned yet)
            if abs(ha - sb) > STATURE_MATCH_M or abs(hb - sa) > STATURE_MATCH_M:
                continue
            if not self._met_lately(a, b):
                continue
            self._swap(a, b)
            done.update((a, b))
            logger.debug("repaired an id swap by the shoppers' heights")

    def _person_of(self, tid: str) -> Person | None:
        nonce, person = self.owner[tid]
        visit = self.visits.get(nonce)
        return visit.people[person] if visit is not None else None

    def _met_lately(self, a: str, b: str) -> bool:
        """Whether tracks a and b were within SWAP_NEAR_M of each other in the last STATURE_RECENT_S
        and a second more (when the ids may have been traded)."""
        ha, hb = self.memory.tracks.get(a), self.memory.tracks.get(b)
        if ha is None or hb is None:
            return False
        ta, xya, _ = ha.window(self._frame_t - STATURE_RECENT_S - 1.0, self._frame_t)
        for t, (x, y) in zip(ta, xya):
            other = hb.position_at(float(t))
            if other is not None and math.dist((float(x), float(y)), other) <= SWAP_NEAR_M:
                return True
        return False

    def _missed_this_frame(self) -> list[str]:
        """People recently seen but not in this frame under any of their tracks, each as the newest
        of their tracks (an older one may be an id handed on since), including people bound to no
        pass yet (waiting at the entry). A newest track whose tracker id has been handed on (the
        person's next id is not known yet) does not count."""
        seen_now = {self.owner[tid] for tid in self._frame if tid in self.owner}
        missed = []
        for nonce, visit in self.visits.items():
            for i, person in enumerate(visit.people):
                last = self.last_seen(person)
                if (person.left is None and (nonce, i) not in seen_now and last is not None
                        and last.track not in self._handed_on and self._frame_t - last.last_t <= MISSED_WITHIN_S):
                    missed.append(last.track)
        missed += [tid for tid, h in self.unbound.items() if tid not in self._frame and tid in self.memory.tracks
                   and h.t and self._frame_t - h.last_t <= MISSED_WITHIN_S]
        return missed

    def _repair_rotations(self, tracks: list[str], preds: dict[str, tuple[float, float, float, float]],
                          missed: list[str]) -> set[str]:
        """Three or more people close together (leaning in at one shelf, queueing at the gate): in
        one frame the tracker can pass their ids round, each to the next, which no trade between
        two explains. Each group of tracks predicted close together is checked for the way of
        giving the frame's points to its people that fits their motion best; when that is a
        round of three or more and fits much better than the ids as given, the ids are handed
        round. One of the people in the round may have been missed in this frame (`missed`):
        their id has gone to the next person, who will show up with it; they get the id whose
        point landed on them. Returns the tracks handed over."""
        near = [t for t in tracks if t in preds]
        absent: dict[str, tuple[float, float]] = {}
        for m in missed:
            guess = _predict(self.motion(m), at=self._frame_t) if m in self.memory.tracks else None
            if guess is not None:
                absent[m] = guess[:2]
        done: set[str] = set()
        placed: set[str] = set()
        for start in near:
            if start in placed:
                continue
            group = [start]
            placed.add(start)
            k = 0
            while k < len(group):
                here = preds[group[k]][:2]
                k += 1
                for t in near:
                    if t not in placed and math.dist(here, preds[t][:2]) <= SWAP_NEAR_M:
                        placed.add(t)
                        group.append(t)
            if len(group) < 2:
                continue
            seen = [self.memory.tracks[t].last_xy for t in group]
            options: list[tuple[float, int, list[str], tuple[int, ...]]] = []
            # (only among shoppers: someone bound to no pass may be a reflection, gone for good)
            around = [] if any(t not in self.owner for t in group) else [
                m for m in absent if m not in done and m in self.owner
                and any(math.dist(absent[m], preds[t][:2]) <= SWAP_NEAR_M for t in group)]
            extras: list[list[str]] = [[], *([m] for m in around)]
            for extra in extras:
                members = group + extra
                if not 3 <= len(members) <= ROTATION_MAX:
                    continue
                where = [preds[t][:2] for t in group] + [absent[m] for m in extra]

                def cost(order: tuple[int, ...], seen: list[tuple[float, float]] = seen,
                         where: list[tuple[float, float]] = where) -> float:
                    # only the frame's points count: a missed person has none
                    return sum(math.dist(seen[i], where[order[i]]) ** 2 for i in range(len(seen)))

                keep = cost(tuple(range(len(members))))

                def fewest_moved(order: tuple[int, ...], cost: Callable[[tuple[int, ...]], float] = cost
                                 ) -> tuple[float, int]:
                    return cost(order), sum(i != j for i, j in enumerate(order))

                best = min(itertools.permutations(range(len(members))), key=fewest_moved)
                moved = [i for i, j in enumerate(best) if i != j]
                if len(moved) < 3 or len({self.owner.get(members[i]) for i in moved}) < 2:
                    continue  # a trade between two is the pairwise check's (or the jump rule's)
                fit = cost(best)
                if keep > SWAP_MIN_COST_M2 and fit < SWAP_RATIO * keep:
                    options.append((fit, len(extra), members, best))
            if options:
                _cost, _n, members, best = min(options, key=lambda o: (o[0], o[1]))
                moved = [i for i, j in enumerate(best) if i != j]
                self._hand_over({members[i]: members[best[i]] for i in moved},
                                frozenset(members[len(group):]))
                done.update(members)
                logger.debug("repaired ids passed round %s shoppers", len(moved))
        return done

    def _follow_encounters(self, bound: list[str], done: set[str]) -> None:
        """Two people walking past each other so closely that no jump shows: when they part, each
        should carry on the way they were going; if each id now carries on the other's way, the
        tracker gave them each other's ids while they were together."""
        now = self._frame_t
        # (a track whose only point a repair just moved to its new id has none left)
        bound = [tid for tid in bound if tid not in done and tid in self.memory.tracks]
        for a in bound:
            for b in bound:
                if a >= b or self.owner[a] == self.owner[b] or (a, b) in self._encounters:
                    continue
                ha, hb = self.memory.tracks[a], self.memory.tracks[b]
                if math.dist(ha.last_xy, hb.last_xy) < ENCOUNTER_OPEN_M:
                    va, vb = _velocity(ha, now - 0.2), _velocity(hb, now - 0.2)
                    if va is not None and vb is not None:
                        self._encounters[(a, b)] = (now, ha.last_xy, va, hb.last_xy, vb)
        for (a, b), (t0, pa, va, pb, vb) in list(self._encounters.items()):
            track_a, track_b = self.memory.tracks.get(a), self.memory.tracks.get(b)
            if track_a is None or track_b is None or a not in self.owner or b not in self.owner or a in done \
                    or b in done:
                del self._encounters[(a, b)]
                continue
            ha, hb = track_a, track_b
            apart = math.dist(ha.last_xy, hb.last_xy) > ENCOUNTER_CLOSE_M
            if not apart and now - t0 < ENCOUNTER_MAX_S:
                continue
            del self._encounters[(a, b)]
            walking = math.hypot(*va) > ENCOUNTER_WALK_M_S and math.hypot(*vb) > ENCOUNTER_WALK_M_S
            if not apart or not walking or ha.last_t < now - 0.3 or hb.last_t < now - 0.3:
                continue
            dt = now - t0
            ea = (pa[0] + va[0] * dt, pa[1] + va[1] * dt)
            eb = (pb[0] + vb[0] * dt, pb[1] + vb[1] * dt)
            keep = math.dist(ha.last_xy, ea) ** 2 + math.dist(hb.last_xy, eb) ** 2
            swap = math.dist(ha.last_xy, eb) ** 2 + math.dist(hb.last_xy, ea) ** 2
            if keep > ENCOUNTER_MIN_COST_M2 and swap < ENCOUNTER_RATIO * keep:
                self._swap(a, b)
                done.update((a, b))

    def _swap(self, a: str, b: str, move_b: bool = True) -> None:
        """From its newest point on, the tracker id behind `a` continues b's person and vice versa
        (`move_b` False: b's newest point is from before the swap and stays where it is)."""
        self._hand_over({a: b, b: a}, frozenset() if move_b else frozenset((b,)))

    def _hand_over(self, to: dict[str, str], unmoved: frozenset[str] = frozenset()) -> None:
        """From its newest point on, the tracker id behind each track `src` continues the person of
        track `to[src]` (`to` maps its tracks onto themselves); the newest points of `unmoved`
        tracks are from before the hand-over and stay where they are."""
        ext = {v: k for k, v in self.alias.items()}
        self.swaps += 1
        self._handed_on.update(to)
        owners = {src: self.owner.get(dst) for src, dst in to.items()}
        moved: dict[str, TrackPoint | None] = {}
        for tid in to:
            h = self.memory.tracks[tid]
            if tid in unmoved:
                moved[tid] = None
                continue
            hand = h.hand.pop()
            moved[tid] = TrackPoint(h.t.pop(), tid, h.x.pop(), h.y.pop(),
                                    None if math.isnan(hand[0]) else hand)
            if not h.t:
                del self.memory.tracks[tid]  # its only point was the other person's
        for src, dst_owner in owners.items():
            ext_id = ext.get(src, src)
            self._serial += 1
            new = f"{ext_id}~{self._serial}"
            q = moved[src]
            self.unbound.pop(src, None)
            if q is not None:
                h_new = self.memory.add(TrackPoint(q.t, new, q.x, q.y, q.hand))
                if dst_owner is None:
                    self.unbound[new] = h_new  # continues someone bound to no pass
            self.alias[ext_id] = new
            if dst_owner is not None:
                nonce, person = dst_owner
                self.owner[new] = dst_owner
                if nonce in self.visits:
                    self.visits[nonce].people[person].tracks.append(new)
            if q is not None:
                self._frame.append(new)
        logger.debug("repaired an id swap between two shoppers' tracks")

    def _entered_at(self, h: TrackHistory) -> float | None:
        """When this track crossed the entry line inward with its newest step (or, for a track first
        seen just inside the entry, when it appeared); None if it did not."""
        if len(h.t) >= 2:
            step = crosses((h.x[-2], h.y[-2]), (h.x[-1], h.y[-1]), self._entry)
            return h.t[-1] if step == self._inside_entry else None
        return h.first_t if self._near_entry(h.first_xy, inside=True) else None

    def _near_entry(self, xy: tuple[float, float], inside: bool) -> bool:
        """Whether `xy` is within ENTRY_RADIUS_M of the entry line, on its inner (or outer) side."""
        return ((self._side(self._entry, xy) == self._inside_entry) == inside
                and segment_distance(xy, self._entry) <= ENTRY_RADIUS_M)

    def _waiting_outside(self, h: TrackHistory) -> bool:
        """Whether another track not yet bound to anyone is standing just outside the entry now."""
        for tid, other in self.unbound.items():
            if tid == h.track or not other.t or h.first_t - other.last_t > WAITING_SEEN_S:
                continue
            if self._near_entry(other.last_xy, inside=False):
                return True
        return False

    def _doubt_stitch(self, h: TrackHistory, visit: Visit, person: int) -> None:
        """New track `h`, found inside, was taken for a shopper the tracker had lost. If someone who
        had just shown a pass at the entry vanished outside it meanwhile and could have walked
        here, `h` may as well be that newcomer crossing unseen: which of the two it is, the floor
        cannot tell, so the person is marked as possibly of the newcomer's visit too (their picks
        go to review rather than to a guess)."""
        vanished = [u.last_t for tid, u in self.unbound.items() if tid != h.track and u.t
                    and self._near_entry(u.last_xy, inside=False) and self._continuation(u, h) is not None]
        if not vanished:
            return
        for other in self._awaiting(h.first_t):
            if other is visit or other.entered > h.first_t:
                continue
            if max(vanished) < other.entered - EARLY_CROSSING_S:
                continue  # whoever vanished there left before this pass was shown
            who = visit.people[person]
            if other.nonce not in who.also:
                who.also = (*who.also, other.nonce)
                logger.info("a shopper found again may instead be a newcomer missed at the entry")
            return

    def _place(self, h: TrackHistory) -> None:
        """Bind an unbound track: the next people across the entry belong to the pass just accepted
        (`_served`); a track that starts anywhere else continues someone the tracker lost."""
        fresh = len(h.t) == 1
        crossed = self._entered_at(h)
        outside = self._near_entry(h.first_xy, inside=False)
        if fresh and outside:
            self.unbound[h.track] = h  # someone arriving at the gate, not anyone lost inside
        elif fresh and not outside and crossed is None and self._adopt(h):
            return
        elif fresh:
            scored = self._lost_person_scored(h)
            # A track appearing just inside the entry is a newcomer for a pass still waiting for
            # people, unless someone is still standing outside the entry (then the pass's next
            # person is still to come), or it continues someone lost right here better than anyone
            # lost outside the entry (a newcomer the tracker missed crossing): then it is someone
            # lost here found again.
            newcomer = crossed is not None and bool(self._awaiting(crossed)) and not self._waiting_outside(h)
            if newcomer and scored is not None:
                outside_score = self._lost_outside(h)
                newcomer = outside_score is not None and outside_score <= scored[0]
            if scored is not None and not newcomer:
                last = self.last_seen(scored[1].people[scored[2]])
                if last is not None and h.first_t - last.last_t < STITCH_SURE_S:
                    # lost for a frame or two: may be a missed frame of someone still here
                    self.unbound[h.track] = h
                    self._postponed = {k: v for k, v in self._postponed.items()
                                       if k in self.unbound and k in self.memory.tracks}
                    self._postponed[h.track] = crossed
                    return
                self._bind(h.track, scored[1], scored[2])
                self._doubt_stitch(h, scored[1], scored[2])
                return
            self.unbound[h.track] = h
        if h.track not in self.unbound:
            return
        if h.track in self._postponed:
            if h.last_t - h.first_t < STITCH_SURE_S:
                return
            # Whoever the tracker had lost and is still not seen since this track began is who
            # it continues; if they came back, this is someone else.
            crossed = self._postponed.pop(h.track)
            lost = self._lost_person(h)
            if lost is not None:
                self._bind(h.track, lost[0], lost[1])
                self._doubt_stitch(h, lost[0], lost[1])
                return
        if crossed is not None:
            self.crossed[h.track] = crossed
            awaiting = self._awaiting(crossed)
            if awaiting:
                self._bind(h.track, self._served(awaiting, h, crossed))
                return
        if not fresh and not outside and h.last_t - h.first_t < 2.0 and h.track not in self.crossed:
            lost = self._lost_person(h)
            if lost is not None:
                self._bind(h.track, lost[0], lost[1])

    # --- exits ------------------------------------------------------------------------------------

    def exit(self, event: GateEvent) -> Visit | None:
        """The exit gate registered someone leaving: the named track, else the nearest member there."""
        named = self.alias.get(event.track, event.track)
        if event.track and named in self.owner and self.owner[named][0] in self.visits:
            nonce, person = self.owner[named]
            if self.visits[nonce].people[person].left is None:
                return self._leave(self.visits[nonce], person, event.t)
        seen = [c for c in self._crossings if abs(c[0] - event.t) <= EXIT_MATCH_S and c[1][0] in self.visits
                and self.visits[c[1][0]].people[c[1][1]].left is None]
        if seen:
            self._crossings.remove(seen[0])
            return self._leave(self.visits[seen[0][1][0]], seen[0][1][1], event.t)
        self._pending_exits.append(event.t)
        return None

    def _nearest_leaves(self, t: float) -> Visit | None:
        """Fallback for an exit nobody was seen crossing: the member nearest the exit then."""
        event = GateEvent(t, "exit")
        best: tuple[float, Visit, int] | None = None
        for visit in self.visits.values():
            if visit.left is not None:
                continue
            for i, member in enumerate(visit.people):
                if member.left is not None:
                    continue
                h = self.last_seen(member)
                if h is None:
                    continue
                if h.last_t > event.t + STILL_SEEN_S and segment_distance(h.last_xy, self._exit) > STILL_SEEN_M:
                    continue  # still walking about the shop well after that exit: not the one who left
                pos = h.position_at(event.t) if h.last_t >= event.t - 3.0 else None
                if pos is None:
                    pos = h.last_xy
                    dist = segment_distance(pos, self._exit) + 0.2 * max(0.0, event.t - h.last_t)
                else:
                    dist = segment_distance(pos, self._exit)
                # Someone who has just come in is not who is leaving (entry and exit lanes are side by side).
                first = self.memory.tracks.get(member.tracks[0])
                if first is not None and event.t - first.first_t < JUST_ARRIVED_S:
                    dist += JUST_ARRIVED_PENALTY_M
                if dist <= EXIT_RADIUS_M + 0.2 * max(0.0, event.t - h.last_t) and (best is None or dist < best[0]):
                    best = (dist, visit, i)
        if best is None:
            logger.warning("exit at the gate matched no shopper near the exit")
            return None
        return self._leave(best[1], best[2], event.t)

    def _leave(self, visit: Visit, person: int, t: float) -> Visit | None:
        p = visit.people[person]
        if p.left is not None:
            return None
        p.left = t
        if self._nobody_to_come(visit, t):
            visit.left = t
            return visit
        return None

    def _nobody_to_come(self, visit: Visit, now: float) -> bool:
        """Whether everyone of the visit has left and nobody more can join it: its party is
        complete, or the bind window is over."""
        return bool(visit.people) and all(q.left is not None for q in visit.people) and (
            visit.open_slots <= 0 or now - visit.entered > self.bind_window_s)

    def leaving(self) -> list[Visit]:
        """Visits whose people have all left, removed from the open book. The pass's claims (its
        payment token) are dropped here: the vault holds what the charge needs."""
        done = [v for v in self.visits.values() if v.left is not None]
        for v in done:
            del self.visits[v.nonce]
            v.claims = None
            self.closed.append(v)
        return done

    def forget(self, now: float) -> None:
        """Forget what is older than the floor's memory: visits closed before then with the track
        ids that were theirs, and tracks bound to nobody not seen since. Positions, track ids and
        pass nonces stay in memory for minutes at most (policy: frames_and_tracks, entry_passes)."""
        cutoff = now - self.memory.keep_s
        gone = {v.nonce for v in self.closed if v.left is not None and v.left < cutoff}
        if gone:
            self.closed = [v for v in self.closed if v.nonce not in gone]
            dead = {tid for tid, (nonce, _person) in self.owner.items() if nonce in gone}
            for tid in dead:
                del self.owner[tid]
            self.alias = {ext: tid for ext, tid in self.alias.items() if tid not in dead}
            self._handed_on -= dead
        self.unbound = {tid: h for tid, h in self.unbound.items() if h.t and h.last_t >= cutoff}
        self.crossed = {tid: t for tid, t in self.crossed.items() if t >= cutoff}
        self._heights = {tid: hs for tid, hs in self._heights.items() if hs and hs[-1][0] >= cutoff}
        self._postponed = {tid: c for tid, c in self._postponed.items() if tid in self.unbound}

    def close_all(self, t: float) -> list[Visit]:
        """End of the recording (or shutdown): everyone still inside is taken to have left at t."""
        for e in list(self._pending_exits):
            self._pending_exits.remove(e)
            self._nearest_leaves(e)
        for v in self.visits.values():
            if v.left is None:
                v.left = t
        return self.leaving()

    def visit_of(self, track: str) -> Visit | None:
        owned = self.owner.get(track)
        if owned is None:
            return None
        return self.visits.get(owned[0])

    def open_visits(self) -> Iterable[Visit]:
        return self.visits.values()
