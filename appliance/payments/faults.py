"""Faults the sandbox processor can be told to inject, so the outbox is tested against bad days.

- `delay`: holds the request `seconds` before working on it; the key is in use meanwhile, so a
  concurrent retry gets 409. The eventual answer is saved under the key.
- `error_500`: answers 500 `api_error` without working on the request; nothing is saved.
- `conflict_409`: answers 409 without working on the request; nothing is saved.
- `drop_after_commit`: works on the request, saves the answer, then closes the connection
  without sending it (the charge exists; only a retry with the same key learns so).
- `decline`: declines charges of `token` (`card_declined`, with `decline_code`); saved.
- `authentication_required`: answers charges of `token` with `authentication_required` (the
  shopper must confirm in the app); saved.
- `down`: from now, for `seconds` of the sandbox's clock, accepts and drops every connection.

`times` limits how many requests a fault hits (None: until cleared). `path` (request path prefix)
and `method` choose the requests the transport faults apply to; `token` is the pass token
(`cus_x/pm_y`) or just the payment method id.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

FaultKind = Literal[
    "delay", "error_500", "conflict_409", "drop_after_commit", "decline", "authentication_required", "down"
]
KINDS: tuple[str, ...] = (
    "delay",
    "error_500",
    "conflict_409",
    "drop_after_commit",
    "decline",
    "authentication_required",
    "down",
)
_TRANSPORT = ("delay", "error_500", "conflict_409", "drop_after_commit")
_CARD = ("decline", "authentication_required")


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault rule; see the module table."""

    kind: FaultKind
    times: int | None = 1
    path: str = "/v1/payment_intents"
    method: str = "POST"
    token: str = ""
    seconds: float = 0.0
    decline_code: str = "generic_decline"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"fault kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.times is not None and self.times < 1:
            raise ValueError(f"times must be >= 1 or None (always), got {self.times}")
        if self.kind in _CARD and not self.token:
            raise ValueError(f"a {self.kind} fault needs the token it applies to")
        if self.kind in ("delay", "down") and not self.seconds > 0:
            raise ValueError(f"a {self.kind} fault needs seconds > 0")

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Fault:
        """Build from the admin endpoint's JSON; raises ValueError naming the bad field."""
        allowed = {"kind", "times", "path", "method", "token", "seconds", "decline_code"}
        unknown = set(obj) - allowed
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
        kind = obj.get("kind")
        if not isinstance(kind, str):
            raise ValueError("kind is required")
        times = obj.get("times", 1)
        if times is not None and (isinstance(times, bool) or not isinstance(times, int)):
            raise ValueError("times must be an integer or null")
        seconds = obj.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise ValueError("seconds must be a number")
        strings = {k: obj[k] for k in ("path", "method", "token", "decline_code") if k in obj}
        for key, value in strings.items():
            if not isinstance(value, str):
                raise ValueError(f"{key} must be a string")
        return cls(kind, times, seconds=float(seconds), **strings)  # type: ignore[arg-type]


class FaultPlan:
    """The faults in force; thread-safe. Each matching request uses up one of a fault's `times`."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._down_until = float("-inf")
        self._lock = threading.Lock()

    def add(self, fault: Fault, now: float) -> None:
        with self._lock:
            if fault.kind == "down":
                self._down_until = max(self._down_until, now + fault.seconds)
            else:
                self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()
            self._down_until = float("-inf")

    def unused(self) -> int:
        """How many more requests the counted faults (`times` not None) would hit."""
        with self._lock:
            return sum(f.times for f in self._faults if f.times is not None)

    def is_down(self, now: float) -> bool:
        with self._lock:
            return now < self._down_until

    def _take(self, match: Any) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if match(fault):
                    if fault.times is not None:
                        if fault.times == 1:
                            del self._faults[i]
                        else:
                            self._faults[i] = replace(fault, times=fault.times - 1)
                    return fault
        return None

    def transport(self, method: str, path: str) -> Fault | None:
        """The first transport fault (delay, 500, 409, drop) for this request, used up by one."""
        return self._take(lambda f: f.kind in _TRANSPORT and f.method == method and path.startswith(f.path))

    def card(self, customer: str, payment_method: str) -> Fault | None:
        """A decline or authentication fault for this token, used up by one."""
        token = f"{customer}/{payment_method}"
        return self._take(lambda f: f.kind in _CARD and f.token in (token, payment_method))
