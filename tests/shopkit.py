"""A tiny hand-built shop for unit tests: one shelf of plates, scripted readings and positions.

Not a simulator: each test states exactly what happens (who stands where, which plate changes by
how much), so a failure points at one decision of the loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.config import StoreConfig, parse_config
from appliance.events import GateEvent, SampleBlock, ShelfEvent, TrackPoint
from appliance.fusion.loop import FloorListener, ShopFloor
from appliance.gate.passes import issue_pass, parse_pass_unchecked, public_key_b64
from appliance.shelves.steps import StepDetector, stock_partners

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
T0 = 1_700_000_000.0


def store_raw(plates: int = 8, products: list[dict[str, Any]] | None = None,
              stock: list[dict[str, Any]] | None = None, width: float = 0.1) -> dict[str, Any]:
    """One gondola along y = 4.0 facing -y, plates `width` wide from x = 1.0; entry/exit on y = 0."""
    sensors = [{"id": f"g1.s1.p{i + 1}", "pos": [1.0 + width * i, 4.0, 1.0], "facing": [0.0, -1.0],
                "width": width, "tare_g": 500.0} for i in range(plates)]
    products = products or [
        {"sku": "cola", "name": "Cola 500 ml", "price": 1500, "unit_g": 521.0, "unit_sd_g": 2.0},
        {"sku": "cider", "name": "Cider 500 ml", "price": 1400, "unit_g": 515.0, "unit_sd_g": 2.0},
        {"sku": "gum", "name": "Gum", "price": 900, "unit_g": 32.0, "unit_sd_g": 0.5},
        {"sku": "water1l", "name": "Water 1 L", "price": 1200, "unit_g": 1040.0, "unit_sd_g": 3.0},
    ]
    stock = stock or [
        {"sku": "cola", "sensors": ["g1.s1.p1", "g1.s1.p2"]},
        {"sku": "cider", "sensors": ["g1.s1.p3"]},
        {"sku": "gum", "sensors": ["g1.s1.p4"]},
        {"sku": "water1l", "sensors": ["g1.s1.p6", "g1.s1.p7"]},
    ]
    return {
        "version": 1,
        "store": {"name": "Test shop", "currency": "KRW", "timezone": "Asia/Seoul"},
        "floor": {"size": [6.0, 5.0], "entry": [[0.5, 0.0], [1.5, 0.0]], "exit": [[2.0, 0.0], [3.0, 0.0]]},
        "products": products,
        "sensors": sensors,
        "stock": stock,
        "issuers": {"demo-pay": {"public_key": public_key_b64(KEY)}},
    }


def make_pass(nonce: str, t: float, party: int = 1) -> str:
    return issue_pass(KEY, {"iss": "demo-pay", "tok": "cus_x/pm_y", "iat": int(t), "exp": int(t) + 300,
                            "nonce": nonce, "party": party})


@dataclass
class Script:
    """What happens in the test shop, in data time: readings per plate and positions per person."""

    config: StoreConfig
    rate: float = 20.0
    noise: float = 0.8
    seed: int = 1
    levels: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    hands: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    walks: dict[str, list[tuple[float, float, float]]] = field(default_factory=dict)
    gate: list[GateEvent] = field(default_factory=list)
    ready_at: dict[str, float] = field(default_factory=dict)
    reaches: dict[str, list[tuple[float, float, tuple[float, float, float]]]] = field(default_factory=dict)
    dead: dict[str, float] = field(default_factory=dict)  # plate -> time from which it reports only faults
    plate_noise: dict[str, float] = field(default_factory=dict)  # plate -> its own scatter (else `noise`)

    @classmethod
    def shop(cls, **kw: Any) -> Script:
        return cls(parse_config(store_raw(**kw)))

    def set_level(self, sensor: str, t: float, grams: float, press: tuple[float, float] | None = None) -> None:
        """From time t the plate reads `grams`; `press` = (seconds, extra grams) of hand before."""
        self.levels.setdefault(sensor, []).append((t, grams))
        if press is not None:
            self.hands.setdefault(sensor, []).append((t - press[0], t, press[1]))

    def change(self, sensor: str, t: float, delta: float, press: tuple[float, float] | None = (1.0, 300.0)) -> None:
        before = self.level_at(sensor, t)
        self.set_level(sensor, t, before + delta, press)

    def level_at(self, sensor: str, t: float) -> float:
        pts = sorted(self.levels.get(sensor, [(0.0, 1500.0)]))
        level = 1500.0
        for ti, g in pts:
            if ti <= t:
                level = g
        return level

    def walk(self, track: str, points: list[tuple[float, float, float]]) -> None:
        """A person's path: (t, x, y) waypoints, walked linearly; reported at 10 Hz."""
        self.walks[track] = points

    def reach(self, track: str, t0: float, t1: float, hand: tuple[float, float, float]) -> None:
        """The tracker reports `track`'s hand at `hand` (x, y, z) from t0 to t1."""
        self.reaches.setdefault(track, []).append((t0, t1, hand))

    def enter(self, nonce: str, t: float, party: int = 1, track: str = "") -> None:
        self.gate.append(GateEvent(t, "entry", make_pass(nonce, t, party), track))

    def leave(self, t: float, track: str = "") -> None:
        self.gate.append(GateEvent(t, "exit", "", track))

    def samples(self, t0: float, t1: float) -> SampleBlock:
        rng = np.random.default_rng(self.seed)
        ts, ss, gs = [], [], []
        ids = [s.id for s in self.config.sensors]
        times = np.arange(t0, t1, 1.0 / self.rate)
        for i, sid in enumerate(ids):
            g = np.array([self.level_at(sid, t) for t in times])
            for a, b, extra in self.hands.get(sid, []):
                on = (times >= a) & (times < b)
                g[on] += extra + rng.normal(0, 40.0, on.sum())
            g += rng.normal(0, self.plate_noise.get(sid, self.noise), times.size)
            if sid in self.dead:
                g[times >= self.dead[sid]] = np.nan
            ts.append(times)
            ss.append(np.full(times.size, i))
            gs.append(g)
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return SampleBlock(t[order], np.concatenate(ss)[order].astype(np.int64), np.concatenate(gs)[order])

    def shelf_events(self, t1: float, partners: bool = False) -> list[ShelfEvent]:
        """Step detection alone over [T0, T0 + t1), fed in quarter-second blocks as the loop feeds it;
        `partners` tells it which plates share a product (as the shop floor does)."""
        sensors = self.config.sensors
        det = StepDetector(sensors, self.config.shelves,
                           stock_partners(sensors, self.config.stock) if partners else None)
        block = self.samples(T0, T0 + t1)
        out: list[ShelfEvent] = []
        for k in np.arange(0.25, t1 + 0.25, 0.25):
            sel = (block.t >= T0 + k - 0.25) & (block.t < T0 + k)
            out += det.feed(SampleBlock(block.t[sel], block.sensor[sel], block.grams[sel]))
        return out + det.flush()

    def points(self) -> list[TrackPoint]:
        out = []
        for track, pts in self.walks.items():
            tt = np.array([p[0] for p in pts])
            for t in np.arange(tt[0], tt[-1] + 1e-9, 0.1):
                x = float(np.interp(t, tt, [p[1] for p in pts]))
                y = float(np.interp(t, tt, [p[2] for p in pts]))
                hand = next((h for a, b, h in self.reaches.get(track, []) if a <= t <= b), None)
                out.append(TrackPoint(round(float(t), 3), track, x, y, hand))
        return sorted(out, key=lambda p: (p.t, p.track))

    def run(self, t0: float, t1: float, keep_log_s: float | None = None, listener: FloorListener | None = None,
            ) -> tuple[ShopFloor, dict[str, dict[str, int]]]:
        """Run the loop over [t0, t1); returns it and each visit's charged units {nonce: {sku: qty}}."""
        floor = ShopFloor(self.config, exits_from_gate=any(e.kind == "exit" for e in self.gate), keep_log_s=keep_log_s,
                          listener=listener)
        block = self.samples(t0, t1)
        stream = sorted([(e.t, 0, e) for e in self.gate] + [(p.t, 1, p) for p in self.points()],
                        key=lambda x: (x[0], x[1]))
        receipts = []
        k = 0
        for tick in np.arange(t0 + 0.25, t1 + 0.25, 0.25):
            while k < len(stream) and stream[k][0] < tick:
                item = stream[k][2]
                if isinstance(item, GateEvent):
                    claims = parse_pass_unchecked(item.pass_text) if item.kind == "entry" else None
                    floor.gate(item, claims)
                else:
                    floor.track(item)
                k += 1
            sel = (block.t >= tick - 0.25) & (block.t < tick)
            floor.samples(SampleBlock(block.t[sel], block.sensor[sel], block.grams[sel]))
            done = floor.advance(float(tick))
            self.ready_at.update({r.visit: float(tick) for r in done})
            receipts += done
        receipts += floor.finish(t1)
        charged = {r.visit: {ln.sku: ln.qty for ln in r.lines} for r in receipts}
        self.receipts = receipts
        return floor, charged


