"""Load-cell ingest: MQTT weight batches (spec/mqtt.md) checked, sequenced and turned into sample blocks.

A shelf controller publishes a batch of consecutive samples per plate a few times a second. Each
payload is validated strictly; a malformed one (not JSON, wrong types, NaN or infinite grams, a
batch over 1,000 samples, a timestamp more than ten minutes from the box's clock) is dropped and
counted for its sensor, never raised. Sequence numbers reveal gaps, duplicates and reordering.
Accepted batches are buffered and handed to the step detector as one `SampleBlock` per tick, in
time order, which is what lets the detector work on all plates at once.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from appliance.events import SampleBlock

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_CLOCK_SKEW_MS = 10 * 60 * 1000
STATUSES = ("ready", "lost", "alert")
_SAMPLE_TYPES = {float, int, type(None)}


class PayloadError(ValueError):
    """A payload the box drops; `reason` is a short code counted per sensor."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class WeightBatch:
    """A checked batch: `grams` has NaN where the controller sent null (a fault)."""

    sensor: str
    ts_ms: int
    seq: int
    hz: float
    grams: np.ndarray

    def times(self) -> np.ndarray:
        return self.ts_ms / 1000.0 + np.arange(self.grams.size) / self.hz


def _reject_constant(name: str) -> Any:
    raise PayloadError("not_finite", f"{name} is not a number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _check(payload: bytes, now_ms: int) -> tuple[int, int, float, list[Any]]:
    """Shape and type checks of a weight payload; returns (ts, seq, hz, g) with g unconverted."""
    try:
        doc = _DECODER.decode(payload.decode("utf-8"))
    except PayloadError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise PayloadError("not_json", "payload is not JSON") from err
    if type(doc) is not dict:
        raise PayloadError("bad_shape", "payload must be a JSON object")
    ts, seq, hz, g = doc.get("ts"), doc.get("seq"), doc.get("hz"), doc.get("g")
    if type(ts) is not int:
        raise PayloadError("bad_ts", "ts must be integer milliseconds")
    if type(seq) is not int or seq < 0:
        raise PayloadError("bad_seq", "seq must be a non-negative integer")
    if isinstance(hz, bool) or not isinstance(hz, (int, float)) or not 0 < hz <= 1000:
        raise PayloadError("bad_hz", "hz must be a number in (0, 1000]")
    if type(g) is not list or not g:
        raise PayloadError("bad_g", "g must be a non-empty list")
    if len(g) > MAX_BATCH:
        raise PayloadError("too_long", f"a batch holds at most {MAX_BATCH} samples, got {len(g)}")
    if abs(ts - now_ms) > MAX_CLOCK_SKEW_MS:
        raise PayloadError("clock", "ts is more than ten minutes from the box's clock")
    if not {type(v) for v in g} <= _SAMPLE_TYPES:
        raise PayloadError("bad_g", "g must hold numbers or null")
    return ts, seq, float(hz), g


def parse_weight(sensor: str, payload: bytes, now_ms: int) -> WeightBatch:
    """Check one `.../shelf/<sensor>/weight` payload; raises PayloadError with a reason code."""
    ts, seq, hz, g = _check(payload, now_ms)
    grams = np.array(g, dtype=np.float64)  # null becomes NaN: a fault sample
    if np.isinf(grams).any():
        raise PayloadError("not_finite", "g holds an infinite value")
    return WeightBatch(sensor, ts, seq, hz, grams)


@dataclass(slots=True)
class SensorCounters:
    """Per-sensor health: batches accepted and dropped by reason, and sequence anomalies."""

    accepted: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    gaps: int = 0
    duplicates: int = 0
    reordered: int = 0
    last_seq: int = -1
    status: str = ""


class ShelfIngest:
    """Turns weight payloads into time-ordered sample blocks for the step detector.

    Args:
        sensor_ids: the store's sensors, in configuration order (blocks use their indices).
        clock_ms: the box's clock in unix milliseconds, used only to reject absurd timestamps.
    """

    def __init__(self, sensor_ids: Sequence[str], clock_ms: Callable[[], int]) -> None:
        self.index = {sid: i for i, sid in enumerate(sensor_ids)}
        self.clock_ms = clock_ms
        self.counters: dict[str, SensorCounters] = {sid: SensorCounters() for sid in sensor_ids}
        self.unknown_sensors: dict[str, int] = {}
        self._ts: list[float] = []
        self._hz: list[float] = []
        self._n: list[int] = []
        self._sensor: list[int] = []
        self._g: list[Any] = []
        self._held: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def weight(self, sensor: str, payload: bytes) -> bool:
        """Take one payload; returns whether it was accepted (dropped ones are counted)."""
        c = self.counters.get(sensor)
        if c is None:
            self.unknown_sensors[sensor] = self.unknown_sensors.get(sensor, 0) + 1
            if self.unknown_sensors[sensor] == 1:
                logger.warning("weights from unknown sensor %r are dropped", sensor[:64])
            return False
        try:
            ts, seq, hz, g = _check(payload, self.clock_ms())
        except PayloadError as err:
            self._drop(c, sensor, err.reason)
            return False
        if seq == c.last_seq:
            c.duplicates += 1
            return False
        if c.last_seq >= 0:
            if seq < c.last_seq:
                c.reordered += 1
            elif seq > c.last_seq + 1:
                c.gaps += seq - c.last_seq - 1
        c.last_seq = max(c.last_seq, seq)
        c.accepted += 1
        self._ts.append(ts / 1000.0)
        self._hz.append(hz)
        self._n.append(len(g))
        self._sensor.append(self.index[sensor])
        self._g.extend(g)
        return True

    def _drop(self, c: SensorCounters, sensor: str, reason: str) -> None:
        c.dropped[reason] = c.dropped.get(reason, 0) + 1
        if sum(c.dropped.values()) == 1:
            logger.warning("sensor %s: malformed payload dropped (%s)", sensor, reason)

    def status(self, sensor: str, payload: bytes) -> None:
        """A retained status message: log a change once (lost once, and once again when back)."""
        c = self.counters.get(sensor)
        text = payload.decode("utf-8", "replace").strip().strip('"')
        if c is None or text not in STATUSES or text == c.status:
            return
        if text == "ready" and c.status:
            logger.info("sensor %s is back", sensor)
        elif text != "ready":
            logger.warning("sensor %s reports %s", sensor, text)
        c.status = text

    def _convert(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Turn the batches taken since the last call into columns (vectorised), dropping any batch
        that holds an infinite value."""
        n = np.asarray(self._n, dtype=np.int64)
        grams = np.array(self._g, dtype=np.float64)
        first = np.repeat(np.asarray(self._ts), n)
        step = np.repeat(1.0 / np.asarray(self._hz), n)
        offset = np.arange(grams.size) - np.repeat(np.cumsum(n) - n, n)
        t = first + offset * step
        s = np.repeat(np.asarray(self._sensor, dtype=np.int64), n)
        inf = np.isinf(grams)
        if inf.any():
            batch = np.repeat(np.arange(n.size), n)
            bad = np.unique(batch[inf])
            keep = ~np.isin(batch, bad)
            ids = list(self.index)
            for b in bad:
                c = self.counters[ids[self._sensor[b]]]
                c.accepted -= 1
                self._drop(c, ids[self._sensor[b]], "not_finite")
            t, s, grams = t[keep], s[keep], grams[keep]
        self._ts, self._hz, self._n, self._sensor, self._g = [], [], [], [], []
        return t, s, grams

    def take(self, before: float) -> SampleBlock:
        """All buffered samples taken before `before` (unix seconds), sorted by time."""
        parts = [self._held] if self._held is not None else []
        if self._n:
            parts.append(self._convert())
        self._held = None
        if not parts:
            return SampleBlock(np.empty(0), np.empty(0, dtype=np.int64), np.empty(0))
        t = np.concatenate([p[0] for p in parts])
        s = np.concatenate([p[1] for p in parts])
        g = np.concatenate([p[2] for p in parts])
        now = t < before
        if not now.all():
            later = ~now
            self._held = (t[later], s[later], g[later])
            t, s, g = t[now], s[now], g[now]
        order = np.argsort(t, kind="stable")
        return SampleBlock(t[order], s[order], g[order])


class MqttShelfSource:
    """Subscribes to the shelves' MQTT topics and feeds a ShelfIngest (paho-mqtt, its own thread).

    Messages are queued by paho's network thread and applied by whoever calls `pump()`, so the
    ingest itself is only ever touched by one thread.
    """

    def __init__(self, ingest: ShelfIngest, shop: str, host: str, port: int, username: str, password: str) -> None:
        import paho.mqtt.client as mqtt

        self.ingest = ingest
        self.shop = shop
        self._queue: queue.Queue[tuple[str, str, bytes]] = queue.Queue(maxsize=100_000)
        self.connected = threading.Event()  # set once the subscriptions are in place
        self.overflow = 0
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"appliance-shelves-{shop}",
                                   protocol=mqtt.MQTTv311)
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._host, self._port = host, port

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
        if getattr(reason, "is_failure", False):
            logger.warning("broker refused the shelves subscriber: %s", reason)
            return
        client.subscribe([(f"shop/{self.shop}/shelf/+/weight", 0), (f"shop/{self.shop}/shelf/+/status", 1)])

    def _on_subscribe(self, client: Any, userdata: Any, mid: Any, reasons: Any, props: Any = None) -> None:
        self.connected.set()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        parts = msg.topic.split("/")
        if len(parts) != 5:
            return
        try:
            self._queue.put_nowait((parts[3], parts[4], bytes(msg.payload)))
        except queue.Full:
            self.overflow += 1

    def start(self) -> None:
        self._client.connect(self._host, self._port)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()

    def pump(self) -> int:
        """Apply every queued message to the ingest; returns how many were applied."""
        n = 0
        while True:
            try:
                sensor, kind, payload = self._queue.get_nowait()
            except queue.Empty:
                return n
            if kind == "weight":
                self.ingest.weight(sensor, payload)
            elif kind == "status":
                self.ingest.status(sensor, payload)
            n += 1
