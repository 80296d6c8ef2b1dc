"""The terminal demo: a simulated shop played in real time (or faster) through the real loop.

Entries, cart changes, returns, review items and receipts are printed as they happen. Shoppers
are shown by a short visit number, never by anything from their pass. The stages see only data
time; the demo alone paces itself against the wall clock.
"""

from __future__ import annotations

import sys
import time
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TextIO

import numpy as np

from appliance.events import GateEvent, Receipt, TrackPoint
from appliance.fusion.loop import ShopFloor
from appliance.gate.passes import parse_pass_unchecked
from appliance.replay import TICK_S, first_tick, merge_streams
from appliance.sim.recording import Recording
from appliance.sim.score import Score, score

VISION_REPORT_S = 5.0
# ISO 4217 currencies without minor units; all others shown with two decimals.
ZERO_DECIMAL = frozenset({"KRW", "JPY", "VND", "CLP", "ISK", "PYG", "UGX", "XAF", "XOF", "RWF", "KMF", "GNF"})


def format_money(amount: int, currency: str) -> str:
    """An amount in minor units as people read it: 3,900 KRW, 12.50 USD."""
    if currency in ZERO_DECIMAL:
        return f"{amount:,} {currency}"
    return f"{amount / 100:,.2f} {currency}"


@dataclass(slots=True)
class DemoStats:
    visits: int = 0
    receipts: int = 0
    lines: int = 0
    review: int = 0
    money: int = 0


class Console:
    """Prints the shop's story in the store's local time."""

    def __init__(self, rec: Recording, out: TextIO) -> None:
        self.out = out
        self.tz = zoneinfo.ZoneInfo(rec.config.store.timezone)
        self.currency = rec.config.store.currency
        self.names = {p.sku: p.name or p.sku for p in rec.config.products}
        self.labels: dict[str, str] = {}

    def label(self, nonce: str) -> str:
        if nonce not in self.labels:
            self.labels[nonce] = f"V{len(self.labels) + 1}"
        return self.labels[nonce]

    def say(self, t: float, text: str) -> None:
        clock = datetime.fromtimestamp(t, self.tz).strftime("%H:%M:%S")
        print(f"{clock}  {text}", file=self.out, flush=True)

    def money(self, amount: int) -> str:
        return format_money(amount, self.currency)