def shopper(s: Script, track: str, x: float, t_in: float, t_at: float, t_out: float) -> None:
    """Walk in at the entry, stand in front of x from t_at to t_out - 4, walk out through the exit."""
    s.walk(track, [(t_in, 1.0, 0.3), (t_at, x, 3.45), (t_out - 4.0, x, 3.45), (t_out, 2.5, 0.2),
                   (t_out + 1, 2.5, -0.5)])


def shoppers(s: Script, *people: tuple[str, float, float, float]) -> None:
    """Shoppers on passes of their own, each (nonce, x, t_in, t_out): in at T0 + t_in, standing in
    front of x from 5 s later, out at T0 + t_out; tracks t1, t2, ..."""
    for k, (nonce, x, t_in, t_out) in enumerate(people, start=1):
        s.enter(nonce, T0 + t_in)
        shopper(s, f"t{k}", x, T0 + t_in, T0 + t_in + 5, T0 + t_out)
        s.leave(T0 + t_out)


def side_by_side(s: Script, nonces: tuple[str, str], x: float) -> None:
    """Two shoppers on passes of their own stand right in front of x, from T0 + 6 to T0 + 18 and 19
    (tracks t1, t2): whichever of them takes from the plate there, the box cannot tell who did."""
    shoppers(s, (nonces[0], x, 1.0, 22.0), (nonces[1], x, 2.0, 23.0))


def take_a_cola_and_leave(s: Script, nonce: str, until: float) -> tuple[dict[str, dict[str, int]], float]:
    """One shopper on pass `nonce` stands at the cola (p1) from T0 + 6, takes one at T0 + 9 and walks
    out at T0 + 20; the loop runs to `until`. Returns what each visit was charged and when this
    one's receipt was ready."""
    s.enter(nonce, T0 + 1)
    shopper(s, "t1", 1.05, T0 + 1, T0 + 6, T0 + 20)
    s.change("g1.s1.p1", T0 + 9, -521.0)
    s.leave(T0 + 20)
    _, charged = s.run(T0, until)
    return charged, s.ready_at[nonce]
