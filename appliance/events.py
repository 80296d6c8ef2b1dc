"""The event vocabulary: plain, frozen data that flows between the appliance's stages.

Nothing here has logic beyond validating its own values. Times are unix seconds taken from the
data (sensor, frame or gate timestamps), never from the wall clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def _finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


@dataclass(frozen=True, slots=True)
class SampleBlock:
    """A run of load-cell readings from any number of sensors, in time order.

    `sensor` holds indices into the store's sensor list; `grams` is NaN where the sensor
    reported a fault. Blocks are the unit of work of the shelf pipeline: a batch from MQTT and a
    slice of a recording both become one.
    """

    t: FloatArray
    sensor: IntArray
    grams: FloatArray

    def __post_init__(self) -> None:
        n = self.t.shape[0]
        if self.t.ndim != 1 or self.sensor.shape != (n,) or self.grams.shape != (n,):
            raise ValueError(
                f"t, sensor and grams must be 1-d of one length, got {self.t.shape}, "
                f"{self.sensor.shape}, {self.grams.shape}"
            )

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class PlateChange:
    """One plate's settled weight change inside a shelf event.

    `t_start`/`t_end` span this plate's own steps when it had any (None for a change read from a
    plate that stayed below its thresholds): in an event that joins several shoppers' picks at
    neighbouring plates, each pick keeps its own moment.

    `noise_g` is the plate's scatter of a single reading; `delta_sd_g` is the standard error of
    `delta_g` itself, from the readings that were averaged into the levels before and after the
    change (None when the producer does not know it: then it is judged from `noise_g`).
    """

    sensor: str
    delta_g: float
    noise_g: float
    t_start: float | None = None
    t_end: float | None = None
    delta_sd_g: float | None = None

    def __post_init__(self) -> None:
        _finite("delta_g", self.delta_g)
        if not (self.noise_g >= 0 and math.isfinite(self.noise_g)):
            raise ValueError(f"noise_g must be finite and >= 0, got {self.noise_g!r}")
        if self.delta_sd_g is not None and not (self.delta_sd_g >= 0 and math.isfinite(self.delta_sd_g)):
            raise ValueError(f"delta_sd_g must be finite and >= 0, got {self.delta_sd_g!r}")
        if (self.t_start is None) != (self.t_end is None):
            raise ValueError("a plate change has both t_start and t_end or neither")
        if self.t_start is not None and self.t_end is not None:
            _finite("t_start", self.t_start)
            _finite("t_end", self.t_end)
            if self.t_end < self.t_start:
                raise ValueError(f"t_end {self.t_end} is before t_start {self.t_start}")


@dataclass(frozen=True, slots=True)
class ShelfEvent:
    """A settled weight change on one plate or on neighbouring plates of one shelf.

    `t_start` is when the weight first left its stable level (a hand arrived); `t_end` is when
    it settled again. A negative total means something was taken.
    """

    t_start: float
    t_end: float
    changes: tuple[PlateChange, ...]

    def __post_init__(self) -> None:
        _finite("t_start", self.t_start)
        _finite("t_end", self.t_end)
        if self.t_end < self.t_start:
            raise ValueError(f"t_end {self.t_end} is before t_start {self.t_start}")
        if not self.changes:
            raise ValueError("a shelf event needs at least one plate change")

    @property
    def delta_g(self) -> float:
        return sum(c.delta_g for c in self.changes)

    @property
    def sensors(self) -> tuple[str, ...]:
        return tuple(c.sensor for c in self.changes)

    @property
    def main_plate(self) -> str:
        """The plate that changed most (where the hand was, for a unit across a seam)."""
        return max(self.changes, key=lambda c: abs(c.delta_g)).sensor


@dataclass(frozen=True, slots=True)
class TrackPoint:
    """Where one tracked person is on the floor (metres), and their shelf-side hand if known.

    `stature` is the person's height as the cameras measured it at `t` (metres), when the box's own
    vision tracker saw their whole figure; it stays in memory (never in tracks.csv or a log).
    """

    t: float
    track: str
    x: float
    y: float
    hand: tuple[float, float, float] | None = None
    stature: float | None = None

    def __post_init__(self) -> None:
        _finite("t", self.t)
        _finite("x", self.x)
        _finite("y", self.y)
        if not self.track:
            raise ValueError("track id must not be empty")
        if self.hand is not None:
            if len(self.hand) != 3:
                raise ValueError(f"hand must be (x, y, z), got {self.hand!r}")
            for v in self.hand:
                _finite("hand", v)
        if self.stature is not None:
            _finite("stature", self.stature)


@dataclass(frozen=True, slots=True)
class GateEvent:
    """The gate accepted a pass (`entry`) or registered someone leaving (`exit`)."""

    t: float
    kind: Literal["entry", "exit"]
    pass_text: str = ""
    track: str = ""

    def __post_init__(self) -> None:
        _finite("t", self.t)
        if self.kind not in ("entry", "exit"):
            raise ValueError(f"gate event must be entry or exit, got {self.kind!r}")
        if self.kind == "entry" and not self.pass_text:
            raise ValueError("an entry needs the pass it was opened with")


@dataclass(frozen=True, slots=True)
class Detections:
    """Person boxes one camera's detector found in one frame: rows of (left, top, w, h, score)."""

    t: float
    camera: str
    boxes: FloatArray

    def __post_init__(self) -> None:
        _finite("t", self.t)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 5:
            raise ValueError(f"boxes must have shape (n, 5), got {self.boxes.shape}")


@dataclass(frozen=True, slots=True)
class Evidence:
    """Why a cart line exists: the weight change and how sure each decision was."""

    t: float
    sensors: tuple[str, ...]
    delta_g: float
    product_confidence: float
    person_confidence: float
    note: str = ""


@dataclass(frozen=True, slots=True)
class CartChange:
    """Units (or grams of a by-weight product) added to (+) or removed from (-) one visit's cart."""

    visit: str
    sku: str
    qty: int
    grams: float
    evidence: Evidence

    def __post_init__(self) -> None:
        if not self.visit or not self.sku:
            raise ValueError("a cart change needs a visit and a sku")
        if self.qty == 0 and self.grams == 0:
            raise ValueError("a cart change must change something")


@dataclass(frozen=True, slots=True)
class ReviewItem:
    """A line the box was not sure of: held back from the charge until a person decides."""

    visit: str
    reason: str
    candidates: tuple[tuple[str, int], ...]
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    """One line of an itemised receipt."""

    sku: str
    name: str
    qty: int
    grams: float
    amount: int

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"sku": self.sku, "name": self.name}
        if self.grams:
            out["grams"] = round(self.grams, 1)
        else:
            out["qty"] = self.qty
        out["amount"] = self.amount
        return out


@dataclass(frozen=True, slots=True)
class Receipt:
    """What the box charges one visit on its own, with what it held back for review."""

    visit: str
    entered: float
    left: float
    currency: str
    lines: tuple[ReceiptLine, ...]
    review: tuple[ReviewItem, ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)
