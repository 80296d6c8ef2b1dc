"""Key periods: which file (and key) a record goes into, and when that key must be destroyed.

Each class kept in period storage gets one database file, under its own key, per calendar day
or month (UTC). A period's key is destroyed once every record that could be in it has expired,
so a backup of the period becomes unreadable at most one period after its last record's limit.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from appliance.vault.policy import Duration, KeyPeriod

_LABEL = {"day": re.compile(r"\d{4}-\d{2}-\d{2}"), "month": re.compile(r"\d{4}-\d{2}")}


@dataclass(frozen=True, slots=True)
class Period:
    """One key period of one class: [start, end) in unix seconds, named like 2024-05 or 2024-05-17."""

    record_class: str
    label: str
    start: int
    end: int

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"period {self.label} ends ({self.end}) before it starts ({self.start})")

    @property
    def key_id(self) -> str:
        """The id of this period's key in the keyring and the audit log (names a period, not key bytes)."""
        return f"{self.record_class}/{self.label}"

    @property
    def index(self) -> int:
        """Days from 1970-01-01 to the period's start: a small number that is unique per class."""
        return self.start // 86400

    def holds(self, t: float) -> bool:
        return self.start <= t < self.end


def period_of(record_class: str, unit: KeyPeriod, t: float) -> Period:
    """The period of `unit` (day or month, UTC) that contains time `t`."""
    if not math.isfinite(t):
        raise ValueError(f"time must be finite, got {t!r}")
    moment = datetime.fromtimestamp(math.floor(t), UTC)
    if unit == "day":
        start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m-%d")
        end_ts = int(start.timestamp()) + 86400
    elif unit == "month":
        start = moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        label = start.strftime("%Y-%m")
        nxt = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
        end_ts = int(nxt.timestamp())
    else:
        raise ValueError(f"key period must be day or month, got {unit!r}")
    return Period(record_class, label, int(start.timestamp()), end_ts)


def period_from_label(record_class: str, unit: KeyPeriod, label: str) -> Period:
    """The period named `label` (as in a file name or key id); ValueError if it is not one."""
    pattern = _LABEL.get(unit)
    if pattern is None or not pattern.fullmatch(label):
        raise ValueError(f"{label!r} does not name a {unit} period")
    fmt = "%Y-%m-%d" if unit == "day" else "%Y-%m"
    try:
        start = datetime.strptime(label, fmt).replace(tzinfo=UTC)
    except ValueError as err:
        raise ValueError(f"{label!r} does not name a {unit} period") from err
    period = period_of(record_class, unit, start.timestamp())
    if period.label != label:
        raise ValueError(f"{label!r} does not name a {unit} period")
    return period


def key_destroy_time(period: Period, retention: Duration) -> int:
    """When the period's key must be gone: the retention after the period's (exclusive) end.

    Every record written in the period was stored before `end`, so all of them have expired by then.
    """
    return math.ceil(retention.after(period.end))


def stored_time(t: float, resolution_s: int = 60) -> int:
    """A record's stored time, floored to `resolution_s` (a minute): no finer than retention needs."""
    if resolution_s <= 0:
        raise ValueError(f"resolution must be positive, got {resolution_s}")
    return math.floor(t / resolution_s) * resolution_s