def play(rec: Recording, speed: float = 1.0, out: TextIO = sys.stdout,
         sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
         level: str = "tracks") -> DemoStats:
    """Play a recording through a ShopFloor, paced at `speed` x real time (0 = as fast as possible).

    With `level` "video" the cameras' footage goes through the real detector and floor tracker
    first, and the demo reports how many people it tracks and the frame rate it keeps.
    """
    con = Console(rec, out)
    floor = ShopFloor(rec.config, exits_from_gate=any(e.kind == "exit" for e in rec.gate))
    stats = DemoStats()
    frames = None
    if level == "video":
        from appliance.vision import pipeline
        from appliance.vision.detector import OnnxDetector

        assert rec.video is not None, "this recording has no video"
        frames = pipeline.detections_from_video(rec.config, rec.video, OnnxDetector.from_settings(rec.config.vision))
        tracks: Iterable[TrackPoint] = pipeline.tracks_from_detections(rec.config, frames)
    else:
        tracks = rec.tracks or []
    stream = merge_streams(sorted(rec.gate, key=lambda e: e.t), tracks)
    w = rec.weights
    start, end = rec.start, rec.end
    wall0 = clock()
    wi = 0
    seen_decisions = 0
    nxt = next(stream, None)
    last_vision = wall0
    tracks_seen: set[str] = set()
    receipts: list[Receipt] = []
    con.say(start, f"{rec.config.store.name}: {len(rec.config.products)} products on {len(rec.config.sensors)} "
                   f"load cells; playing {end - start:.0f} s of shop time at "
                   f"{'full speed' if speed <= 0 else f'{speed:g}x'}")
    tick = first_tick(start)
    while tick <= end + TICK_S:
        if speed > 0:
            lag = (tick - start) / speed - (clock() - wall0)
            if lag > 0:
                sleep(lag)
        while nxt is not None and nxt.t < tick:
            item = nxt
            nxt = next(stream, None)
            if isinstance(item, GateEvent):
                if item.kind == "entry":
                    claims = parse_pass_unchecked(item.pass_text)
                    floor.gate(item, claims)
                    stats.visits += 1
                    party = f" (party of {claims.party})" if claims.party > 1 else ""
                    con.say(item.t, f"-> {con.label(claims.nonce)} entered{party}")
                else:
                    floor.gate(item)
            else:
                tracks_seen.add(item.track)
                floor.track(item)
        wj = int(np.searchsorted(w.t, tick, "left"))
        if wj > wi:
            floor.samples(w.block(wi, wj))
            wi = wj
        done = floor.advance(tick)
        for d in floor.decisions[seen_decisions:]:
            _tell(con, d.event.t_end, d.outcome, d.visit, d.items, d.product_confidence, d.person_confidence)
        seen_decisions = len(floor.decisions)
        for r in done:
            _receipt(con, r, stats)
        receipts += done
        if frames is not None and clock() - last_vision >= VISION_REPORT_S:
            elapsed = max(clock() - wall0, 1e-6)
            people = len(floor.memory.active(tick - 1.0, tick))
            con.say(tick, f"   vision: {people} people tracked; {frames.frames / elapsed:.1f} frames/s over "
                          f"{len(rec.video or [])} cameras, {frames.skipped} unchanged frames skipped")
            last_vision = clock()
        tick += TICK_S
    last = floor.finish(end + TICK_S)
    for d in floor.decisions[seen_decisions:]:
        _tell(con, d.event.t_end, d.outcome, d.visit, d.items, d.product_confidence, d.person_confidence)
    for r in last:
        _receipt(con, r, stats)
    receipts += last
    con.say(end, f"day done: {stats.visits} visits, {stats.lines} receipt lines, {con.money(stats.money)} charged, "
                 f"{stats.review} items held for review, {len(floor.restock)} restock alerts, "
                 f"{len(tracks_seen)} track ids seen")
    if rec.truth is not None:
        s = score({"visits": [{"pass": r.visit, "lines": [ln.as_json() for ln in r.lines],
                               "review": list(r.review)} for r in receipts]}, rec.truth)
        _verdict(con, end, s)
    return stats


def _tell(con: Console, t: float, outcome: str, visit: str, items: tuple[tuple[str, int, float], ...],
          p_prod: float, p_person: float) -> None:
    what = ", ".join(f"{qty or ''}{' x ' if qty else ''}{con.names.get(sku, sku)}{f' {g:.0f} g' if g else ''}"
                     for sku, qty, g in items if not sku.startswith("foreign:")) or "something"
    who = con.label(visit) if visit else "nobody"
    sure = f"(product {p_prod:.2f}, person {p_person:.2f})"
    if outcome == "taken":
        con.say(t, f"   {who} took {what} {sure}")
    elif outcome.startswith("returned"):
        where = " on the wrong shelf: restock" if "wrong" in outcome else ""
        con.say(t, f"   {who} put back {what}{where}")
    elif outcome.startswith("review"):
        con.say(t, f"   {who}: held for review ({outcome[8:]}) {what} {sure}")
    elif outcome.startswith("foreign") or "no cart" in outcome or outcome == "ignored: nobody near":
        con.say(t, f"   shelf change not charged: {outcome}")


def _receipt(con: Console, r: Receipt, stats: DemoStats) -> None:
    stats.receipts += 1
    stats.lines += len(r.lines)
    stats.review += len(r.review)
    stats.money += r.total
    items = "; ".join(f"{ln.qty or ''}{' x ' if ln.qty else ''}{ln.name}{f' {ln.grams:.0f} g' if ln.grams else ''}"
                      f" {con.money(ln.amount)}" for ln in r.lines) or "nothing"
    held = f", {len(r.review)} held for review" if r.review else ""
    con.say(r.left, f"<- {con.label(r.visit)} left: {items} = {con.money(r.total)}{held}")


def _verdict(con: Console, t: float, s: Score) -> None:
    con.say(t, f"against the simulator's truth: F1 {s.f1:.3f}, exact receipts {s.exact_share:.0%}, "
               f"overcharge {s.overcharge_share:.2%}")
