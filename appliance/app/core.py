"""The core loop as a source drives it: gate events, tracks and samples in, charges out at each exit.

A source (a recording, or the shop's devices) calls `gate`, `track` and `samples` in time order
and `advance(now)` as data time passes; the shop floor decides, the recorder stores, and every
visit that left becomes a charge row (the recorder then pokes the outbox). One thread (the source's)
drives it; nothing here reads the wall clock.
"""

from __future__ import annotations

import logging
from typing import Protocol

from appliance.app.recorder import FloorRecorder
from appliance.events import GateEvent, Receipt, SampleBlock, TrackPoint
from appliance.fusion.loop import ShopFloor
from appliance.gate.passes import PassError, parse_pass_unchecked
from appliance.vault import Charge, VaultError

logger = logging.getLogger(__name__)


class LoopObserver(Protocol):
    """Told when an exit reaches the loop, when a visit's receipt is ready and when its charge row is written.

    For the latency bench; called on the source's thread, so keep it quick.
    """

    def exit_seen(self, event: GateEvent) -> None: ...
    def receipt_ready(self, receipt: Receipt, now: float) -> None: ...
    def charge_written(self, receipt: Receipt, charge: Charge, now: float) -> None: ...


class CoreLoop:
    """The shop floor and its recorder, fed by one source.

    Args:
        floor: the shop floor (its listener must be `recorder`).
        recorder: stores what the floor decides.
        observer: optional; see LoopObserver.
    """

    def __init__(
        self,
        floor: ShopFloor,
        recorder: FloorRecorder,
        observer: LoopObserver | None = None,
    ) -> None:
        self.floor = floor
        self.recorder = recorder
        self._observer = observer
        self.refused_entries = 0
        self.charges = 0

    def gate(self, event: GateEvent) -> None:
        """An entry whose pass the gate already verified, or an exit."""
        if event.kind == "entry":
            try:
                claims = parse_pass_unchecked(event.pass_text)
            except PassError as err:
                self.refused_entries += 1
                logger.warning("an entry with an unreadable pass was ignored (%s)", err.code)
                return
            self.floor.gate(event, claims)
            return
        if self._observer is not None:
            self._observer.exit_seen(event)
        self.floor.gate(event)

    def track(self, point: TrackPoint) -> None:
        self.floor.track(point)

    def samples(self, block: SampleBlock) -> None:
        self.floor.samples(block)

    def advance(self, now: float) -> None:
        """Let the floor decide what is due at data time `now`; charge every visit that left."""
        self._charge(self.floor.advance(now), now)
        self.recorder.settle_returns()

    def finish(self, end: float) -> None:
        """End of input: decide everything and charge every visit still open."""
        self._charge(self.floor.finish(end), end)
        self.recorder.settle_returns()

    def _charge(self, receipts: list[Receipt], now: float) -> None:
        for receipt in receipts:
            if self._observer is not None:
                self._observer.receipt_ready(receipt, now)
            try:
                charge = self.recorder.visit_left(receipt)
            except (VaultError, ValueError) as err:
                logger.error("a visit's charge could not be written: %s", err)
                continue
            if charge is None:
                continue
            self.charges += 1
            if self._observer is not None:
                self._observer.charge_written(receipt, charge, now)
