"""The outbox of shared/spec/payments.md: every visit's charge sent exactly once, and refunds the same way.

Step 1 is the vault's: `Vault.close_visit` writes the charge row (random order reference, random
idempotency key, `pending`) in the transaction that closes the cart. This worker does the rest:

2. It sends pending charges through a `PaymentGateway` and retries network errors, timeouts, 409,
   429 and 5xx with exponential backoff and full jitter, always under the row's key and always as
   an identical request: the receipt is sealed deterministically from the charge's own secret
   (`Vault.receipt_seed`), so even a retry after a restart carries the same bytes.
3. A definite answer (`succeeded`, `declined`, `requires_action`, `failed`) is written, and only
   then is the token destroyed. Refunds go by the processor's reference of the charge, so no
   refund ever needs the token: it goes as soon as the answer is stored.
4. On start-up every charge that is not final is sent again (the processor replays its first
   answer for the key; a charge whose key may be forgotten is looked up by order reference first,
   see `attempt_charge`), and tokens left by a crash after step 3 are destroyed.

`declined` and `requires_action` ("awaiting shopper") are final for the outbox: never re-sent,
and never under a new key (the box has no way to make one). The owner sees them
(`appliance.payments.status`). A charge awaiting the shopper is looked up now and then by its
order reference, so that once the shopper confirms it in their app the box records it as paid.

A refund follows the same discipline: its row, with its own key, is written (`refund_line`,
`refund_visit`) before anything is sent, then the worker re-sends it under that key until the
processor answers.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import re
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

from appliance.config.model import PaymentSettings
from appliance.events import Receipt
from appliance.gate.clock import Clock
from appliance.payments.attempts import attempt_charge, outcome_of, retry_delay
from appliance.payments.gateway import (
    ChargeOutcome,
    ChargeRequest,
    PaymentGateway,
    ProcessorConfigError,
    ProcessorError,
    RefundRequest,
)
from appliance.payments.receipts import ReceiptError, receipt_document, seal_receipt
from appliance.payments.refunds import LineRefund, RefundError, line_units, plan_line_refund, plan_visit_refund
from appliance.vault import Charge, ChargeStateError, Refund, UnknownRecordError, Vault, VaultError
from appliance.vault.crashpoints import crash_point
from appliance.vault.records import FAILED, PENDING, REQUIRES_ACTION, SUCCEEDED

logger = logging.getLogger(__name__)

CRASH_POINTS = ("charge.sending", "charge.answered", "charge.stored", "refund.recorded", "refund.answered")
"""The outbox's named crash points, in the order a charge (then a refund) passes them."""

AWAITING_CHECK_S = 900.0
AWAITING_DAYS = 7
_CODE = re.compile(r"[a-z0-9_]{1,40}")
_PROCESSOR_REF = re.compile(r"[A-Za-z0-9_.:/-]{1,96}")


def error_code(code: str) -> str:
    """A processor's error code as the vault stores it: a short lower-case code, or `processor_error`."""
    code = code.strip().lower()
    return code if _CODE.fullmatch(code) else ("processor_error" if code else "")


def processor_ref(ref: str) -> str:
    """A processor's id as the vault stores it (anything else is dropped rather than stored)."""
    return ref if _PROCESSOR_REF.fullmatch(ref) else ""


@dataclass(slots=True)
class _Retry:
    """When a row may be tried again, and how many times it has waited already."""

    attempts: int
    due: float


@dataclass(frozen=True, slots=True)
class OutboxPass:
    """What one pass of the worker did: requests sent, definite answers stored, rows still waiting."""

    sent: int
    answered: int
    waiting: int


