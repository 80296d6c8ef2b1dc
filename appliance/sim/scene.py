"""The cast of one simulated stretch of time: visits with their passes, the people, and their meetings.

A scenario writes its story against a `Scene`: it opens visits at the gate (a pass scanned, one
to four people walking in), directs each person, and brings people together to hand things
over. The scene keeps the visits and people the renderers need afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.gate.passes import b64url_encode, issue_pass
from appliance.sim.floorplan import FloorPlan
from appliance.sim.shop import ISSUER, Point, Rect, Shop, issuer_key
from appliance.sim.shoppers import Shopper

_CARD_BRANDS = ("visa", "mastercard", "amex", "bccard", "kbcard", "shinhan")


@dataclass(slots=True)
class Visit:
    """One accepted pass and the people who walked in on it."""

    nonce: str
    pass_text: str
    party: int
    scan_t: float
    members: list[Shopper] = field(default_factory=list)


@dataclass(slots=True)
class Scene:
    """Visits, people and the gate log of one simulation, with the random stream that drives them.

    `start` is when the recording begins (sensors already running); `params` carries the
    scenario's tunable numbers (e.g. `shoppers`, `duration_s`) after overrides.
    """

    shop: Shop
    seed: int
    start: float
    params: dict[str, Any]
    rng: np.random.Generator = field(init=False)
    plan: FloorPlan = field(init=False)
    visits: list[Visit] = field(default_factory=list)
    people: list[Shopper] = field(default_factory=list)
    _seq: np.random.SeedSequence = field(init=False)
    _gate_busy: list[tuple[float, float]] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._seq = np.random.SeedSequence([self.seed, 0x5CE2E])
        self.rng = np.random.default_rng(self._seq.spawn(1)[0])
        w, h = self.shop.size
        self.plan = FloorPlan(self.shop.obstacles, Rect(0.25, 0.85, w - 0.25, h - 0.25))

    def _person_rng(self) -> np.random.Generator:
        return np.random.default_rng(self._seq.spawn(1)[0])

    def visit(self, at: float, party: int = 1) -> list[Shopper]:
        """A pass for `party` people is scanned at the gate at `at`; they walk in within seconds.

        The pass is signed by the simulated payment app (issuer `sim-pay`), issued a little before
        the scan (the shopper opened the app on the way), valid for five minutes, with a random
        nonce. Members appear in the vestibule shortly before the scan and cross the entry line
        one after another, the first 0.6-1.8 s after the scan. Like a real gate, it serves one party
        at a time: while another party is between its scan and its last member through, this one
        waits and scans right after, so the next people across the line belong to the pass just
        accepted (spec/recording.md).
        """
        if not 1 <= party <= 4:
            raise ValueError(f"party must be 1-4, got {party}")
        first = float(self.rng.uniform(0.6, 1.8))
        gaps = [float(self.rng.uniform(0.6, 1.6)) for _ in range(party - 1)]
        busy_for = first + sum(gaps) + 0.5
        moved = True
        while moved:
            moved = False
            for t0, t1 in self._gate_busy:
                if at < t1 and t0 < at + busy_for:
                    at = t1 + float(self.rng.uniform(0.3, 0.8))
                    moved = True
        self._gate_busy.append((at, at + busy_for))
        nonce = b64url_encode(self.rng.bytes(16))
        iat = math.floor(at - float(self.rng.uniform(5.0, 120.0)))
        tok = f"cus_{self.rng.bytes(7).hex()}/pm_card_{_CARD_BRANDS[int(self.rng.integers(len(_CARD_BRANDS)))]}"
        payload = {"iss": ISSUER, "tok": tok, "iat": iat, "exp": iat + 300, "nonce": nonce, "party": party}
        visit = Visit(nonce, issue_pass(issuer_key(self.shop.seed), payload), party, at)
        (x0, y_line), (x1, _) = self.shop.entry
        cross = at + first
        for k in range(party):
            rng = self._person_rng()
            speed = float(rng.uniform(0.75, 1.35))
            x = float(rng.uniform(x0 + 0.2, x1 - 0.2))
            y = float(rng.uniform(0.08, 0.3))
            walk_start = cross - (y_line - y) / speed
            appear = min(at - float(rng.uniform(1.0, 3.5)), walk_start - 0.4)
            person = Shopper(self.shop, self.plan, rng, f"p{len(self.people) + 1}", nonce, appear, (x, y),
                             height_m=float(rng.uniform(1.5, 1.92)), speed=speed,
                             away=float(rng.uniform(0.35, 0.65)), others=self.people)
            person.wait_until(walk_start)
            person.walk_straight((x, y_line + 0.45))
            t_in = person.t
            person.entry_t = walk_start + (t_in - walk_start) * (y_line - y) / (y_line + 0.45 - y)
            visit.members.append(person)
            self.people.append(person)
            if k < party - 1:
                cross += gaps[k]
        self.visits.append(visit)
        return list(visit.members)

    def meet(self, a: Shopper, b: Shopper) -> None:
        """`a` walks over to stand beside `b`; whoever arrives first waits for the other."""
        bx, by = b.pos
        ax, ay = a.pos
        d = math.dist((ax, ay), (bx, by)) or 1.0
        spots: list[Point] = [(bx + 0.45 * (ax - bx) / d, by + 0.45 * (ay - by) / d)]
        spots += [(bx + dx, by + dy) for dx, dy in ((0.45, 0), (-0.45, 0), (0, 0.45), (0, -0.45))]
        spot = next((p for p in spots if self.plan.clear(b.pos, p) and self.plan.walkable(p)), b.pos)
        a.walk_to(spot)
        both = max(a.t, b.t)
        a.wait_until(both)
        b.wait_until(both)

    @property
    def end(self) -> float:
        """When the last person is gone."""
        return max([p.t for p in self.people], default=self.start)
