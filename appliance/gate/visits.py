"""Visits: binding the people who come through the gate to the pass that opened it, until they leave.

A pass opens the gate for up to `party` people. Tracks that start at the entry (or are named by
the gate) become the visit's people; a track that starts anywhere else is a tracker losing and
finding someone again, so it is stitched to the person most recently lost nearby rather than
treated as a newcomer. A person leaves when the exit gate registers them (the nearest member at
the exit) or, when the gate reports no exits, when their track crosses the exit line outward; a
visit ends when all its people have left.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
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
WALK_SPEED_M_S = 1.5


@dataclass(slots=True)
class Person:
    """One person of a visit, followed through however many track ids the tracker gives them."""

    tracks: list[str]
    left: float | None = None


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
            self._bind(event.track, visit)
        waiting = sorted(
            (h for h in self.unbound.values() if h.last_t >= event.t - 3.0
             and segment_distance(h.last_xy, self._entry) <= ENTRY_RADIUS_M),
            key=lambda h: (segment_distance(h.last_xy, self._entry), h.first_t),
        )
        for h in waiting:
            if visit.open_slots <= 0:
                break
            self._bind(h.track, visit)
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
                       and t - self.bind_window_s <= v.entered <= t + 3.0), key=lambda v: v.entered)

    def _lost_person(self, h: TrackHistory) -> tuple[Visit, int] | None:
        """The person most plausibly continued by new track `h`: lost recently, close by."""
        best: tuple[float, Visit, int] | None = None
        for visit in self.visits.values():
            if visit.left is not None:
                continue
            for i, person in enumerate(visit.people):
                if person.left is not None:
                    continue
                last = self.memory.tracks.get(person.tracks[-1])
                if last is None:
                    continue
                gap = h.first_t - last.last_t
                if not LOST_AFTER_S <= gap <= STITCH_WINDOW_S:
                    continue  # still tracked (a different person), or lost too long ago
                dist = math.dist(last.last_xy, h.first_xy)
                if dist > STITCH_BASE_M + WALK_SPEED_M_S * max(gap, 0.0):
                    continue
                score = dist + 0.3 * max(gap, 0.0)
                if best is None or score < best[0]:
                    best = (score, visit, i)
        return (best[1], best[2]) if best else None

    def track(self, p: TrackPoint) -> None:
        """A track point (already added to memory): bind new tracks, notice people leaving."""
        h = self.memory.tracks[p.track]
        owned = self.owner.get(p.track)
        if owned is None:
            self._place(h)
            owned = self.owner.get(p.track)
            if owned is None:
                return
        if not self.exits_from_gate and len(h.t) >= 2:
            step = crosses((h.x[-2], h.y[-2]), (h.x[-1], h.y[-1]), self._exit)
            if step != 0 and step != self._inside_exit:
                self._leave(self.visits[owned[0]], owned[1], p.t)

    def _place(self, h: TrackHistory) -> None:
        near_entry = segment_distance(h.first_xy, self._entry) <= ENTRY_RADIUS_M
        fresh = len(h.t) == 1
        if fresh:
            lost = self._lost_person(h)
            awaiting = self._awaiting(h.first_t) if near_entry else []
            if lost is not None and not awaiting:
                self._bind(h.track, lost[0], lost[1])
                return
            if awaiting:
                self._bind(h.track, awaiting[0])
                return
            self.unbound[h.track] = h
            return
        if h.track not in self.unbound:
            return
        if segment_distance(h.last_xy, self._entry) <= ENTRY_RADIUS_M:
            awaiting = self._awaiting(h.last_t)
            if awaiting:
                self._bind(h.track, awaiting[0])
                return
        if h.last_t - h.first_t < 2.0:
            lost = self._lost_person(h)
            if lost is not None:
                self._bind(h.track, lost[0], lost[1])

    # --- exits ------------------------------------------------------------------------------------

    def exit(self, event: GateEvent) -> Visit | None:
        """The exit gate registered someone leaving: the named track, else the nearest member there."""
        if event.track and event.track in self.owner:
            nonce, person = self.owner[event.track]
            return self._leave(self.visits[nonce], person, event.t)
        best: tuple[float, Visit, int] | None = None
        for visit in self.visits.values():
            if visit.left is not None:
                continue
            for i, member in enumerate(visit.people):
                if member.left is not None:
                    continue
                h = self.memory.tracks.get(member.tracks[-1])
                if h is None:
                    continue
                pos = h.position_at(event.t) if h.last_t >= event.t - 3.0 else None
                if pos is None:
                    pos = h.last_xy
                    dist = segment_distance(pos, self._exit) + 0.2 * max(0.0, event.t - h.last_t)
                else:
                    dist = segment_distance(pos, self._exit)
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
        if all(q.left is not None for q in visit.people) and (
            visit.open_slots <= 0 or t - visit.entered > self.bind_window_s
        ):
            visit.left = t
            return visit
        return None

    def leaving(self) -> list[Visit]:
        """Visits whose people have all left, removed from the open book."""
        done = [v for v in self.visits.values() if v.left is not None]
        for v in done:
            del self.visits[v.nonce]
            self.closed.append(v)
        return done

    def close_all(self, t: float) -> list[Visit]:
        """End of the recording (or shutdown): everyone still inside is taken to have left at t."""
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