class Outbox:
    """Sends the vault's pending charges and refunds to the processor until each has a definite answer.

    Args:
        vault: where the charge and refund rows are.
        gateway: the processor.
        clock: the box's clock (backoff due times, the day-old look-up rule); tests move it by hand.
        rng: the jitter's random source (seeded in tests).
        settings: `[payments]`: backoff bounds and the look-up age.
        shop: the shop's name, printed on sealed receipts.
        timezone: the shop's time zone, for the receipt's times.
        idle_s: how often the worker looks at the vault when nothing wakes it; it is woken at once by
            `poke()` when a visit closes, so this only bounds how late a row written by another
            process is noticed.
        awaiting_check_s: how often charges awaiting the shopper are looked up (by order reference,
            never re-sent) to learn whether the shopper confirmed in the app; shorter tells the
            owner sooner but asks the processor more often.
    """

    def __init__(
        self,
        vault: Vault,
        gateway: PaymentGateway,
        *,
        clock: Clock,
        rng: random.Random,
        settings: PaymentSettings | None = None,
        shop: str = "",
        timezone: str = "UTC",
        idle_s: float = 5.0,
        awaiting_check_s: float = AWAITING_CHECK_S,
    ) -> None:
        if not idle_s > 0 or not awaiting_check_s > 0:
            raise ValueError(f"idle_s and awaiting_check_s must be positive, got {idle_s!r}, {awaiting_check_s!r}")
        self._vault = vault
        self._gateway = gateway
        self._clock = clock
        self._rng = rng
        self._settings = settings if settings is not None else PaymentSettings()
        self._shop = shop
        self._timezone = timezone
        self._idle_s = idle_s
        self._awaiting_check_s = awaiting_check_s
        self._next_awaiting_check = -math.inf
        self._retry: dict[str, _Retry] = {}
        self.passes = 0
        self._unreachable = False
        self._refused = False
        self._lock = threading.Lock()  # one pass at a time (the worker, or a caller of run_once)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    # --- the worker -------------------------------------------------------------------------

    def start(self) -> None:
        """Finish what a crash left (tokens of final charges), then send in a background thread."""
        if self._thread is not None:
            raise RuntimeError("the outbox is already running")
        self.recover()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="payments-outbox", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the request in flight (if any); rows not yet answered stay pending for the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def poke(self) -> None:
        """A charge or refund row was just written: look now instead of at the next idle wake-up."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.run_once()
            except VaultError as err:
                logger.error("the outbox could not read or write the vault: %s", err)
            self._wake.wait(self._sleep_s())

    def _sleep_s(self) -> float:
        with self._lock:
            if not self._retry:
                return self._idle_s
            soonest = min(r.due for r in self._retry.values())
        return min(self._idle_s, max(0.0, soonest - self._clock.now()))

    def recover(self) -> int:
        """Destroy tokens of charges already final (a crash between storing an answer and the token going)."""
        refs = self._vault.final_charges_with_tokens()
        for ref in refs:
            self._vault.destroy_token(ref)
        if refs:
            logger.info("destroyed %s payment tokens of charges answered before a restart", len(refs))
        return len(refs)

    def next_due(self) -> float | None:
        """When the earliest row waiting for a retry may be tried again (None: nothing is waiting)."""
        with self._lock:
            return min((r.due for r in self._retry.values()), default=None)

    def pending(self) -> int:
        """Charges and refunds not answered yet."""
        return len(self._vault.charges(states={PENDING})) + len(self._vault.refunds(states={PENDING}))

    def run_once(self) -> OutboxPass:
        """Send every pending charge and refund that is due now; returns what happened."""
        with self._lock:
            now = self._clock.now()
            sent = answered = waiting = 0
            charges = self._vault.charges(states={PENDING})
            refunds = self._vault.refunds(states={PENDING})
            live = {c.order_ref for c in charges} | {r.id for r in refunds}
            for gone in set(self._retry) - live:
                del self._retry[gone]
            for charge in charges:
                if self._due(charge.order_ref, now):
                    sent += 1
                    answered += self._guarded(charge.order_ref, now, functools.partial(self._send_charge, charge, now))
            for refund in refunds:
                if self._due(refund.id, now):
                    sent += 1
                    answered += self._guarded(refund.id, now, functools.partial(self._send_refund, refund, now))
            waiting = len(charges) + len(refunds) - answered
            if now >= self._next_awaiting_check:
                self._next_awaiting_check = now + self._awaiting_check_s
                try:
                    self.check_awaiting(now)
                except VaultError as err:
                    logger.error("charges awaiting the shopper could not be checked: %s", err)
            self.passes += 1
            return OutboxPass(sent, answered, waiting)

    def check_awaiting(self, now: float) -> int:
        """Look up charges awaiting the shopper (never re-send them); store the ones the shopper settled.

        Only charges of the last AWAITING_DAYS are asked about: after that the processor has long
        cancelled the attempt, and the owner follows it up (`payments status`). Returns how many changed.
        """
        changed = 0
        for charge in self._vault.charges(states={REQUIRES_ACTION}):
            if charge.created_at < now - AWAITING_DAYS * 86400.0:
                continue
            try:
                records = self._gateway.find(charge.order_ref)
            except ProcessorError:
                return changed  # no answer now; the next check asks again
            try:
                outcome = outcome_of(records)
            except ProcessorError:
                continue  # the processor is still working on it
            if outcome is None or outcome.status == REQUIRES_ACTION:
                continue
            self._vault.set_charge_state(
                charge.order_ref, outcome.status, processor_ref=processor_ref(outcome.processor_ref)
            )
            logger.info("visit %s, awaiting the shopper, is now %s", charge.visit, outcome.status)
            changed += 1
        return changed

    def _guarded(self, row: str, now: float, send: Callable[[], int]) -> int:
        """Send one row; a vault error on it (a damaged row, a full disk) holds that row back, not the others."""
        try:
            return send()
        except VaultError as err:
            logger.error("a payment row could not be read or written; it waits and is tried again: %s", err)
            self._later(row, now, None)
            return 0

    def _due(self, row: str, now: float) -> bool:
        retry = self._retry.get(row)
        return retry is None or retry.due <= now

    def _later(self, row: str, now: float, err: ProcessorError | None) -> None:
        retry = self._retry.get(row)
        attempts = 0 if retry is None else retry.attempts
        s = self._settings
        self._retry[row] = _Retry(attempts + 1, now + retry_delay(attempts, s.retry_first_s, s.retry_max_s, self._rng))
        if err is None:
            return
        if isinstance(err, ProcessorConfigError):
            if not self._refused:
                logger.error("the processor refuses the box's credentials; charges wait until the owner fixes it")
                self._refused = True
        elif not self._unreachable:
            logger.warning("no answer from the processor (%s); charges wait and are retried with their keys", err)
            self._unreachable = True

    def _answered(self, row: str) -> None:
        self._retry.pop(row, None)
        if self._unreachable or self._refused:
            logger.info("the processor answers again")
            self._unreachable = self._refused = False

    # --- charges ------------------------------------------------------------------------------

    def _send_charge(self, charge: Charge, now: float) -> int:
        ref = charge.order_ref
        token = self._vault.payment_token(ref)
        if token is None:
            # The visit brought no token (or the retention engine took it): nothing can ever be sent.
            self._settle(charge, ChargeOutcome("failed", code="no_token"))
            return 1
        receipt = self._receipt(charge)
        request = ChargeRequest(ref, token, charge.amount, charge.currency, charge.idempotency_key, receipt)
        crash_point("charge.sending")
        try:
            outcome = attempt_charge(
                self._gateway,
                request,
                first_sent_at=float(charge.created_at),
                now=now,
                lookup_after_s=self._settings.lookup_after_h * 3600.0,
            )
        except ProcessorError as err:
            self._later(ref, now, err)
            return 0
        crash_point("charge.answered")
        self._answered(ref)
        self._settle(charge, outcome)
        return 1

    def _settle(self, charge: Charge, outcome: ChargeOutcome) -> None:
        """Store the definite answer, then destroy the token (in this order: a crash between leaves a token
        that `recover` destroys, never a final charge whose token was lost before its answer)."""
        try:
            self._vault.set_charge_state(
                charge.order_ref,
                outcome.status,
                processor_ref=processor_ref(outcome.processor_ref),
                error_code=error_code(outcome.code),
            )
        except ChargeStateError as err:
            # Someone else settled it first (the retention engine failing an expired token).
            logger.warning("charge of visit %s was settled elsewhere: %s", charge.visit, err)
            return
        crash_point("charge.stored")
        self._vault.destroy_token(charge.order_ref)
        if outcome.status == SUCCEEDED:
            logger.info("visit %s paid: %s %s", charge.visit, charge.amount, charge.currency)
        else:
            logger.warning("visit %s not paid: %s (%s)", charge.visit, outcome.status, error_code(outcome.code))

    def _receipt(self, charge: Charge) -> str | None:
        """The itemised receipt sealed to the pass's rk, the same text on every attempt; None without an rk."""
        rk = self._vault.receipt_key(charge.order_ref)
        seed = self._vault.receipt_seed(charge.order_ref) if rk is not None else None
        visit = self._vault.visit(charge.visit)
        if rk is None or seed is None or visit is None:
            return None
        left = visit.left_at if visit.left_at is not None else charge.created_at
        receipt = Receipt(charge.visit, float(visit.entered_at), float(left), charge.currency, charge.lines)
        document = receipt_document(receipt, shop=self._shop, timezone=self._timezone, order_ref=charge.order_ref)
        try:
            return seal_receipt(document, rk, seed=seed)
        except ReceiptError as err:
            # Deterministic too: the same charge is refused the same way on every attempt.
            logger.warning("visit %s is charged without its sealed receipt: %s", charge.visit, err)
            return None

    # --- refunds ------------------------------------------------------------------------------

    def refund_line(self, order_ref: str, sku: str, *, units: int = 1, reason: str = "not_taken") -> Refund:
        """Give back `units` of one receipt line (a by-weight line is one unit: all of it).

        The refund row, with its own idempotency key, is written before anything is sent; the
        worker sends it. Raises RefundError (nothing left, no such line), UnknownRecordError or
        ChargeStateError (the charge was not paid).
        """
        charge, earlier = self._refundable(order_ref)
        index = [i for i, line in enumerate(charge.lines) if line.sku == sku]
        if len(index) != 1:
            raise RefundError(f"{sku!r} is not a line of this charge's receipt")
        plan = plan_line_refund(
            charge.lines,
            [LineRefund(index[0], units)],
            charged=charge.amount,
            refunded_total=sum(r.amount for r in earlier),
            refunded_units=self._refunded_units(charge, earlier),
        )
        refund = self._vault.record_refund(order_ref, amount=plan.amount, sku=sku, qty=units, reason=reason)
        crash_point("refund.recorded")
        self.poke()
        return refund

    def refund_visit(self, order_ref: str, *, reason: str = "goodwill") -> Refund:
        """Give back everything of a visit's charge not refunded yet (written first, then sent)."""
        charge, earlier = self._refundable(order_ref)
        plan = plan_visit_refund(
            charge.lines,
            charged=charge.amount,
            refunded_total=sum(r.amount for r in earlier),
            refunded_units=self._refunded_units(charge, earlier),
        )
        refund = self._vault.record_refund(order_ref, amount=plan.amount, reason=reason)
        crash_point("refund.recorded")
        self.poke()
        return refund

    def _refundable(self, order_ref: str) -> tuple[Charge, list[Refund]]:
        charge = self._vault.charge(order_ref)
        if charge is None:
            raise UnknownRecordError(f"no charge {order_ref}")
        if charge.state != SUCCEEDED:
            raise ChargeStateError(f"the charge is {charge.state_label}; only a paid charge can be refunded")
        earlier = [r for r in self._vault.refunds(order_ref) if r.state != FAILED]
        return charge, earlier

    @staticmethod
    def _refunded_units(charge: Charge, earlier: Collection[Refund]) -> dict[int, int]:
        index = {line.sku: i for i, line in enumerate(charge.lines)}
        done: dict[int, int] = {}
        for r in earlier:
            if r.sku in index:
                i = index[r.sku]
                done[i] = min(line_units(charge.lines[i]), done.get(i, 0) + max(r.qty, 1))
        return done

    def _send_refund(self, refund: Refund, now: float) -> int:
        charge = self._vault.charge(refund.order_ref)
        if charge is None or not charge.processor_ref:
            self._vault.set_refund_state(refund.id, FAILED, error_code="no_processor_ref")
            return 1
        try:
            outcome = self._gateway.refund(RefundRequest(charge.processor_ref, refund.amount, refund.idempotency_key))
        except ProcessorError as err:
            self._later(refund.id, now, err)
            return 0
        crash_point("refund.answered")
        self._answered(refund.id)
        state = SUCCEEDED if outcome.status in ("succeeded", "pending") else FAILED
        self._vault.set_refund_state(
            refund.id, state, processor_ref=processor_ref(outcome.refund_ref), error_code=error_code(outcome.code)
        )
        logger.info("refund %s of visit %s: %s", refund.id, charge.visit, state)
        return 1
