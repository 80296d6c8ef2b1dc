"""Admission at the gate: verify what a shopper presents, open the gate, count every refusal.

The same path serves every way in: a pass read by a gate scanner (MQTT), a pass read from a
camera frame (QR), and a card tapped on the gate terminal (turned into a box-signed pass by
`appliance.gate.card`). A refused pass opens nothing, emits nothing and claims no nonce; the only
trace it leaves is one count under its error code in `RejectionCounters`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

from appliance.events import GateEvent
from appliance.gate.clock import Clock
from appliance.gate.passes import CODES, PassClaims, PassError, ReplayCache, verify_pass

logger = logging.getLogger(__name__)


class RejectionCounters:
    """How many passes were refused, per error code (`passes.CODES`). Thread-safe.

    This is everything a refusal leaves behind: no pass text, nonce, token or time.
    """

    def __init__(self) -> None:
        self._counts = dict.fromkeys(CODES, 0)
        self._lock = threading.Lock()

    def count(self, code: str) -> None:
        if code not in self._counts:
            raise ValueError(f"unknown rejection code {code!r}; codes are {', '.join(CODES)}")
        with self._lock:
            self._counts[code] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


@dataclass(frozen=True, slots=True)
class OpenCommand:
    """Let `people` through gate `gate` until `until_ms` (unix ms): the payload of `cmd/open`."""

    gate: str
    people: int
    until_ms: int

    def __post_init__(self) -> None:
        if not 1 <= self.people <= 4:
            raise ValueError(f"people must be 1-4, got {self.people}")

    def as_json(self) -> dict[str, int]:
        return {"people": self.people, "until": self.until_ms}


class GateKeeper:
    """Decides who may enter, and tells the core loop about entries and exits.

    `present()` verifies a pass in the spec's order against the configured issuers and the box's
    clock. Accepted: the nonce is claimed, an `entry` GateEvent carrying the pass text (in memory
    only) goes to `on_event`, and the returned OpenCommand lets the pass's party through for
    `open_for_s` seconds. Refused: the code is counted and None is returned. A longer `open_for_s`
    is kinder to a slow group but lets a tailgater through more easily.

    `passage()` turns the gate's own in/out sensor into events: an `out` becomes an `exit`
    GateEvent; an `in` uses one place of an open admission, and people beyond it are counted as
    `unexpected_in` (the core loop binds people to visits from positions, so nothing else changes).
    """

    def __init__(
        self,
        issuers: Mapping[str, str | bytes],
        clock: Clock,
        on_event: Callable[[GateEvent], None],
        *,
        open_for_s: float = 5.0,
        cache: ReplayCache | None = None,
        counters: RejectionCounters | None = None,
    ) -> None:
        if not 0.5 <= open_for_s <= 60.0:
            raise ValueError(f"open_for_s must be 0.5-60 s, got {open_for_s}")
        self._issuers = dict(issuers)
        self._clock = clock
        self._on_event = on_event
        self._open_for_s = open_for_s
        self._cache = cache if cache is not None else ReplayCache()
        self.counters = counters if counters is not None else RejectionCounters()
        self._places: dict[str, list[list[float]]] = {}
        self._passages = {"in": 0, "out": 0, "unexpected_in": 0}
        self._lock = threading.Lock()

    def add_issuer(self, issuer: str, public_key: str | bytes) -> None:
        """Trust one more issuer (the box's own card issuer); refuses to replace a configured one."""
        if issuer in self._issuers:
            raise ValueError(f"issuer {issuer!r} is already configured; the box's own issuer needs its own id")
        self._issuers[issuer] = public_key

    def present(self, gate: str, text: str, t: float | None = None) -> OpenCommand | None:
        """A pass shown at `gate` (at data time `t`, default now); the open command, or None if refused."""
        now = self._clock.now()
        try:
            claims = verify_pass(text, self._issuers, now, self._cache)
        except PassError as err:
            self.refuse(gate, err.code)
            return None
        return self._admit(gate, text, claims, now, now if t is None else t)

    def refuse(self, gate: str, code: str) -> None:
        """Count a refusal (also used by the card path before a pass exists)."""
        self.counters.count(code)
        logger.info("gate %s refused an entry: %s", gate, code)

    def _admit(self, gate: str, text: str, claims: PassClaims, now: float, t: float) -> OpenCommand:
        until = now + self._open_for_s
        with self._lock:
            self._places.setdefault(gate, []).append([until, float(claims.party)])
        self._on_event(GateEvent(t=t, kind="entry", pass_text=text))
        logger.info("gate %s opened for %s", gate, claims.party)
        return OpenCommand(gate, claims.party, round(until * 1000))

    def passage(self, gate: str, direction: Literal["in", "out"], t: float) -> None:
        """Someone crossed `gate` at data time `t`, going `in` or `out`."""
        if direction == "out":
            with self._lock:
                self._passages["out"] += 1
            self._on_event(GateEvent(t=t, kind="exit"))
            return
        now = self._clock.now()
        with self._lock:
            self._passages["in"] += 1
            places = [p for p in self._places.get(gate, []) if p[0] > now and p[1] > 0]
            if places:
                places[0][1] -= 1
            else:
                self._passages["unexpected_in"] += 1
                logger.info("gate %s: someone came in without an open admission", gate)
            self._places[gate] = [p for p in places if p[1] > 0]

    def passages(self) -> dict[str, int]:
        """Counts of `in`, `out` and `unexpected_in` passages since start."""
        with self._lock:
            return dict(self._passages)
