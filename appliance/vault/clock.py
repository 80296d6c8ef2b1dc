"""Where the vault's sense of "now" comes from: the wall clock live, a hand-moved clock in tests."""

from __future__ import annotations

import math
import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Tells the vault the time in unix seconds; retention and record dates use nothing else."""

    def now(self) -> float:
        """The current time, unix seconds."""
        ...


class SystemClock:
    """The box's wall clock (NTP-disciplined on a real box)."""

    def now(self) -> float:
        """The current wall-clock time, unix seconds."""
        return time.time()


class ManualClock:
    """A clock that only moves when told to: tests and benchmarks jump months instead of sleeping.

    It is a real clock implementation (thread-safe, never runs backwards unless `set` says so),
    not a mock: the vault cannot tell it from the wall clock.
    """

    def __init__(self, start: float) -> None:
        if not math.isfinite(start):
            raise ValueError(f"start must be a finite unix time, got {start!r}")
        self._t = float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """The clock's current time."""
        with self._lock:
            return self._t

    def advance(self, seconds: float) -> float:
        """Move the clock forward by `seconds` (>= 0) and return the new time."""
        if not (math.isfinite(seconds) and seconds >= 0):
            raise ValueError(f"a clock only moves forward by a finite amount, got {seconds!r}")
        with self._lock:
            self._t += seconds
            return self._t

    def set(self, t: float) -> None:
        """Put the clock at `t`, forwards or backwards (for tests of a wrong clock)."""
        if not math.isfinite(t):
            raise ValueError(f"t must be a finite unix time, got {t!r}")
        with self._lock:
            self._t = float(t)
