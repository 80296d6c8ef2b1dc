"""The appliance process: its parts started in a readable order and stopped in reverse (DESIGN "Processes").

Start order: the vault (opened from [vault]), the retention schedule, the payments outbox (which
first finishes what a crash left: tokens of answered charges, then every charge not final), the
shop floor with its recorder, and last the source that feeds it. Stopping runs the list
backwards, so no part is ever fed by one that has already stopped: the source stops first, the
outbox finishes the request in flight, retention stops, the vault closes.

A crash at any moment (kill -9, power loss) leaves nothing that the next start cannot finish:
the vault's writes are transactions, every charge row is sent under its own key until answered,
and a replayed source finds its passes, cart lines and closed visits already stored.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from appliance.app.core import CoreLoop, LoopObserver
from appliance.app.recorder import FloorRecorder
from appliance.app.sources import Source
from appliance.config import StoreConfig
from appliance.fusion.loop import ShopFloor
from appliance.gate.clock import Clock, WallClock
from appliance.payments.gateway import PaymentGateway
from appliance.payments.outbox import Outbox
from appliance.vault import Vault
from appliance.vault.schedule import RetentionSchedule

logger = logging.getLogger(__name__)
FLOOR_LOG_KEEP_S = 300.0  # the shop floor's in-memory logs name visits by pass nonce: minutes, like positions


@dataclass(frozen=True, slots=True)
class Part:
    """One part of the process: how to start it and how to stop it."""

    name: str
    start: Callable[[], None]
    stop: Callable[[], None]


class VaultAdmissions:
    """Passes admitted before a restart, as the vault remembers them (for `RestartSafeReplayCache`)."""

    def __init__(self, vault: Callable[[], Vault]) -> None:
        self._vault = vault

    def admitted(self, nonce: str, now: float) -> bool:
        return self._vault().admitted_pass(nonce) is not None


class Appliance:
    """The appliance: vault, retention, outbox, shop floor and a source, wired and run as one process.

    Args:
        config: the store configuration.
        source: what feeds the shop floor (`RecordingSource`, `LiveSource`).
        config_dir: the store.toml's folder (relative [vault] paths are taken from it).
        vault: an open vault to use (then the caller closes it); by default opened from [vault].
        gateway: the processor; by default a StripeGateway from [payments].
        clock: the box's clock for the vault and the outbox (the wall clock by default).
        rng: the outbox's jitter (fresh entropy by default).
        retention: run the retention schedule (at start, then every [vault] retention_interval_min).
        observer: told of exits and charge rows (the latency bench).
    """

    def __init__(
        self,
        config: StoreConfig,
        source: Source,
        *,
        config_dir: Path | None = None,
        vault: Vault | None = None,
        gateway: PaymentGateway | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        retention: bool = True,
        observer: LoopObserver | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self._config_dir = config_dir
        self._given_vault = vault
        self._vault = vault
        self._given_gateway = gateway
        self._gateway = gateway
        self._clock: Clock = clock if clock is not None else WallClock()
        self._rng = rng if rng is not None else random.Random()
        self._retention_on = retention
        self._observer = observer
        self._started: list[Part] = []
        self._stop_source = threading.Event()
        self._source_done = threading.Event()
        self._source_thread: threading.Thread | None = None
        self.source_error: BaseException | None = None
        self.retention: RetentionSchedule | None = None
        self.outbox: Outbox | None = None
        self.recorder: FloorRecorder | None = None
        self.loop: CoreLoop | None = None

    @property
    def vault(self) -> Vault:
        if self._vault is None:
            raise RuntimeError("the appliance has not opened its vault yet")
        return self._vault

    # --- parts, in start order ---------------------------------------------------------------

    def parts(self) -> list[Part]:
        """The parts in the order they start (they stop in reverse)."""
        parts = [Part("vault", self._open_vault, self._close_vault)]
        if self._retention_on:
            parts.append(Part("retention", self._start_retention, self._stop_retention))
        parts += [
            Part("outbox", self._start_outbox, self._stop_outbox),
            Part("shop floor", self._start_floor, lambda: None),
            Part("source", self._start_source, self._stop_source_thread),
        ]
        return parts

    def start(self) -> None:
        """Start every part in order; if one fails, stop those already started (in reverse) and raise."""
        for part in self.parts():
            try:
                part.start()
            except BaseException:
                logger.error("could not start the %s; stopping what was started", part.name)
                self.stop()
                raise
            self._started.append(part)
            logger.debug("%s started", part.name)

    def stop(self) -> None:
        """Stop the started parts in reverse order (each one even if another failed to stop)."""
        while self._started:
            part = self._started.pop()
            try:
                part.stop()
            except Exception as err:  # stopping the rest matters more than this one's error
                logger.error("stopping the %s failed: %s", part.name, err)

    def _open_vault(self) -> None:
        if self._vault is None:
            from appliance.vault.opening import open_vault

            self._vault = open_vault(self.config.vault, config_dir=self._config_dir, clock=self._clock)

    def _close_vault(self) -> None:
        if self._given_vault is None and self._vault is not None:
            self._vault.close()
            self._vault = None

    def _start_retention(self) -> None:
        self.retention = RetentionSchedule(self.vault, self.config.vault.retention_interval_min * 60.0)
        self.retention.start()

    def _stop_retention(self) -> None:
        if self.retention is not None:
            self.retention.stop()

    def _start_outbox(self) -> None:
        if self._gateway is None:
            from appliance.payments.stripe_gateway import gateway_from_settings

            self._gateway = gateway_from_settings(self.config.payments)
        store = self.config.store
        self.outbox = Outbox(
            self.vault,
            self._gateway,
            clock=self._clock,
            rng=self._rng,
            settings=self.config.payments,
            shop=store.name,
            timezone=store.timezone,
        )
        self.outbox.start()

    def _stop_outbox(self) -> None:
        if self.outbox is not None:
            self.outbox.stop()
        close = getattr(self._gateway, "close", None)
        if self._given_gateway is None and callable(close):
            close()

    def _start_floor(self) -> None:
        outbox = self.outbox
        assert outbox is not None
        products = {p.sku: p for p in self.config.products}
        def refund_line(order_ref: str, sku: str, units: int) -> object:
            return outbox.refund_line(order_ref, sku, units=units, reason="returned")

        self.recorder = FloorRecorder(self.vault, products, self.config.store.currency, lambda c: outbox.poke(),
                                      refund_line)
        floor = ShopFloor(self.config, exits_from_gate=self.source.exits_from_gate, listener=self.recorder,
                          keep_log_s=FLOOR_LOG_KEEP_S)
        self.loop = CoreLoop(floor, self.recorder, self._observer)
        self.source.attach(self.recorder.admit)
        if not self.source.replays_from_start:
            self.recorder.close_leftovers(self._clock.now())

    def _start_source(self) -> None:
        self._source_thread = threading.Thread(target=self._feed, name="source", daemon=True)
        self._source_thread.start()

    def _feed(self) -> None:
        loop, recorder = self.loop, self.recorder
        assert loop is not None and recorder is not None
        try:
            self.source.run(loop, self._stop_source)
            if self.source.replays_from_start and not self._stop_source.is_set():
                # The source ran to its end: a visit the vault still holds open was not in it.
                recorder.close_leftovers(loop.floor.now)
        except BaseException as err:
            self.source_error = err
            logger.error("the source stopped with an error: %s: %s", type(err).__name__, err)
        finally:
            self._source_done.set()

    def _stop_source_thread(self) -> None:
        self._stop_source.set()
        if self._source_thread is not None:
            self._source_thread.join()
            self._source_thread = None

    # --- running --------------------------------------------------------------------------------

    def wait_source(self, timeout: float | None = None) -> bool:
        """Wait until the source has ended (a recording played to its end, or stopped by an error)."""
        return self._source_done.wait(timeout)

    def wait(self, settle_timeout_s: float | None = None) -> bool:
        """Wait until the source has ended, then until the outbox has nothing left to send.

        The timeout counts from the source's end (a paced recording may play for hours): False if
        charges are still waiting for the processor then. A live source ends only when stopped.
        """
        self._source_done.wait()
        deadline = None if settle_timeout_s is None else time.monotonic() + settle_timeout_s
        outbox, recorder = self.outbox, self.recorder
        assert outbox is not None and recorder is not None
        while True:
            recorder.settle_returns()  # the source has stopped calling it: a charge paid now may owe a refund
            if not outbox.pending():
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            outbox.poke()
            time.sleep(0.05)

    def run(self, settle_timeout_s: float | None = None) -> bool:
        """Start, let the source run to its end and the outbox settle (see `wait`), stop. True if all settled."""
        self.start()
        try:
            return self.wait(settle_timeout_s) and self.source_error is None
        finally:
            self.stop()
