"""`appliance bench faults`: a simulated day charged through a processor having a bad day, end to end.

The whole appliance (vault, outbox with its worker thread, shop floor, recorder) plays a simulated
day while the sandbox processor answers 500s, 409s, drops its answers after the charge was made,
answers too slowly (the request times out while the charge goes through), and, after the third
visit has left, is down for ten minutes. The box's clock and the processor's are one hand-moved
clock: after the day is played, it is moved to each retry's due time, so the ten minutes pass
in clock time without anyone waiting for them. Then every pass is checked: charged once, none lost.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.app import Appliance, RecordingSource
from appliance.config.model import PaymentSettings
from appliance.events import GateEvent, Receipt
from appliance.gate.clock import ManualClock
from appliance.gate.passes import parse_pass_unchecked
from appliance.payments.faults import Fault
from appliance.payments.outbox import Outbox
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway
from appliance.vault import Charge, RetentionPolicy, Vault

BOX_START = 1_750_000_000.0
OUTAGE_S = 600.0
TRANSPORT_FAULTS = (("error_500", 3), ("conflict_409", 3), ("drop_after_commit", 3))
SLOW_ANSWER_S = 1.0
READ_TIMEOUT_S = 0.5
DRIVE_LIMIT_S = 180.0


@dataclass(frozen=True, slots=True)
class FaultyDay:
    """What happened to a day's charges on a bad processor day."""

    scenario: str
    seed: int
    visits: int
    to_pay: int
    paid: int
    none_due: int
    double_charges: int
    lost_visits: int
    not_final: int
    wrong_amounts: int
    charge_requests: int
    faults_injected: dict[str, int]
    faults_unused: int
    outage_s: float
    box_clock_s: float

    @property
    def clean(self) -> bool:
        return not (self.double_charges or self.lost_visits or self.not_final or self.wrong_amounts) and (
            self.paid == self.to_pay and self.faults_unused == 0
        )

    def line(self) -> str:
        faults = ", ".join(f"{k} x{n}" for k, n in self.faults_injected.items())
        return (
            f"{self.scenario} seed {self.seed}: {self.visits} visits, {self.to_pay} to pay, {self.paid} paid once, "
            f"{self.none_due} with nothing to pay; double charges {self.double_charges}, lost visits "
            f"{self.lost_visits}, not final {self.not_final}, wrong amounts {self.wrong_amounts}; "
            f"{self.charge_requests} charge requests for {self.to_pay} charges through {faults} "
            f"({self.faults_unused} unused) and "
            f"{self.outage_s / 60:.0f} min down ({self.box_clock_s:.0f} s of box clock)"
        )


class _OutageAfter:
    """Takes the processor down for OUTAGE_S once `charges` visits have left (a LoopObserver)."""

    def __init__(self, sandbox: SandboxProcessor, charges: int) -> None:
        self._sandbox = sandbox
        self._left = charges

    def exit_seen(self, event: GateEvent) -> None:
        pass

    def receipt_ready(self, receipt: Receipt, now: float) -> None:
        pass

    def charge_written(self, receipt: Receipt, charge: Charge, now: float) -> None:
        self._left -= 1
        if self._left == 0:
            self._sandbox.inject(Fault("down", seconds=OUTAGE_S))


def drive(outbox: Outbox, clock: ManualClock, limit_s: float = DRIVE_LIMIT_S) -> None:
    """Move the clock to each retry's due time and let the outbox's own thread send, until nothing is pending.

    Waiting here is for the worker thread to finish a pass (wall time), never to move the clock.
    """
    deadline = time.monotonic() + limit_s
    while outbox.pending():
        if time.monotonic() > deadline:
            raise TimeoutError(f"charges still pending after {limit_s:.0f} s of driving the outbox")
        due = outbox.next_due()
        if due is not None and due > clock.now():
            clock.set(due)
        passes = outbox.passes
        outbox.poke()
        while outbox.passes == passes and time.monotonic() < deadline:
            time.sleep(0.002)


def run_faulty_day(scenario: str, seed: int, folder: Path, **overrides: Any) -> FaultyDay:
    """Play one simulated day through the appliance against a faulty sandbox; see the module docstring."""
    from appliance.replay import replay
    from appliance.sim import simulate
    from appliance.sim.live import as_recording

    logging.getLogger("appliance.payments.sandbox_server").setLevel(logging.WARNING)
    recording = as_recording(simulate(scenario, seed, **overrides))
    expected = {r.visit: r.total for r in replay(recording).receipts}
    passes = [parse_pass_unchecked(e.pass_text) for e in recording.gate if e.kind == "entry"]
    clock = ManualClock(BOX_START)
    config = dataclasses.replace(
        recording.config,
        payments=PaymentSettings(read_timeout_s=READ_TIMEOUT_S, connect_timeout_s=0.5, retry_first_s=1.0,
                                 retry_max_s=120.0),
    )  # fmt: skip
    with SandboxProcessor(folder / "processor.db", clock=clock) as sandbox, Vault.open(
        folder / "vault", os.urandom(32), RetentionPolicy.load(), clock
    ) as vault:
        injected: Counter[str] = Counter()
        for kind, times in TRANSPORT_FAULTS:
            sandbox.inject(Fault(kind, times=times))  # type: ignore[arg-type]
            injected[kind] += times
        sandbox.inject(Fault("delay", seconds=SLOW_ANSWER_S))
        injected["slow answer"] += 1
        gateway = StripeGateway("sk_test_faults", sandbox.url, connect_timeout_s=0.5, read_timeout_s=READ_TIMEOUT_S)
        app = Appliance(
            config,
            RecordingSource(recording),
            vault=vault,
            gateway=gateway,
            clock=clock,
            rng=random.Random(seed),
            retention=False,
            observer=_OutageAfter(sandbox, 3),
        )
        app.start()
        try:
            if not app.wait_source(DRIVE_LIMIT_S) or app.source_error is not None:
                raise RuntimeError(f"the day did not play: {app.source_error}")
            assert app.outbox is not None
            drive(app.outbox, clock)
        finally:
            app.stop()
            gateway.close()
        per_ref = sandbox.ledger.summary()["per_order_ref"]
        charges = {c.order_ref: c for c in vault.charges()}
        lost = not_final = wrong = paid = none_due = 0
        for claims in passes:
            known = vault.admitted_pass(claims.nonce)
            charge = None if known is None else vault.charge_for_visit(known.visit)
            if charge is None:
                lost += 1
                continue
            not_final += not charge.final
            wrong += charge.amount != expected.get(claims.nonce, -1)
            paid += charge.state == "succeeded" and per_ref.get(charge.order_ref) == 1
            none_due += charge.state == "none_due"
        double = sum(n - 1 for n in per_ref.values() if n > 1) + sum(1 for ref in per_ref if ref not in charges)
        return FaultyDay(
            scenario=scenario,
            seed=seed,
            visits=len(passes),
            to_pay=sum(1 for amount in expected.values() if amount > 0),
            paid=paid,
            none_due=none_due,
            double_charges=double,
            lost_visits=lost,
            not_final=not_final,
            wrong_amounts=wrong,
            charge_requests=sandbox.requests.get("POST /v1/payment_intents", 0),
            faults_injected=dict(injected),
            faults_unused=sandbox.faults.unused(),
            outage_s=OUTAGE_S,
            box_clock_s=clock.now() - BOX_START,
        )
