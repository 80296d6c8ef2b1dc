"""The shop floor: one loop from readings, tracks and gate events to carts and receipts.

Live operation, replay and the demo all drive this same object; only the sources differ. Inputs
arrive in time order (`samples`, `track`, `gate`), and `advance(now)` makes the decisions whose
time has come: a shelf event is decided `resolve_lag_s` after it settles (so the tracks around it
have arrived), and a visit is closed once its people have left and every shelf event that began
before they left is decided. Time comes only from the data.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

import numpy as np

from appliance.config import Sensor, StoreConfig
from appliance.events import (
    CartChange,
    Evidence,
    GateEvent,
    PlateChange,
    Receipt,
    ReviewItem,
    SampleBlock,
    ShelfEvent,
    TrackPoint,
)
from appliance.fusion.assign import (
    HAND_LATE_S,
    HAND_LATE_START_S,
    NOBODY_SCORE,
    Reach,
    assign_jointly,
    body_scores,
    closer_hands,
    hand_scores,
    plate_shares,
    reach_evidence,
    weigh,
)
from appliance.fusion.carts import Cart, receipt_for
from appliance.gate.floor import FloorMemory
from appliance.gate.passes import PassClaims
from appliance.gate.visits import Visit, VisitBook
from appliance.shelves.inventory import Inventory, LowStock
from appliance.shelves.products import (
    RELATIVE_ERROR,
    Candidate,
    Hypothesis,
    Item,
    Planogram,
    explain,
    measurement_sd,
    place_log_likelihoods,
)
from appliance.shelves.steps import StepDetector, stock_partners

logger = logging.getLogger(__name__)

LOOKBACK_S = 1.5
LOOKAHEAD_S = 0.5
HAND_SEEN = 0.05  # a hand scoring more than this over a plate makes its person a candidate
HAND_AT_PLATE = 0.5  # a hand scoring this is in the plate's space, not on its way there
DURING_BEFORE_S = 0.3  # a hand may be on a plate this long before its weight starts to change
DURING_AFTER_S = 0.2  # and still be there this long after it settled
LOG_SPLIT = math.log(0.3)
ACT_START_SD_S = 0.15  # how far apart the plates one act moves begin to change
SHARP_START_S = 2.0  # a plate changing for longer than this has no sharp start
LOG_APART = math.log(0.01)  # the most that timing counts against one act
MAX_SPLIT_PLATES = 6  # beyond this many changed plates an event splits whole or into single plates
CLOSE_MIN_S = 0.25
CLOSE_MAX_WAIT_S = 30.0
OVERLAP_MARGIN_S = 0.5
CLUSTER_RADIUS_M = 3.0
MAX_HOLD_S = 10.0
REFUND_WINDOW_S = 30 * 60.0
FOREIGN_SPREAD = 0.04
FOREIGN_WEIGHED_SPREAD = 0.005  # a plate's gain error: about half a percent
LOOSE_RETURN_SLACK_G = 5.0  # with the plates' error, a return of loose goods may weigh a little more than
LOOSE_RETURN_SLACK = 0.01  # the scoop did: about a gram of noise and half a percent of gain each time
REACH_S = 0.5  # a hand needs about this long to get to a shelf and back: no one does two at once
HAND_OVER_M = 0.7  # two people handing a thing over stand about a forearm apart: closer than passers-by
SAME_MOMENT_S = 0.3  # two tracks' points this close in time count as one moment
UNDO_S = 10.0  # a take of a put-down's weight from its plates this soon after, by its shopper, undoes it
WHO_TOOK_IT = "who took it?"
WHICH_PRODUCT = "which product?"
NO_PRODUCT = "weight change matches no product here"
PLATE_SILENT = "a plate beside it is not reporting"
TAKE_REVIEWS = frozenset({WHO_TOOK_IT, WHICH_PRODUCT, NO_PRODUCT, PLATE_SILENT})  # what `_taken` files


def same_bag(grams: float, bag: float) -> bool:
    """Whether a weight change is the same bag of loose goods weighed again (about a gram of noise and
    half a percent of gain each time)."""
    return abs(grams - bag) <= max(LOOSE_RETURN_SLACK_G, LOOSE_RETURN_SLACK * bag)


@dataclass(frozen=True, slots=True)
class RestockAlert:
    """An item put back where it does not belong: staff should move it."""

    t: float
    sensor: str
    sku: str
    qty: int


@dataclass(frozen=True, slots=True)
class ForeignItem:
    """Something resting on the shelf that is not stock, as it weighed."""

    grams: float
    sd: float  # wide for a palm's push, narrow for a thing set down and weighed
    on: frozenset[str]  # the plates it rests on


@dataclass(slots=True)
class PlateExtras:
    """Things on a plate that are not its planned stock: misplaced products and foreign items."""

    misplaced: dict[str, int] = field(default_factory=dict)
    bags: dict[str, list[float]] = field(default_factory=dict)  # loose goods set down here, grams per bag
    foreign: list[ForeignItem] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SetDown:
    """A put-down that credited a cart and what it left on the shelf, remembered for `UNDO_S`: a hand
    that sets something down (or rests a palm) and lifts it again at once has changed nothing."""

    event: ShelfEvent
    visit: str
    changes: tuple[CartChange, ...]
    foreign: tuple[tuple[str, ForeignItem], ...]  # (plate, item) added
    misplaced: tuple[tuple[str, str, int], ...]  # (plate, sku, units) added
    bags: tuple[tuple[str, str, float], ...]  # (plate, sku, grams) added
    alerts: tuple[RestockAlert, ...]


@dataclass(slots=True)
class Decision:
    """What became of one shelf event, for the log of a replay and for tests."""

    event: ShelfEvent
    outcome: str
    visit: str = ""
    items: tuple[tuple[str, int, float], ...] = ()
    product_confidence: float = 0.0
    person_confidence: float = 0.0


class FloorListener(Protocol):
    """Told of every lasting decision as it is made, e.g. to store it in the vault."""

    def visit_opened(self, visit: Visit) -> None: ...
    def cart_changed(self, change: CartChange) -> None: ...
    def held_for_review(self, item: ReviewItem) -> None: ...
    def credited_after_exit(self, change: CartChange) -> None: ...

    def review_amended(self, item: ReviewItem, amended: ReviewItem | None) -> None:
        """Some units of `item` (the very object `held_for_review` was given) came back to a shelf
        while it waited: a person is to decide only on `amended` now, or on nothing when None."""
        ...


class ShopFloor:
    """Everything between the sources and the charge: step detection, visits, fusion and carts.

    Args:
        config: the store.
        exits_from_gate: whether the exit gate reports leavers (else exit-line crossings count).
        listener: told of every lasting decision (the live appliance's recorder).
        keep_log_s: how long the in-memory logs (`decisions`, `restock`, `low_stock`) are kept,
            and `refunded` no longer than its visit's refund window; None keeps all of them, as
            replay and the demo need. A live box, whose recorder stores what lasts, keeps minutes:
            the logs name visits by their pass nonce.
    """

    def __init__(self, config: StoreConfig, exits_from_gate: bool = True,
                 listener: FloorListener | None = None, keep_log_s: float | None = None) -> None:
        self.config = config
        self.listener = listener
        self.keep_log_s = keep_log_s
        self.planogram = Planogram(config)
        self.steps = StepDetector(config.sensors, config.shelves, stock_partners(config.sensors, config.stock))
        self.memory = FloorMemory()
        self.book = VisitBook(config, self.memory, config.gate.bind_window_s, exits_from_gate)
        self.sensors = {s.id: s for s in config.sensors}
        self.touching = {self.steps.ids[i]: [self.steps.ids[j] for j in nb] for i, nb in
                         enumerate(self.steps.neighbours)}
        self.carts: dict[str, Cart] = {}
        self.extras: dict[str, PlateExtras] = {}
        self.pending: list[ShelfEvent] = []
        self.closing: list[Visit] = []
        self.left_recently: dict[str, Visit] = {}
        self.restock: list[RestockAlert] = []
        self.closed_carts: dict[str, tuple[Cart, float, float]] = {}
        self.refunded: dict[str, Receipt] = {}
        self.inventory = Inventory(config)
        self.low_stock: list[LowStock] = []
        self.decisions: list[Decision] = []
        self.set_down: list[SetDown] = []
        self.now = -math.inf

    # --- inputs ------------------------------------------------------------------------------------

    def gate(self, event: GateEvent, claims: PassClaims | None = None) -> None:
        """An accepted entry (with its verified claims) or an exit."""
        self._advance_to(event.t)
        if event.kind == "entry":
            if claims is None:
                raise ValueError("an entry needs the verified pass claims")
            visit = self.book.entry(event, claims)
            self.carts[visit.nonce] = Cart(visit.nonce)
            if self.listener is not None:
                self.listener.visit_opened(visit)
        else:
            self.book.exit(event)
        self._collect_leavers()

    def track(self, point: TrackPoint) -> None:
        self._advance_to(point.t)
        self.book.track(point)
        self._collect_leavers()

    def samples(self, block: SampleBlock) -> None:
        if len(block):
            self._advance_to(float(block.t[-1]))
        self.pending.extend(self.steps.feed(block))

    def advance(self, now: float) -> list[Receipt]:
        """Decide what is due at `now` and return the receipts of visits that are complete."""
        self._advance_to(now)
        self.pending.extend(self.steps.advance(now))
        self.book.tick(now)
        self._collect_leavers()
        due = self._due(now)
        if due:
            self._decide_all(due)
        self.memory.prune(now)
        self.book.forget(now)
        receipts = self._finish_visits(now, final=False)
        cutoff = now - REFUND_WINDOW_S  # nothing older can come back to a shelf for a refund
        self.closed_carts = {v: c for v, c in self.closed_carts.items() if c[2] >= cutoff}
        # Put-downs remembered for undoing (`_taken_again`, which looks back UNDO_S) are forgotten
        # here, with a margin for a take decided late (held by a busy neighbour); otherwise they
        # would stay, naming a visit that may be long gone.
        if self.set_down and self.set_down[0].event.t_end < now - 3 * UNDO_S:
            self.set_down = [d for d in self.set_down if d.event.t_end >= now - 3 * UNDO_S]
        if self.keep_log_s is not None:
            self._trim_logs(now - self.keep_log_s)
        return receipts

    def _trim_logs(self, cutoff: float) -> None:
        """Drop log entries from before `cutoff`, and refunds whose refund window is over (see
        `keep_log_s`)."""
        if self.decisions and self.decisions[0].event.t_end < cutoff:
            self.decisions = [d for d in self.decisions if d.event.t_end >= cutoff]
        self.restock = [a for a in self.restock if a.t >= cutoff]
        self.low_stock = [a for a in self.low_stock if a.t >= cutoff]
        self.refunded = {v: r for v, r in self.refunded.items() if v in self.closed_carts}

    def finish(self, end: float) -> list[Receipt]:
        """End of input: settle and decide everything, close every visit."""
        self._advance_to(end)
        self.pending.extend(self.steps.flush())
        due, self.pending = self.pending, []
        self._decide_all(due)
        for visit in self.book.close_all(end):
            self.closing.append(visit)
        return self._finish_visits(end, final=True)

    def _advance_to(self, t: float) -> None:
        if t > self.now:
            self.now = t

    def _collect_leavers(self) -> None:
        for visit in self.book.leaving():
            self.closing.append(visit)

    # --- closing visits ---------------------------------------------------------------------------

    def _finish_visits(self, now: float, final: bool) -> list[Receipt]:
        out: list[Receipt] = []
        keep: list[Visit] = []
        undecided = self._undecided() if self.closing else []  # (each tick; only a leaver needs it)
        for visit in self.closing:
            left = visit.left if visit.left is not None else now
            ready = now >= left + CLOSE_MIN_S and not self._may_still_change(visit, left, undecided)
            if not ready:
                self._hurry_plates(visit, left)
            if final or ready or now >= left + CLOSE_MAX_WAIT_S:
                cart = self.carts.pop(visit.nonce, Cart(visit.nonce))
                self.closed_carts[visit.nonce] = (cart, visit.entered, left)
                out.append(receipt_for(cart, self.planogram.products, self.config.store.currency,
                                       visit.entered, left))
                self.left_recently.pop(visit.nonce, None)
            else:
                keep.append(visit)
                self.left_recently[visit.nonce] = visit
        self.closing = keep
        return out

    def _undecided(self) -> list[tuple[float, str]]:
        """Shelf changes not decided yet: (when they began, plate). A busy plate whose readings only
        scatter around its level (shaken by a hand on the gondola, or noisier than it has learnt so
        far) has no change under way yet: one that comes later is not of anybody who left before."""
        out = [(e.t_start, c.sensor) for e in self.pending for c in e.changes]
        out += [(b.since, self.steps.ids[s]) for s, b in self.steps._busy.items() if self.steps.moving(s)]
        out += [(st.t_start, self.steps.ids[st.sensor]) for st in self.steps._steps]
        out += [(st.t_start, self.steps.ids[st.sensor]) for st in self.steps.doubts]
        return out

    def _hurry_plates(self, visit: Visit, left: float) -> None:
        """A shopper who left waits for no more readings: on plates they could reach, small changes in
        doubt are weighed at once with what has come in, and settled changes are released without
        waiting for one of theirs that might follow."""
        held = [*self.steps.doubts, *self.steps._steps]
        mine = [self.steps.ids[d.sensor] for d in held if d.t_start <= left
                and self._could_reach(visit, self.sensors[self.steps.ids[d.sensor]], d.t_start, left)]
        if mine:
            self.steps.hurry(mine)

    def _may_still_change(self, visit: Visit, left: float, undecided: Sequence[tuple[float, str]]) -> bool:
        """Could a shelf change not yet decided still land in this cart? Only one that began before
        the shopper left, on a plate one of their people could reach while it was changing;
        anything else in the shop does not hold up their receipt (and the charge)."""
        return any(since <= left and self._could_reach(visit, self.sensors[sensor], since, left)
                   for since, sensor in undecided)

    # --- deciding shelf events --------------------------------------------------------------------

    def _reaches(self, event: ShelfEvent) -> list[Reach]:
        """Every person in the shop around the event, with how well they explain it (not yet weighed)."""
        plates = [self.sensors[c.sensor] for c in event.changes]
        shares = plate_shares([c.delta_g for c in event.changes])
        t0, t1 = event.t_start - LOOKBACK_S, event.t_end + LOOKAHEAD_S
        during = _during(event)
        out: list[Reach] = []
        seen: set[str] = set()
        for visit in self._visits_around(event.t_start):
            if visit.nonce in seen:
                continue
            seen.add(visit.nonce)
            for i, person in enumerate(visit.people):
                if person.left is not None and person.left < event.t_start - 1.0:
                    continue
                body, hand, point = 0.0, None, None
                for tid in person.tracks:
                    h = self.memory.tracks.get(tid)
                    if h is None:
                        continue
                    tt, xy, hands = h.window(t0, t1)
                    b, hs, hp = reach_evidence(tt, xy, hands, plates, shares, during, self.config.fusion)
                    body = max(body, b)
                    if hs is not None and (hand is None or hs > hand):
                        hand, point = hs, hp
                if body > 0 or (hand is not None and hand > HAND_SEEN):
                    # Bound without knowing to which of several visits: their share of each still
                    # in the shop (one that has left and been receipted took nothing now).
                    also = [other for other in person.also if other in self.carts]
                    if also:
                        share = 1.0 / (1 + len(also))
                        for k, other in enumerate((visit.nonce, *also)):
                            out.append(Reach(other, -1 - k if k else i, body * share, hand, point))
                    else:
                        out.append(Reach(visit.nonce, i, body, hand, point))
        return closer_hands(out, plates, shares, self.config.fusion.hand_sd_m)

    def _candidates(self, event: ShelfEvent) -> list[Reach]:
        """Candidates of one event on its own, best first with confidences."""
        return assign_jointly([weigh(self._reaches(event))], [[False]])[0]

    def _near(self, a: ShelfEvent, b: ShelfEvent, margin: float = OVERLAP_MARGIN_S) -> bool:
        """Same time and close enough that the same people could be involved in both."""
        if a.t_start > b.t_end + margin or b.t_start > a.t_end + margin:
            return False
        pa = self.sensors[a.changes[0].sensor].pos
        pb = self.sensors[b.changes[0].sensor].pos
        return math.dist(pa[:2], pb[:2]) <= CLUSTER_RADIUS_M

    def _due(self, now: float) -> list[ShelfEvent]:
        """Events to decide now: settled long enough, and not overlapping one still settling that
        one of the same shoppers could have made (those are decided together, people being in
        one place at a time); a put-down also waits for every earlier change of the same shoppers
        (what it credits depends on what their carts hold by then); an event nobody else near
        could share goes as soon as it settles. Nothing waits more than MAX_HOLD_S."""
        lag = self.config.fusion.resolve_lag_s
        ready = [e for e in self.pending if e.t_end + lag <= now]
        if not ready:
            return []
        waiting = [e for e in self.pending if e.t_end + lag > now]
        busy = [(self.steps.ids[s], b.since) for s, b in self.steps._busy.items()]
        busy += [(self.steps.ids[st.sensor], st.t_start) for st in self.steps._steps]
        takers: dict[int, set[str]] = {}

        def who(event: ShelfEvent) -> set[str]:
            if id(event) not in takers:
                takers[id(event)] = {r.visit for r in self._reaches(event)}
            return takers[id(event)]

        near: dict[tuple[str, float], set[str]] = {}

        def near_busy(sensor: str, since: float) -> set[str]:
            if (sensor, since) not in near:
                near[sensor, since] = self._near_plate(sensor, since, now)
            return near[sensor, since]

        changed = True
        while changed:
            changed = False
            for e in list(ready):
                if now > e.t_end + lag + MAX_HOLD_S or not who(e):
                    continue
                pos = self.sensors[e.changes[0].sensor].pos
                # A put-down waits, too, for an earlier change one of the same shoppers may have made,
                # wherever it was: what it credits depends on what their carts hold by then.
                put = e.delta_g > 0
                blocked = any((self._near(e, w) or (put and w.t_start < e.t_start)) and who(e) & who(w)
                              for w in waiting) or any(
                    ((since < e.t_start) if put else
                     (since <= e.t_end + OVERLAP_MARGIN_S
                      and math.dist(self.sensors[sensor].pos[:2], pos[:2]) <= CLUSTER_RADIUS_M))
                    and bool(who(e) & near_busy(sensor, since))
                    for sensor, since in busy
                )
                if blocked:
                    ready.remove(e)
                    waiting.append(e)
                    changed = True
        self.pending = waiting
        return ready

    def _near_plate(self, sensor: str, since: float, now: float) -> set[str]:
        """The visits with someone who could take from a plate that has been changing since `since`."""
        out: set[str] = set()
        for visit in self._visits_around(since):
            if visit.nonce not in out and self._could_reach(visit, self.sensors[sensor], since, now):
                out.add(visit.nonce)
                for person in visit.people:
                    out.update(person.also)
        return out

    def _visits_around(self, t: float) -> list[Visit]:
        """The visits open now, and those closing whose people left no earlier than a second before t."""
        return list(self.book.open_visits()) + [v for v in self.closing if v.left is None or v.left >= t - 1.0]

    def _could_reach(self, visit: Visit, plate: Sensor, since: float, until: float) -> bool:
        """Whether one of a visit's people could reach `plate` between `since` and `until` (the test
        `_reaches` applies: a body placed to take from the plate, or a hand over it)."""
        for person in visit.people:
            for tid in person.tracks:
                h = self.memory.tracks.get(tid)
                if h is None:
                    continue
                _, xy, hands = h.window(since - DURING_BEFORE_S, until)
                if xy.shape[0] and float(body_scores(xy, plate, self.config.fusion).max()) > 0.0:
                    return True
                if hands.shape[0] and float(np.nanmax(hand_scores(hands, plate), initial=0.0)) > HAND_SEEN:
                    return True
        return False

    def _moves_stock(self, event: ShelfEvent) -> bool:
        if event.delta_g > 0:
            return False  # what a put-down is depends on whose cart holds what: not known yet
        best = explain(event, self.planogram, None, self._foreign_on(event.sensors), self.touching)[0]
        return not best.unexplained and any(not i.sku.startswith("foreign:") for i in best.items)

    def _decide_all(self, events: Sequence[ShelfEvent]) -> None:
        """Decide settled events, those on plates an earlier one of them also changed after it: what
        the earlier one left on the plate (a palm's push read as a thing set down, a unit returned)
        must be known before the later change there is explained and split into parts."""
        waves: list[list[ShelfEvent]] = []
        placed: list[tuple[ShelfEvent, int]] = []
        for event in sorted(events, key=lambda e: (e.t_start, e.t_end)):
            plates = set(event.sensors)
            wave = max((k + 1 for e, k in placed if plates & set(e.sensors)), default=0)
            placed.append((event, wave))
            if wave == len(waves):
                waves.append([])
            waves[wave].append(event)
        for batch in waves:
            self._decide_together(batch)

    def _decide_together(self, events: Sequence[ShelfEvent]) -> None:
        """Decide settled events: split them into parts, assign people jointly per cluster, then act."""
        parts: list[ShelfEvent] = []
        for event in sorted(events, key=lambda e: (e.t_start, e.t_end)):
            for alert in self.inventory.check(event.t_end, event.sensors, self.steps):
                logger.info("low stock: %s (%d left)", alert.sku, alert.units)
                self.low_stock.append(alert)
            parts.extend(self._parts(event))
        parent = list(range(len(parts)))

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        # Only changes that move stock take part in "one person, one place at a time": a resting
        # hand or a foreign item must not make the person beside it look busy elsewhere.
        relevant = [self._moves_stock(p) for p in parts]
        for i in range(len(parts)):
            for j in range(i + 1, len(parts)):
                if relevant[i] and relevant[j] and self._near(parts[i], parts[j]):
                    parent[root(j)] = root(i)
        clusters: dict[int, list[int]] = {}
        for i in range(len(parts)):
            clusters.setdefault(root(i), []).append(i)
        decided: dict[int, list[Reach]] = {}
        for members in clusters.values():
            group = [parts[i] for i in members]
            overlap = [[self._near(a, b, REACH_S) for b in group] for a in group]
            for i, reaches in zip(members, assign_jointly([weigh(self._reaches(e)) for e in group], overlap)):
                decided[i] = reaches
        for i, part in sorted(enumerate(parts), key=lambda x: (x[1].t_start, x[1].t_end)):
            hyps = self._explain(part, decided[i])
            if part.delta_g < 0:
                self._taken(part, decided[i], hyps)
            else:
                self._put_down(part, decided[i], hyps)

    def _foreign_on(self, plates: Sequence[str]) -> list[Candidate]:
        """Foreign items resting on any of these plates (an item set down across plates rests on all)."""
        out = []
        here = set(plates)
        for sid, ex in sorted(self.extras.items()):
            for k, item in enumerate(ex.foreign):
                if item.on & here:
                    out.append(Candidate(f"foreign:{sid}:{k}", item.grams, item.sd, False, item.on, 0.0, single=True))
        return out

    def _add_foreign(self, plate: str, event: ShelfEvent, grams: float, spread: float) -> None:
        """Remember something on `plate` (and on whichever of the event's plates it weighed on) that is not stock."""
        weighed = [c.sensor for c in event.changes if abs(c.delta_g) >= max(3.0 * c.noise_g, 4.0)]
        # Known no better than it was weighed: a thing set down on a plate a hand was shaking is
        # not known to the gram.
        item = ForeignItem(grams, math.hypot(spread * grams, measurement_sd(event)), frozenset(weighed) | {plate})
        self.extras.setdefault(plate, PlateExtras()).foreign.append(item)

    def _misplaced_on(self, plates: Sequence[str], grams: float) -> dict[str, int]:
        """Products set down here that are not stocked here, with how many; a bag of loose goods only
        for its own weight."""
        out: dict[str, int] = {}
        for sid in plates:
            ex = self.extras.get(sid)
            if ex is not None:
                for sku, n in ex.misplaced.items():
                    product = self.planogram.products.get(sku)
                    if product is not None and product.by_weight and not any(
                            same_bag(grams, bag) for bag in ex.bags.get(sku, ())):
                        continue
                    if n > 0:
                        out[sku] = out.get(sku, 0) + n
        return out

    def _explain(self, event: ShelfEvent, reaches: Sequence[Reach]) -> list[Hypothesis]:
        plates = [c.sensor for c in event.changes]
        if event.delta_g < 0:
            misplaced = self._misplaced_on(plates, abs(event.delta_g))
            extra = dict.fromkeys(misplaced, 0.0)
            stocked = set(self.planogram.stocked(plates))
            # Of a product not stocked here, no more can be taken than was set down here.
            units = {sku: n for sku, n in misplaced.items() if sku not in stocked}
        else:
            extra = {}
            units = {}
            counted: set[str] = set()
            for r in reaches:
                if r.score < NOBODY_SCORE:
                    continue
                cart = self.carts.get(r.visit)
                if cart is None:
                    continue
                prior = math.log(0.3 + 0.7 * r.confidence)
                for sku in cart.held_skus():
                    if not self._could_return(cart, sku, event):
                        continue
                    extra[sku] = max(extra.get(sku, -math.inf), prior)
                    if r.visit not in counted:
                        units[sku] = units.get(sku, 0) + cart.holds(sku)
                counted.add(r.visit)
            # Something stocked here that no cart holds can only be set down by someone the box
            # lost track of: a lookalike that some cart does hold explains the change better.
            held = self._held_anywhere()
            for sku in self.planogram.stocked(plates):
                if sku not in extra and sku not in held:
                    extra[sku] = 0.0
                    units[sku] = 0  # every unit of it is one nobody holds
        return explain(event, self.planogram, extra, self._foreign_on(plates), self.touching, units)

    def _held_anywhere(self) -> set[str]:
        """Products some cart holds: of the shoppers inside, or of those who left within the refund window."""
        out: set[str] = set()
        for cart in self.carts.values():
            out.update(cart.held_skus())
        cutoff = self.now - REFUND_WINDOW_S
        for cart, _entered, left in self.closed_carts.values():
            if left >= cutoff:
                out.update(cart.held_skus())
        return out

    def _could_return(self, cart: Cart, sku: str, event: ShelfEvent) -> bool:
        """Whether a put-down could be what this cart holds of a loose product. On the product's own
        bin some of it may be poured back, but never more than was scooped; anywhere else loose goods
        cannot be poured out, so what comes back is a whole bag: one scoop, or all of them."""
        product = self.planogram.products.get(sku)
        if product is None or not product.by_weight:
            return True
        held = cart.grams.get(sku, 0.0)
        grams = abs(event.delta_g)
        if any(sku in self.planogram.on_plate.get(c.sensor, ()) for c in event.changes):
            return grams <= held + max(LOOSE_RETURN_SLACK_G, LOOSE_RETURN_SLACK * held)
        scoops = [c.grams for c in cart.changes if c.sku == sku and c.grams > 0]
        return any(same_bag(grams, bag) for bag in (held, *scoops))

    def _parts(self, event: ShelfEvent) -> list[ShelfEvent]:
        """Whole event, or the split of its plates that explains it better: picks by shoppers side by
        side at neighbouring plates settle into one event, and each pick is one block of plates
        (a unit resting across two plates stays one block), each block keeping its own moment."""
        if len(event.changes) < 2:
            return [event]
        floor_g = self.config.shelves.min_step_g
        strong = [c for c in event.changes if abs(c.delta_g) >= max(floor_g, 2.0 * c.noise_g)]
        if len(strong) < 2:
            return [event]
        whole = self._explain(event, self._candidates(event))[0]
        whole_ll = whole.log_lik + together(strong)
        weak = [c for c in event.changes if c not in strong]
        fits: dict[frozenset[str], tuple[ShelfEvent, float]] = {}

        def fit(block: Sequence[PlateChange]) -> tuple[ShelfEvent, float]:
            key = frozenset(c.sensor for c in block)
            if key not in fits:
                sub = self._sub_event(event, block, weak)
                fits[key] = (sub, self._explain(sub, self._candidates(sub))[0].log_lik + together(block))
            return fits[key]

        if len(strong) <= MAX_SPLIT_PLATES:
            splits = [p for p in plate_partitions(strong, self.touching) if len(p) > 1]
        else:
            splits = [[[c] for c in strong]]
        best: list[ShelfEvent] = [event]
        best_ll = -math.inf
        for blocks in splits:
            ll = sum(fit(b)[1] for b in blocks) + LOG_SPLIT * (len(blocks) - 1)
            if ll > best_ll:
                best, best_ll = [fit(b)[0] for b in blocks], ll
        if whole.unexplained or best_ll > whole_ll:
            return sorted(best, key=lambda e: (e.t_start, e.t_end))
        return [event]

    def _sub_event(self, event: ShelfEvent, block: Sequence[PlateChange],
                   weak: Sequence[PlateChange]) -> ShelfEvent:
        """The part of `event` on `block`'s plates, with the small changes of plates touching them,
        timed by the block's own steps."""
        names = {c.sensor for c in block}
        extra = [c for c in weak if any(n in names for n in self.touching.get(c.sensor, ()))]
        t0 = min((c.t_start for c in block if c.t_start is not None), default=event.t_start)
        t1 = max((c.t_end for c in block if c.t_end is not None), default=event.t_end)
        changes = tuple(sorted((*block, *extra), key=lambda c: c.sensor))
        return ShelfEvent(t0, max(t0, t1), changes)

    def _evidence(self, event: ShelfEvent, p_prod: float, p_person: float, note: str) -> Evidence:
        return Evidence(round(event.t_start, 3), event.sensors, round(event.delta_g, 1), round(p_prod, 3),
                        round(p_person, 3), note)

    def _record(self, event: ShelfEvent, outcome: str, visit: str = "", hyp: Hypothesis | None = None,
                p_person: float = 0.0) -> None:
        items = tuple((i.sku, i.qty, i.grams) for i in hyp.items) if hyp else ()
        self.decisions.append(Decision(event, outcome, visit, items, hyp.probability if hyp else 0.0, p_person))

    def _review(self, visit: str, event: ShelfEvent, reason: str, hyps: Sequence[Hypothesis],
                p_prod: float, p_person: float) -> None:
        cands = tuple((i.sku, i.qty) for h in hyps[:3] if not h.unexplained for i in h.items
                      if not i.sku.startswith("foreign:"))
        item = ReviewItem(visit, reason, cands, self._evidence(event, p_prod, p_person, reason))
        self.carts[visit].review.append(item)
        if self.listener is not None:
            self.listener.held_for_review(item)
        self._record(event, f"review: {reason}", visit, hyps[0] if hyps else None, p_person)

    def _price(self, hyp: Hypothesis) -> int:
        return sum(self.planogram.products[i.sku].price * i.qty for i in hyp.items
                   if i.sku in self.planogram.products and i.qty)

    def _amount_confidence(self, best: Hypothesis, hyps: Sequence[Hypothesis]) -> float:
        """How sure the box is of what to charge: lookalikes at the same price and count (two flavours
        of one gum) cost the shopper the same, so their probabilities add up."""
        if any(i.grams for i in best.items):
            return best.probability
        return sum(h.probability for h in self._same_cost(best, hyps))

    def _same_cost(self, best: Hypothesis, hyps: Sequence[Hypothesis]) -> list[Hypothesis]:
        """The hypotheses of whole units at the same price and count as `best` (which has no grams)."""
        price, units = self._price(best), sum(i.qty for i in best.items)
        return [h for h in hyps if not h.unexplained and self._price(h) == price
                and sum(i.qty for i in h.items) == units and not any(i.grams for i in h.items)]

    def _lookalikes(self, best: Hypothesis, hyps: Sequence[Hypothesis]) -> list[Hypothesis]:
        """The hypotheses that cost the same as `best` for the same count of one product each: what
        weight could not tell apart (two flavours of one gum)."""
        if len(best.items) != 1 or best.items[0].grams or best.items[0].sku.startswith("foreign:"):
            return [best]
        return [h for h in self._same_cost(best, hyps)
                if len(h.items) == 1 and not h.items[0].sku.startswith("foreign:")]

    def _hands_at(self, who: Reach, event: ShelfEvent, plate: Sensor) -> list[tuple[float, float]]:
        """Floor x, y of the taker's hand in `plate`'s space while the weight was leaving it (points on
        the way in or out lie between the shoulder and the product, and would pull towards the body)."""
        visit = next((v for v in self._visits_around(event.t_start) if v.nonce == who.visit), None)
        if visit is None or not 0 <= who.person < len(visit.people) or who.hand_point is None:
            return []
        during = _during(event)
        lo, hi = during[0] + HAND_LATE_START_S, during[1] + HAND_LATE_S  # as `reach_evidence` counts touching
        for tid in visit.people[who.person].tracks:
            h = self.memory.tracks.get(tid)
            if h is None:
                continue
            _, _, hands = h.window(lo, hi)
            # Only the track whose hand made this person the taker: a person's tracks repaired after
            # an id swap may hold, over the same moment, points of the other person's hand.
            if not len(hands) or not np.any(np.all(np.isclose(hands, who.hand_point), axis=1)):
                continue
            known = hands[~np.isnan(hands[:, 0])]
            at_plate = np.nan_to_num(hand_scores(known, plate), nan=0.0) >= HAND_AT_PLATE
            return [(float(x), float(y)) for x, y in known[at_plate, :2]]
        return []

    def _by_hand_place(self, event: ShelfEvent, who: Reach,
                       hyps: Sequence[Hypothesis]) -> tuple[Hypothesis, list[Hypothesis]]:
        """The best of the likeliest hypothesis and those differing from it only in which product it
        was (units of one product each, on one plate), once the hand's place along the shelf has
        weighed in; and every hypothesis with its probability after that.

        Weight alone may not tell them apart: two flavours of one gum, a 71 g and a 76 g bar on a
        plate whose scatter is as large as their difference, or two 18 g lighters and one 31 g
        cable. Where the hand was is evidence of which facing it took from, so their probabilities
        are shared out again (their total stays) by how well each fits the hand's place. With no
        hand seen, or no `[[stock]] at` for them, the weight alone decides.
        """
        best = hyps[0]
        plate = self.sensors[event.main_plate]
        group = self._alternatives(best, hyps, plate)
        if len(group) < 2:
            return best, list(hyps)
        hands = self._hands_at(who, event, plate)
        fit = place_log_likelihoods([h.items[0].sku for h in group], hands, plate, self.planogram,
                                    self.config.fusion.hand_sd_m)
        if fit is None:
            return best, list(hyps)
        top = max(fit.values())
        weights = {id(h): h.probability * math.exp(fit[h.items[0].sku] - top) for h in group}
        total, mass = sum(weights.values()), sum(h.probability for h in group)
        if total <= 0.0:
            return best, list(hyps)
        placed = {id(h): replace(h, probability=mass * weights[id(h)] / total) for h in group}
        best = max(placed.values(), key=lambda h: h.probability)
        return best, sorted((placed.get(id(h), h) for h in hyps), key=lambda h: -h.probability)

    def _alternatives(self, best: Hypothesis, hyps: Sequence[Hypothesis], plate: Sensor) -> list[Hypothesis]:
        """The hypotheses the hand's place can choose among: units of one product each (as many as
        their weight says: two 18 g lighters or one 31 g cable), that product standing on `plate` or
        costing what `best` does."""
        if len(best.items) != 1 or best.items[0].grams or best.items[0].sku.startswith("foreign:"):
            return [best]
        here = set(self.planogram.on_plate.get(plate.id, ()))
        same = {id(h) for h in self._lookalikes(best, hyps)}
        return [h for h in hyps if len(h.items) == 1 and not h.items[0].grams
                and not h.items[0].sku.startswith("foreign:") and (h.items[0].sku in here or id(h) in same)]

    def _taken(self, event: ShelfEvent, reaches: Sequence[Reach], hyps: Sequence[Hypothesis]) -> None:
        best = hyps[0]
        who = reaches[0] if reaches and reaches[0].score >= NOBODY_SCORE else None
        if who is not None and self.steps.unmeasured_partners(event.sensors, event.t_end):
            # Part of what left may have left that plate unweighed: how many units, of what, is
            # unknown (half a 1 L bottle weighs what a whole 0.5 L one does).
            logger.info("a take beside a plate that is not reporting goes to review")
            self._review(who.visit, event, PLATE_SILENT, hyps, best.probability, who.confidence)
            return
        if who is not None and self._taken_again(event, who):
            return
        if best.unexplained:
            if who is not None and abs(event.delta_g) >= 3 * self.config.shelves.min_step_g:
                self._review(who.visit, event, NO_PRODUCT, hyps, best.probability, who.confidence)
            else:
                self._record(event, "ignored: unexplained")
            return
        foreign = [i for i in best.items if i.sku.startswith("foreign:")]
        for item in foreign:
            _, sid, k = item.sku.split(":")
            ex = self.extras[sid]
            for _ in range(max(1, item.qty)):
                if ex.foreign:
                    ex.foreign.pop(min(int(k), len(ex.foreign) - 1))
        goods = [i for i in best.items if not i.sku.startswith("foreign:")]
        if not goods:
            self._record(event, "foreign item taken back", who.visit if who else "", best)
            return
        if who is None:
            logger.info("an item left a shelf with no shopper near it")
            self._record(event, "ignored: nobody near", "", best)
            return
        best, hyps = self._by_hand_place(event, who, hyps)
        p_amount = self._amount_confidence(best, hyps)
        goods = [i for i in best.items if not i.sku.startswith("foreign:")]
        confidence = p_amount * who.confidence
        if confidence < self.config.fusion.min_confidence:
            reason = WHICH_PRODUCT if p_amount < who.confidence else WHO_TOOK_IT
            self._review(who.visit, event, reason, hyps, best.probability, who.confidence)
            return
        plates = event.sensors
        for item in goods:
            for sid in plates:
                held = self.extras.get(sid)
                if held and held.misplaced.get(item.sku, 0) > 0:
                    bags = held.bags.get(item.sku, [])
                    bag = next((b for b in bags if item.grams and same_bag(item.grams, b)), None)
                    if bag is not None:
                        bags.remove(bag)
                    held.misplaced[item.sku] -= min(item.qty or (bag is not None), held.misplaced[item.sku])
            change = CartChange(who.visit, item.sku, item.qty, item.grams,
                                self._evidence(event, best.probability, who.confidence, "taken"))
            self._apply(who.visit, change)
        self._record(event, "taken", who.visit, best, who.confidence)

    def _put_down(self, event: ShelfEvent, reaches: Sequence[Reach], hyps: Sequence[Hypothesis]) -> None:
        """Decide a put-down, and remember it for a while if it credited a cart."""
        hyps = self._credit_in_doubt(hyps, reaches)
        plates = event.sensors
        had = {v: len(c.changes) for v, c in self.carts.items()}
        extras = {sid: self.extras.get(sid, PlateExtras()) for sid in plates}
        foreign = {sid: {id(f) for f in ex.foreign} for sid, ex in extras.items()}
        misplaced = {sid: dict(ex.misplaced) for sid, ex in extras.items()}
        bags = {sid: {sku: len(b) for sku, b in ex.bags.items()} for sid, ex in extras.items()}
        alerts = len(self.restock)
        self._set_down(event, reaches, hyps)
        credited = [(v, tuple(c.changes[had[v]:])) for v, c in self.carts.items() if len(c.changes) > had.get(v, 0)]
        if len(credited) != 1:
            return
        now = {sid: self.extras.get(sid, PlateExtras()) for sid in plates}
        self.set_down.append(SetDown(
            event, credited[0][0], credited[0][1],
            tuple((sid, f) for sid, ex in now.items() for f in ex.foreign if id(f) not in foreign[sid]),
            tuple((sid, sku, n - misplaced[sid].get(sku, 0)) for sid, ex in now.items()
                  for sku, n in ex.misplaced.items() if n > misplaced[sid].get(sku, 0)),
            tuple((sid, sku, g) for sid, ex in now.items() for sku, b in ex.bags.items()
                  for g in b[bags[sid].get(sku, 0):]),
            tuple(self.restock[alerts:])))

    def _credit_in_doubt(self, hyps: Sequence[Hypothesis], reaches: Sequence[Reach]) -> list[Hypothesis]:
        """A put-down the box is unsure of is read the way that costs the shopper least.

        When weight cannot tell which of the things the carts within reach hold came back (55 g of
        fruit jelly at 1,000 or 55 g of paper cups at 1,500), crediting the cheaper one charges the
        shopper for the dearer one they may have put back, while crediting the dearer one at worst
        undercharges. So when what to credit is less certain than `min_confidence`, of the
        explanations not ruled out (each at least 1 - min_confidence likely) whose units a cart
        within reach holds, the one crediting the most money is taken. Goods sold by weight are
        left as weighed.
        """
        best = hyps[0] if hyps else None
        sure = self.config.fusion.min_confidence
        if best is None or best.unexplained or any(i.grams for i in best.items) \
                or self._amount_confidence(best, hyps) >= sure:
            return list(hyps)
        carts = [self.carts[r.visit] for r in reaches if r.visit in self.carts]

        def credit(h: Hypothesis) -> int:
            """Money credited by `h` if every unit of it is held within reach; -1 if some is not."""
            total = 0
            for item in h.items:
                if item.sku.startswith("foreign:"):
                    continue
                held = max((c.holds(item.sku) for c in carts), default=0)
                if item.grams or held == 0:
                    return -1
                total += self.planogram.products[item.sku].price * min(item.qty, held)
            return total if total > 0 else -1

        plausible = [(credit(h), h.probability, k) for k, h in enumerate(hyps)
                     if not h.unexplained and h.probability >= 1.0 - sure]
        plausible = [p for p in plausible if p[0] > 0]
        if not plausible:
            return list(hyps)
        k = max(plausible)[2]
        return [hyps[k], *(h for i, h in enumerate(hyps) if i != k)]

    def _taken_again(self, event: ShelfEvent, who: Reach) -> bool:
        """Whether this take lifts again, at once, what its taker just set down on these plates (the
        same weight within what both were weighed to): then the put-down is undone, whatever it was
        read as (a palm's push read as a unit returned is the commonest)."""
        plates = set(event.sensors)
        for d in reversed(self.set_down):
            if d.visit != who.visit or not plates & set(d.event.sensors) or event.t_start > d.event.t_end + UNDO_S:
                continue
            sd = math.hypot(measurement_sd(event), measurement_sd(d.event), RELATIVE_ERROR * abs(event.delta_g))
            if abs(event.delta_g + d.event.delta_g) > 3.0 * sd:
                continue
            self.set_down.remove(d)
            if d.visit in self.carts:
                for c in d.changes:
                    self._apply(d.visit, CartChange(d.visit, c.sku, -c.qty, -c.grams,
                                                    self._evidence(event, 1.0, who.confidence, "taken again")))
            for sid, item in d.foreign:
                ex = self.extras.get(sid)
                if ex is not None and any(f is item for f in ex.foreign):
                    ex.foreign = [f for f in ex.foreign if f is not item]
            for sid, sku, n in d.misplaced:
                ex = self.extras.get(sid)
                if ex is not None:
                    ex.misplaced[sku] = max(0, ex.misplaced.get(sku, 0) - n)
            for sid, sku, g in d.bags:
                ex = self.extras.get(sid)
                if ex is not None and g in ex.bags.get(sku, []):
                    ex.bags[sku].remove(g)
            self.restock = [a for a in self.restock if not any(a is b for b in d.alerts)]
            self._record(event, "taken again", who.visit, None, who.confidence)
            return True
        return False

    def _set_down(self, event: ShelfEvent, reaches: Sequence[Reach], hyps: Sequence[Hypothesis]) -> None:
        best = hyps[0]
        main_plate = event.main_plate
        if best.unexplained or all(i.sku.startswith("foreign:") for i in best.items):
            # Its weight was measured once, and a palm that rested there pushed with a varying force.
            self._add_foreign(main_plate, event, abs(event.delta_g), FOREIGN_SPREAD)
            self._record(event, "foreign item put down", reaches[0].visit if reaches else "", best)
            return
        for item in best.items:
            if item.sku.startswith("foreign:"):
                continue
            holder = self._holder(item.sku, item.qty, reaches)
            if holder is None and item.qty > 0 and not item.grams and \
                    self._returned_in_review(event, main_plate, item, reaches, best):
                continue
            if holder is None:
                # Nobody's cart holds it: not charged to anyone; the plate now carries it.
                # It looked like stock: a thing set down and weighed as well as the plate weighs.
                self._add_foreign(main_plate, event, abs(event.delta_g) / max(1, len(best.items)),
                                  FOREIGN_WEIGHED_SPREAD)
                self._record(event, "put down, no cart holds it", "", best)
                continue
            cart = self.carts.get(holder.visit) or self.closed_carts[holder.visit][0]
            qty = min(item.qty, cart.holds(item.sku)) if item.qty else 0
            grams = -min(item.grams, cart.grams.get(item.sku, 0.0)) if item.grams else 0.0
            # Units beyond what the cart held: nobody's, but the plate carries their weight now.
            self._unheld_units(main_plate, event, item.sku, item.qty - qty)
            if qty == 0 and grams == 0:
                continue
            change = CartChange(holder.visit, item.sku, -qty, grams,
                                self._evidence(event, best.probability, holder.confidence, "returned"))
            if holder.visit in self.carts:
                self._apply(holder.visit, change)
            else:
                self._credit_after_exit(holder.visit, change)
            stocked_here = self._back_on_shelf(event, main_plate, item.sku, qty or 1, item.grams)
            self._record(event, "returned" if stocked_here else "returned to the wrong place", holder.visit, best,
                         holder.confidence)

    def _returned_in_review(self, event: ShelfEvent, main_plate: str, item: Item, reaches: Sequence[Reach],
                            best: Hypothesis) -> bool:
        """Whether units nobody's cart holds came back while a take of them waits for review, and if so
        take them off that review item (withdrawing it when all its units are back).

        A take held for review is in no cart, so its units coming back find no holder; left alone,
        the item would still show a take with good evidence to the person deciding it. The units
        are stock again where they belong: nothing foreign is left on the plate (units beyond what
        the item could hold are, as for any unit nobody holds).
        """
        found = self._review_source(event, item.sku, reaches)
        if found is None:
            return False
        source, reach = found
        # Its units as the likeliest reading naming the product has them (the candidates are the take's
        # three likeliest readings, however unlikely the others); once they are all back, it is over.
        # The units that came back say which product was taken: the other products' readings go.
        taken = next(q for sku, q in source.candidates if sku == item.sku)
        back = min(item.qty, taken)
        left = () if back == taken else tuple(dict.fromkeys(
            (sku, q - back) for sku, q in source.candidates if sku == item.sku and q > back))
        amended = replace(source, candidates=left) if left else None
        self.carts[source.visit].amend_review(source, amended)
        if self.listener is not None:
            self.listener.review_amended(source, amended)
        self._unheld_units(main_plate, event, item.sku, item.qty - back)
        stocked_here = self._back_on_shelf(event, main_plate, item.sku, back, 0.0)
        logger.info("units held for review came back to a shelf: the review item was %s",
                    "amended" if amended else "withdrawn")
        outcome = "returned while in review" if stocked_here else "returned to the wrong place while in review"
        self._record(event, outcome, source.visit, best, reach.confidence if reach else 0.0)
        return True

    def _unheld_units(self, plate: str, event: ShelfEvent, sku: str, units: int) -> None:
        """Units put down beyond what the cart (or review item) they came back to held: nobody's,
        but `plate` carries their weight now."""
        if units > 0:
            unit_g = self.planogram.products[sku].unit_g or 0.0
            self._add_foreign(plate, event, units * unit_g, FOREIGN_WEIGHED_SPREAD)

    def _back_on_shelf(self, event: ShelfEvent, plate: str, sku: str, units: int, grams: float) -> bool:
        """Units of `sku` (or a bag of `grams`) are back on a shelf at `plate`: whether the plates
        stock it; if they do not, it is flagged for restocking and counted as misplaced there."""
        stocked_here = any(sku in self.planogram.on_plate.get(s, ()) for s in event.sensors)
        if not stocked_here:
            self.restock.append(RestockAlert(event.t_end, plate, sku, units))
            ex = self.extras.setdefault(plate, PlateExtras())
            ex.misplaced[sku] = ex.misplaced.get(sku, 0) + units
            if grams:
                ex.bags.setdefault(sku, []).append(grams)
        return stocked_here

    def _review_source(self, event: ShelfEvent, sku: str,
                       reaches: Sequence[Reach]) -> tuple[ReviewItem, Reach | None] | None:
        """The open review item of a take that units of `sku` put down by nobody's cart most plausibly
        came from, with the reach that names its visit (None when no reach does).

        Only takes of a visit still in the shop that list `sku` among their candidates and began
        before the put-down count. As `_holder` credits a return: the visit of the nearest reach
        with such an item; else, if only one visit has any, that one; else nobody (two shoppers'
        doubts over one product, and neither at the plate, are not settled by a guess). Of one
        visit's several such items the newest: the unit taken last is the likeliest still in hand.
        """
        def waiting(visit: str) -> list[ReviewItem]:
            cart = self.carts.get(visit)
            if cart is None:
                return []
            return [r for r in cart.review if r.reason in TAKE_REVIEWS and r.evidence.t <= event.t_start
                    and any(s == sku and q > 0 for s, q in r.candidates)]

        for reach in reaches:
            items = waiting(reach.visit)
            if items:
                return items[-1], reach
        held = [items for items in (waiting(v) for v in sorted(self.carts)) if items]
        return (held[0][-1], None) if len(held) == 1 else None

    def _apply(self, visit: str, change: CartChange) -> None:
        self.carts[visit].apply(change)
        if self.listener is not None:
            self.listener.cart_changed(change)

    def _holder(self, sku: str, qty: int, reaches: Sequence[Reach]) -> Reach | None:
        """The cart credited for a returned item: the nearest shopper holding one."""
        holding = [r for r in reaches if r.visit in self.carts and
                   (self.carts[r.visit].holds(sku) > 0 or self.carts[r.visit].grams.get(sku, 0.0) > 0)]
        if holding:
            return holding[0]
        others = [Reach(v, 0, 0.0, None) for v, c in sorted(self.carts.items()) if c.holds(sku) > 0]
        if not others:
            # Nobody inside holds one: a shopper who already left may have handed it on before going.
            cutoff = self.now - REFUND_WINDOW_S
            others = [Reach(v, 0, 0.0, None) for v, (c, _e, left) in sorted(self.closed_carts.items())
                      if left >= cutoff and c.holds(sku) > 0]
        if len(others) == 1:
            return others[0]
        putter = reaches[0] if reaches and reaches[0].score >= NOBODY_SCORE else None
        met = [r for r in others if putter is not None and self._handed_over(r.visit, putter, sku)]
        return met[0] if len(met) == 1 else None

    def _handed_over(self, holder: str, putter: Reach, sku: str) -> bool:
        """Whether one of `holder`'s people came within arm's reach of the person who set `sku` down
        since the holder last took one: a unit changes hands only from hand to hand, so of several
        carts holding it, only such a one can have handed it to a stranger who then put it back."""
        visits = {v.nonce: v for v in (*self.book.closed, *self._visits_around(self.now))}
        giver, taker = visits.get(holder), visits.get(putter.visit)
        if giver is None or taker is None or not 0 <= putter.person < len(taker.people):
            return False
        cart = self.carts[holder] if holder in self.carts else self.closed_carts[holder][0]
        since = max((c.evidence.t for c in cart.changes if c.sku == sku and c.qty > 0), default=self.now)
        mine = [self.memory.tracks[t].window(since, self.now) for t in taker.people[putter.person].tracks
                if t in self.memory.tracks]
        for person in giver.people:
            for tid in person.tracks:
                h = self.memory.tracks.get(tid)
                if h is None:
                    continue
                tt, xy, _ = h.window(since, self.now)
                for mt, mxy, _ in mine:
                    if not len(tt) or not len(mt):
                        continue
                    # each of the putter's points against the giver's point nearest in time
                    after = np.clip(np.searchsorted(tt, mt), 0, len(tt) - 1)
                    before = np.maximum(after - 1, 0)
                    k = np.where(np.abs(tt[before] - mt) < np.abs(tt[after] - mt), before, after)
                    together = np.abs(tt[k] - mt) <= SAME_MOMENT_S
                    apart = np.hypot(*(xy[k] - mxy).T)
                    if np.any(together & (apart <= HAND_OVER_M)):
                        return True
        return False

    def _credit_after_exit(self, visit: str, change: CartChange) -> None:
        """A unit that left with a visit's charge came back to a shelf: refund it."""
        cart, entered, left = self.closed_carts[visit]
        cart.apply(change)
        self.refunded[visit] = receipt_for(cart, self.planogram.products, self.config.store.currency, entered, left)
        logger.info("a unit already charged came back after its shopper left: refunded")
        if self.listener is not None:
            self.listener.credited_after_exit(change)


def _during(event: ShelfEvent) -> tuple[float, float]:
    """When a taker's hand could be on the event's plates."""
    return event.t_start - DURING_BEFORE_S, event.t_end + DURING_AFTER_S


def together(block: Sequence[PlateChange]) -> float:
    """Log-likelihood that one act changed all these plates, from when each began to change: a
    unit lifted off two plates, or a hand sweeping across them, moves them at the same moment.
    A plate busy for long (a palm resting near it) has no sharp start to compare, and timing alone
    never outweighs a good explanation by weight (at most LOG_APART)."""
    starts = [c.t_start for c in block if c.t_start is not None and c.t_end is not None
              and c.t_end - c.t_start <= SHARP_START_S]
    if len(starts) < 2:
        return 0.0
    mean = sum(starts) / len(starts)
    return max(LOG_APART, -0.5 * sum(((t - mean) / ACT_START_SD_S) ** 2 for t in starts))


def plate_partitions(changes: Sequence[PlateChange], touching: dict[str, list[str]]) -> list[list[list[PlateChange]]]:
    """Every way to cut `changes` into blocks whose plates are connected through `touching`."""
    out: list[list[list[PlateChange]]] = []

    def connected(block: Sequence[PlateChange]) -> bool:
        names = {c.sensor for c in block}
        seen, todo = {block[0].sensor}, [block[0].sensor]
        while todo:
            for n in touching.get(todo.pop(), ()):
                if n in names and n not in seen:
                    seen.add(n)
                    todo.append(n)
        return seen == names

    def grow(k: int, blocks: list[list[PlateChange]]) -> None:
        if k == len(changes):
            if all(connected(b) for b in blocks):
                out.append([list(b) for b in blocks])
            return
        for b in blocks:
            b.append(changes[k])
            grow(k + 1, blocks)
            b.pop()
        blocks.append([changes[k]])
        grow(k + 1, blocks)
        blocks.pop()

    grow(0, [])
    return out
