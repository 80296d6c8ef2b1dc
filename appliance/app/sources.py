"""What feeds the core loop: a recording played back (tests, the crash harness, benchmarks) or the shop itself.

Both drive the same `CoreLoop` from one thread, in data-time ticks and in time order, exactly as
`appliance replay` does; only where the data comes from differs.

- `RecordingSource` plays a recording as fast as possible or paced against the wall clock. A
  recording is a durable log of what the devices said, so after a crash it is simply played again
  from its start: the recorder recognises what it already stored (`replays_from_start`).
- `LiveSource` listens to the gates (`GateLink`: scans, card taps, passages) and the shelves
  (`MqttShelfSource`) over MQTT. What the devices said before a restart is gone, so visits left
  open by a crash are closed at start with the cart lines stored before it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from appliance.config import StoreConfig
from appliance.events import GateEvent, SampleBlock, TrackPoint
from appliance.gate.admission import GateKeeper
from appliance.gate.card import CardDesk
from appliance.gate.clock import Clock, WallClock
from appliance.gate.mqtt import GateLink
from appliance.gate.passes import PassClaims, ReplayCache, parse_pass_unchecked
from appliance.replay import TICK_S, first_tick, merge_streams
from appliance.shelves.ingest import MqttShelfSource, ShelfIngest

if TYPE_CHECKING:
    from appliance.sim.recording import Recording


logger = logging.getLogger(__name__)

# How much data time the live source works through tick by tick after a pause; past that (the box's
# clock stepped forward, say at the first time sync after boot) it jumps to this much before now.
CATCH_UP_MAX_S = 60.0



class Feed(Protocol):
    """What a source drives: the core loop (or anything else that takes the floor's inputs in time order)."""

    def gate(self, event: GateEvent) -> None: ...
    def track(self, point: TrackPoint) -> None: ...
    def samples(self, block: SampleBlock) -> None: ...
    def advance(self, now: float) -> None: ...
    def finish(self, end: float) -> None: ...


class Admit(Protocol):
    """Stores a pass's visit before the gate opens for it (`FloorRecorder.admit`)."""

    def __call__(self, claims: PassClaims, entered_at: float) -> str: ...


class Source(Protocol):
    """Feeds a CoreLoop until its data ends or `stop` is set."""

    replays_from_start: bool
    exits_from_gate: bool

    def attach(self, admit: Admit) -> None:
        """Called once before `run`: how to store a visit at the gate (sources with a live gate use it)."""
        ...

    def run(self, loop: Feed, stop: threading.Event) -> None: ...


class RecordingSource:
    """Plays a recording (at its tracks level) through the core loop.

    Args:
        recording: the recording.
        speed: times real time; 0 plays as fast as the loop goes.
        monotonic: the wall clock used only to pace (never seen by the loop).
    """

    replays_from_start = True

    def __init__(
        self, recording: Recording, *, speed: float = 0.0, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        if recording.tracks is None:
            raise ValueError("the appliance plays recordings at the tracks level; this one has no tracks.csv")
        if speed < 0:
            raise ValueError(f"speed must be >= 0, got {speed}")
        self.recording = recording
        self.speed = speed
        self._monotonic = monotonic
        self.exits_from_gate = any(e.kind == "exit" for e in recording.gate)
        self.finished = False

    def attach(self, admit: Admit) -> None:
        """A recording's gate opened long ago: its visits are stored as the floor sees them."""

    def run(self, loop: Feed, stop: threading.Event) -> None:
        rec = self.recording
        assert rec.tracks is not None
        w = rec.weights
        start, end = rec.start, rec.end
        stream = merge_streams(rec.gate, rec.tracks)
        nxt: GateEvent | TrackPoint | None = next(stream, None)
        wi = 0
        wall0 = self._monotonic()
        tick = first_tick(start)
        while True:
            if self.speed > 0:
                ahead = wall0 + (tick - start) / self.speed - self._monotonic()
                if ahead > 0 and stop.wait(ahead):
                    return
            if stop.is_set():
                return  # stopped mid-recording: visits stay open, as after a crash
            while nxt is not None and nxt.t < tick:
                if isinstance(nxt, GateEvent):
                    loop.gate(nxt)
                else:
                    loop.track(nxt)
                nxt = next(stream, None)
            wj = int(np.searchsorted(w.t, tick, "left"))
            if wj > wi:
                loop.samples(w.block(wi, wj))
                wi = wj
            loop.advance(tick)
            if tick > end and nxt is None and wi >= len(w):
                break
            tick += TICK_S
        loop.finish(max(end, tick))
        self.finished = True


class AdmittedPasses(Protocol):
    """Whether a pass nonce was admitted before (the vault's record, across restarts)."""

    def admitted(self, nonce: str, now: float) -> bool: ...


class RestartSafeReplayCache(ReplayCache):
    """A replay cache that also refuses passes admitted before the box restarted (see `AdmittedPasses`)."""

    def __init__(self, before: AdmittedPasses) -> None:
        super().__init__()
        self._before = before

    def claim(self, nonce: str, exp: int, now: float) -> bool:
        if self._before.admitted(nonce, now):
            return False
        return super().claim(nonce, exp, now)


class LiveSource:
    """The shop's own devices over MQTT: gate scans, card taps and passages, and shelf weights.

    Every `tick_s` of wall time it applies what arrived, in time order and tick by tick of data
    time, up to `lag_s` ago (so a message a little late still lands in order): see `catch_up`.

    Args:
        config: the store (issuers, sensors, shop id, [mqtt]).
        password: the appliance's broker password (read from [mqtt] password_file by the caller).
        cache: the gate's replay cache (restart-safe: `RestartSafeReplayCache`).
        clock: the box's clock.
        card_gates: gates with a card terminal; empty disables card entry.
    """

    replays_from_start = False
    exits_from_gate = True

    def __init__(
        self,
        config: StoreConfig,
        *,
        password: str,
        cache: ReplayCache,
        clock: Clock | None = None,
        card_gates: Sequence[str] = (),
        tick_s: float = TICK_S,
        lag_s: float = 0.5,
    ) -> None:
        self._config = config
        self._password = password
        self._clock = clock if clock is not None else WallClock()
        self._tick_s = tick_s
        self._lag_s = lag_s
        self._events: queue.Queue[GateEvent] = queue.Queue()
        self._admit: Admit | None = None
        self.keeper = GateKeeper(
            {name: issuer.public_key for name, issuer in config.issuers.items()},
            self._clock,
            self._gate_event,
            cache=cache,
        )
        self._card_gates = tuple(card_gates)
        self.ingest = ShelfIngest([s.id for s in config.sensors], lambda: int(self._clock.now() * 1000))
        self.ready = threading.Event()
        self._held: list[GateEvent] = []  # gate events waiting for their tick
        self._next_tick: float | None = None

    def attach(self, admit: Admit) -> None:
        self._admit = admit

    def _gate_event(self, event: GateEvent) -> None:
        """From the gate link's thread, before the open command goes out: an entry's visit is stored first.

        If storing fails this raises, and the gate stays shut (the link logs and counts it).
        """
        if event.kind == "entry" and self._admit is not None:
            self._admit(parse_pass_unchecked(event.pass_text), event.t)
        self._events.put(event)

    def run(self, loop: Feed, stop: threading.Event) -> None:
        mqtt = self._config.mqtt
        shop = self._config.store.id
        link = GateLink(
            self.keeper,
            shop=shop,
            gates=self._card_gates,
            host=mqtt.host,
            port=mqtt.port,
            username=mqtt.username,
            password=self._password,
            clock=self._clock,
            card_desk=CardDesk() if self._card_gates else None,
        )
        shelves = MqttShelfSource(self.ingest, shop, mqtt.host, mqtt.port, mqtt.username, self._password)
        link.start()
        try:
            shelves.start()
            if not shelves.connected.wait(10.0):
                raise ConnectionError(f"the broker at {mqtt.host}:{mqtt.port} did not accept the shelf subscriber")
            self.ready.set()
            while not stop.wait(self._tick_s):
                shelves.pump()
                self.catch_up(loop, self._clock.now() - self._lag_s)
        finally:
            shelves.stop()
            link.stop()

    def catch_up(self, loop: Feed, now: float) -> None:
        """Apply what has arrived, one tick of data time at a time, up to the last tick at or before
        `now`: the same ticks (`first_tick`) as a replay of the same readings, whenever this runs,
        so the live shop cuts its readings where a replay of them would and decides alike. After a
        jump of the clock it works through at most `CATCH_UP_MAX_S` (what arrived before goes in the
        first block), not a tick for every quarter second of the jump."""
        while True:
            try:
                self._held.append(self._events.get_nowait())
            except queue.Empty:
                break
        if self._next_tick is None:
            self._next_tick = first_tick(now) - TICK_S
        elif now - self._next_tick > CATCH_UP_MAX_S:
            logger.warning("the clock moved %.0f s ahead at once; the shop floor skips to %.0f s before now",
                           now - self._next_tick, CATCH_UP_MAX_S)
            self._next_tick = first_tick(now - CATCH_UP_MAX_S)
        while self._next_tick <= now:
            tick = self._next_tick
            due = sorted((e for e in self._held if e.t < tick), key=lambda e: e.t)
            self._held = [e for e in self._held if e.t >= tick]
            for event in due:
                loop.gate(event)
            block = self.ingest.take(tick)
            if len(block):
                loop.samples(block)
            loop.advance(tick)
            self._next_tick = tick + TICK_S
