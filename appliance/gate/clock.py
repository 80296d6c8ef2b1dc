"""The box's clock as an injected Protocol: the wall clock, and a clock moved by hand for tests.

Stages take their time from the data; the few places that need "now" (pass validity, the ten-
minute timestamp rule, the sandbox processor's 24-hour key memory) take a Clock, so tests move
time instead of sleeping.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Where "now" comes from."""

    def now(self) -> float:
        """Unix seconds."""
        ...


class WallClock:
    """The system clock (SNTP-synced on a box)."""

    def now(self) -> float:
        return time.time()


class ManualClock:
    """A clock that moves only when told to; thread-safe."""

    def __init__(self, start: float) -> None:
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> float:
        """Move forward by `seconds` (never back); returns the new time."""
        if seconds < 0:
            raise ValueError(f"a clock only moves forward, got {seconds}")
        with self._lock:
            self._t += seconds
            return self._t

    def set(self, t: float) -> None:
        """Jump to `t` (forward only)."""
        with self._lock:
            if t < self._t:
                raise ValueError(f"a clock only moves forward: {t} is before {self._t}")
            self._t = float(t)
