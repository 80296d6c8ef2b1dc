"""Replay: run a recording through the same stages as live operation and write the receipts.

Streams are merged in time order and fed in ticks of data time; the wall clock is never read, so
the same recording always gives the same receipts, byte for byte. The output is written to a
temporary file and renamed into place, so a failed or interrupted replay leaves nothing behind.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.events import GateEvent, Receipt, TrackPoint
from appliance.fusion.loop import Decision, RestockAlert, ShopFloor
from appliance.gate.passes import PassClaims, parse_pass_unchecked
from appliance.shelves.inventory import LowStock, PlateStock
from appliance.sim.recording import Recording

# Readings, tracks and gate events reach the shop floor in slices of this much data time, and it
# decides at the end of each. The slices end on whole multiples of TICK_S of unix time (`first_tick`)
# in replay, the live sources and the demo alike: the step detector's events depend on how readings
# are cut into blocks (see its `feed`), so the shop, played back or live, is cut at the same instants.
TICK_S = 0.25


def first_tick(t: float) -> float:
    """The first tick after `t`: the next whole multiple of `TICK_S` (unix seconds). Later ticks are
    this plus whole multiples of `TICK_S`, exact in floating point (a quarter second, on times well
    below 2**40 s)."""
    return (math.floor(t / TICK_S) + 1) * TICK_S

Progress = Callable[[float], None]


class ReplayError(ValueError):
    """The recording cannot be replayed at the level asked for."""


@dataclass(slots=True)
class ReplayResult:
    receipts: list[Receipt]
    restock: list[RestockAlert]
    inventory: list[PlateStock]
    low_stock: list[LowStock]
    decisions: list[Decision]
    level: str
    refunded: list[str]


def merge_streams(gate: list[GateEvent], tracks: Iterable[TrackPoint]) -> Iterator[GateEvent | TrackPoint]:
    """Gate events and track points in time order (a gate event first when times are equal)."""
    gi = 0
    for p in tracks:
        while gi < len(gate) and gate[gi].t <= p.t:
            yield gate[gi]
            gi += 1
        yield p
    yield from gate[gi:]


def tracks_for(rec: Recording, level: str) -> Iterable[TrackPoint]:
    if level == "tracks":
        assert rec.tracks is not None
        return rec.tracks
    from appliance.vision import pipeline  # imported lazily: onnxruntime is heavy

    if level == "detections":
        assert rec.detections is not None
        return pipeline.tracks_from_detections(rec.config, rec.detections)
    from appliance.vision.detector import OnnxDetector

    assert rec.video is not None
    detector = OnnxDetector.from_settings(rec.config.vision)
    frames = pipeline.detections_from_video(rec.config, rec.video, detector)
    return pipeline.tracks_from_detections(rec.config, frames)


def choose_level(rec: Recording, asked: str | None) -> str:
    if asked is None:
        return rec.levels[0]
    if asked not in rec.levels:
        raise ReplayError(f"the recording has no {asked} level (it has: {', '.join(rec.levels)})")
    return asked


def replay(rec: Recording, level: str | None = None, progress: Progress | None = None) -> ReplayResult:
    """Run one recording through the shop-floor loop; returns receipts and what else the box saw."""
    level = choose_level(rec, level)
    exits_from_gate = any(e.kind == "exit" for e in rec.gate)
    floor = ShopFloor(rec.config, exits_from_gate=exits_from_gate)
    receipts: list[Receipt] = []
    w = rec.weights
    start, end = rec.start, rec.end
    claims: dict[int, PassClaims] = {i: parse_pass_unchecked(e.pass_text) for i, e in enumerate(rec.gate)
                                     if e.kind == "entry"}
    gate_index = {id(e): i for i, e in enumerate(rec.gate)}
    stream = merge_streams(rec.gate, tracks_for(rec, level))
    nxt: GateEvent | TrackPoint | None = next(stream, None)
    wi = 0
    tick = first_tick(start)
    last_report = start
    while True:
        while nxt is not None and nxt.t < tick:
            if isinstance(nxt, GateEvent):
                floor.gate(nxt, claims.get(gate_index[id(nxt)]))
            else:
                floor.track(nxt)
            nxt = next(stream, None)
        wj = int(np.searchsorted(w.t, tick, "left"))
        if wj > wi:
            floor.samples(w.block(wi, wj))
            wi = wj
        receipts.extend(floor.advance(tick))
        if progress is not None and tick - last_report >= 60.0:
            progress((tick - start) / max(end - start, 1e-9))
            last_report = tick
        if tick > end and nxt is None and wi >= len(w):
            break
        tick += TICK_S
    receipts.extend(floor.finish(max(end, tick)))
    refunded = {r.visit for r in receipts} & set(floor.refunded)
    receipts = [floor.refunded[r.visit] if r.visit in refunded else r for r in receipts]
    if progress is not None:
        progress(1.0)
    order = {e.pass_text: i for i, e in enumerate(rec.gate) if e.kind == "entry"}
    nonce_order = {parse_pass_unchecked(p).nonce: i for p, i in order.items()}
    receipts.sort(key=lambda r: nonce_order.get(r.visit, len(nonce_order)))
    inventory = floor.inventory.levels(floor.steps)
    return ReplayResult(receipts, floor.restock, inventory, floor.low_stock, floor.decisions, level,
                        sorted(refunded))


def receipts_document(result: ReplayResult) -> dict[str, Any]:
    """The receipts.json content (spec/recording.md): visits named by pass nonce, plus what else was seen."""
    visits = []
    for r in result.receipts:
        review = [
            {"reason": item.reason, "candidates": [{"sku": s, "qty": q} for s, q in item.candidates],
             "t": item.evidence.t, "sensors": list(item.evidence.sensors), "delta_g": item.evidence.delta_g,
             "product_confidence": item.evidence.product_confidence,
             "person_confidence": item.evidence.person_confidence}
            for item in r.review
        ]
        visits.append({
            "pass": r.visit,
            "entered": round(r.entered, 3),
            "left": round(r.left, 3),
            "currency": r.currency,
            "lines": [line.as_json() for line in r.lines],
            "total": r.total,
            "status": "held for review" if review else ("charge" if r.lines else "nothing taken"),
            "refunded_after_exit": r.visit in result.refunded,
            "review": review,
        })
    return {
        "level": result.level,
        "visits": visits,
        "restock": [{"t": round(a.t, 3), "sensor": a.sensor, "sku": a.sku, "qty": a.qty} for a in result.restock],
        "inventory": [{"sku": s.sku, "sensors": list(s.sensors), "units": s.units, "low": s.low}
                      for s in result.inventory],
        "low_stock": [{"t": round(a.t, 3), "sku": a.sku, "units": a.units} for a in result.low_stock],
    }


def write_json_atomic(path: str | Path, doc: Any) -> None:
    """Write JSON deterministically (sorted keys) to a temporary file, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
