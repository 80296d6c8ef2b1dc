"""`appliance bench shelves`: the weight pipeline (parse + step detection + product inference) on one core.

A synthetic store of N load cells at R Hz publishes MQTT-format batches (spec/mqtt.md) for a
stretch of data time, with shoppers taking and returning items throughout. The payloads are made
before the clock starts; the timed part is exactly what the box does with them: parse and check
each payload, order the samples, detect steps, and explain each event by products.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.config import StoreConfig, parse_config
from appliance.replay import TICK_S, first_tick
from appliance.shelves.ingest import ShelfIngest
from appliance.shelves.products import Planogram, explain
from appliance.shelves.steps import StepDetector

BATCH = 12


def bench_store(n_sensors: int, seed: int = 7) -> dict[str, Any]:
    """A store of gondolas of 5 shelves x 10 plates, with one product per two plates."""
    rng = np.random.default_rng(seed)
    sensors, products, stock = [], [], []
    per_gondola = 50
    for i in range(n_sensors):
        g, rest = divmod(i, per_gondola)
        shelf, plate = divmod(rest, 10)
        sensors.append({"id": f"g{g + 1}.s{shelf + 1}.p{plate + 1}", "pos": [0.5 + (g % 10) * 1.2 + plate * 0.1,
                        1.0 + (g // 10) * 2.5, 0.3 + 0.35 * shelf], "facing": [0.0, -1.0], "width": 0.1})
    for k in range(0, n_sensors, 2):
        sku = f"sku{k // 2:04d}"
        products.append({"sku": sku, "name": sku, "price": int(rng.integers(5, 50)) * 100,
                         "unit_g": round(float(rng.uniform(30, 1500)), 1)})
        stock.append({"sku": sku, "sensors": [sensors[j]["id"] for j in range(k, min(k + 2, n_sensors))]})
    return {"version": 1, "store": {"name": "bench", "currency": "KRW", "timezone": "Asia/Seoul"},
            "floor": {"size": [13.0, 12.0], "entry": [[0.5, 0.0], [1.5, 0.0]], "exit": [[2.0, 0.0], [3.0, 0.0]]},
            "products": products, "sensors": sensors, "stock": stock}


@dataclass(frozen=True, slots=True)
class ShelfBenchResult:
    sensors: int
    hz: float
    data_s: float
    samples: int
    payloads: int
    events: int
    cpu_s: float
    wall_s: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.cpu_s

    @property
    def realtime_ratio(self) -> float:
        return self.data_s / self.cpu_s


def make_payloads(cfg: StoreConfig, hz: float, seconds: float, picks_per_s: float, seed: int
                  ) -> tuple[list[tuple[float, str, bytes]], int]:
    """Timestamped payloads for every plate, with picks (hand noise, then a unit less) scattered in."""
    rng = np.random.default_rng(seed)
    n = len(cfg.sensors)
    unit = {sid: 0.0 for sid in (s.id for s in cfg.sensors)}
    for st in cfg.stock:
        w = next(p.unit_g for p in cfg.products if p.sku == st.sku) or 100.0
        unit[st.sensors[0]] = w
    t0 = 1_750_000_000.0
    times = t0 + np.arange(int(seconds * hz)) / hz
    base = rng.uniform(800, 4000, n)
    grams = base[:, None] + rng.normal(0, 0.9, (n, times.size))
    n_picks = int(picks_per_s * seconds)
    for _ in range(n_picks):
        i = int(rng.integers(0, n - 1, 1)[0]) // 2 * 2
        at = float(rng.uniform(2, seconds - 4))
        k0, k1 = int(at * hz), int((at + 1.0) * hz)
        grams[i, k0:k1] += 300 + rng.normal(0, 40, k1 - k0)
        grams[i, k1:] -= unit[cfg.sensors[i].id]
    payloads: list[tuple[float, str, bytes]] = []
    ids = [s.id for s in cfg.sensors]
    seqs = [0] * n
    for k in range(0, times.size, BATCH):
        ts_ms = int(times[k] * 1000 + 0.5)
        for i in range(n):
            g = [round(float(v), 1) for v in grams[i, k:k + BATCH]]
            payloads.append((times[min(k + BATCH, times.size) - 1], ids[i],
                             json.dumps({"ts": ts_ms, "seq": seqs[i], "hz": hz, "g": g}).encode()))
            seqs[i] += 1
    return payloads, n_picks


def run_shelf_bench(n_sensors: int = 850, hz: float = 60.0, seconds: float = 60.0, picks_per_s: float = 0.5,
                    seed: int = 7) -> ShelfBenchResult:
    cfg = parse_config(bench_store(n_sensors, seed))
    payloads, _ = make_payloads(cfg, hz, seconds, picks_per_s, seed)
    first = payloads[0][0]
    clock = [int(first * 1000)]
    ingest = ShelfIngest([s.id for s in cfg.sensors], lambda: clock[0])
    det = StepDetector(cfg.sensors, cfg.shelves)
    plan = Planogram(cfg)
    events = 0
    samples = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    next_tick = first_tick(first)  # the box's ticks of data time (live and replay alike)
    for t_end, sensor, body in payloads:
        if t_end >= next_tick:
            clock[0] = int(next_tick * 1000)
            block = ingest.take(next_tick)
            samples += len(block)
            for ev in det.feed(block):
                explain(ev, plan)
                events += 1
            next_tick += TICK_S
        ingest.weight(sensor, body)
    block = ingest.take(float("inf"))
    samples += len(block)
    for ev in det.feed(block) + det.flush():
        explain(ev, plan)
        events += 1
    cpu = time.process_time() - cpu0
    wall = time.perf_counter() - wall0
    return ShelfBenchResult(n_sensors, hz, seconds, samples, len(payloads), events, cpu, wall)


def report(r: ShelfBenchResult) -> str:
    cond = (f"{r.sensors} load cells at {r.hz:g} Hz, {r.data_s:g} s of data, {r.payloads} MQTT batches of "
            f"{BATCH} samples fed in ticks of {TICK_S:g} s, {r.events} shelf events; one process, one thread, "
            f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}")
    return (f"shelves: {r.samples_per_s:,.0f} samples/s on one core (CPU {r.cpu_s:.2f} s, wall {r.wall_s:.2f} s), "
            f"{r.realtime_ratio:.1f}x real time (target >= 10x)\n  conditions: {cond}")
