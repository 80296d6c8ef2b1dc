"""What simulated people do to the shelves: timed presses, lifts, placements, scoops and handovers.

A shopper's plan is a list of these acts. Presses are pure forces (a hand pushing, a palm resting,
a scoop digging); lifts and placements move units, which is decided later, in time order, against
what is really on the shelf at that moment (appliance/sim/stock.py).
"""

from __future__ import annotations

from dataclasses import dataclass

Split = tuple[tuple[int, float], ...]


@dataclass(frozen=True, slots=True)
class Press:
    """A force on plates from t0 to t1: `force_g` at full strength, shaped by `wobble`.

    `wobble` holds (relative amplitude, frequency Hz, phase) terms of the hand's tremor; `split`
    divides the force between plates the way the pressed package or palm rests on them.
    """

    person: str
    t0: float
    t1: float
    force_g: float
    split: Split
    rise_s: float
    wobble: tuple[tuple[float, float, float], ...]
    kind: str = "hand"

    def __post_init__(self) -> None:
        if not self.t1 > self.t0:
            raise ValueError(f"a press must end after it starts, got {self.t0}..{self.t1}")


@dataclass(frozen=True, slots=True)
class Lift:
    """A person lifts one unit of `key` (a product key, or a foreign item's name) near `s` on a shelf."""

    person: str
    t: float
    dur: float
    shelf: int
    s: float
    key: str


@dataclass(frozen=True, slots=True)
class Place:
    """A person sets down a held unit of `key` at `s` on a shelf; it lands with a brief impact."""

    person: str
    t: float
    dur: float
    shelf: int
    s: float
    key: str
    impact: float
    impact_tau: float


@dataclass(frozen=True, slots=True)
class Scoop:
    """Loose goods leave a bin (grams > 0) or are poured back into it (grams < 0)."""

    person: str
    t: float
    dur: float
    column: int
    grams: float


@dataclass(frozen=True, slots=True)
class Give:
    """A person hands a held unit of `key` to another person standing next to them."""

    person: str
    t: float
    to: str
    key: str


@dataclass(frozen=True, slots=True)
class Reach:
    """A hand travelling to a shelf point and back: out t0..t_on, held there, back t_off..t1."""

    person: str
    t0: float
    t_on: float
    t_off: float
    t1: float
    target: tuple[float, float, float]
    shoulder: tuple[float, float, float]


Act = Press | Lift | Place | Scoop | Give
