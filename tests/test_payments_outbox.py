"""The outbox: each closed visit charged once through faults and restarts, refunds written before they are sent."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.config.model import PaymentSettings
from appliance.events import ReceiptLine
from appliance.gate.clock import ManualClock
from appliance.gate.sealed import public_bytes
from appliance.payments.faults import Fault
from appliance.payments.outbox import Outbox, error_code, processor_ref
from appliance.payments.receipts import open_receipt
from appliance.payments.refunds import RefundError
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.status import format_status, payments_status
from appliance.payments.stripe_gateway import StripeGateway
from appliance.vault import Charge, ChargeStateError, RetentionPolicy, Vault

VISA = "cus_demo/pm_card_visa"
LINES = (ReceiptLine("8801", "Banana milk", 2, 0.0, 3400), ReceiptLine("8802", "Kimbap", 1, 0.0, 3500),
         ReceiptLine("8803", "Walnuts", 0, 212.5, 2125))  # fmt: skip
SETTINGS = PaymentSettings(retry_first_s=2.0, retry_max_s=60.0)


@pytest.fixture
def vault(tmp_path: Path, sandbox: SandboxProcessor) -> Iterator[Vault]:
    with Vault.open(tmp_path / "vault", bytes(range(1, 33)), RetentionPolicy.load(), sandbox.clock) as v:
        yield v


@pytest.fixture
def gateway(sandbox: SandboxProcessor) -> Iterator[StripeGateway]:
    g = StripeGateway("sk_test_outbox", sandbox.url, connect_timeout_s=0.5, read_timeout_s=0.5)
    yield g
    g.close()


def clock_of(sandbox: SandboxProcessor) -> ManualClock:
    assert isinstance(sandbox.clock, ManualClock)
    return sandbox.clock


def an_outbox(vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor, seed: int = 1) -> Outbox:
    return Outbox(vault, gateway, clock=clock_of(sandbox), rng=random.Random(seed), settings=SETTINGS,
                  shop="Corner Seven", timezone="Asia/Seoul")  # fmt: skip


def close_a_visit(vault: Vault, token: str | None = VISA, rk: bytes | None = None,
                  lines: tuple[ReceiptLine, ...] = LINES) -> Charge:  # fmt: skip
    now = vault.clock.now()
    visit = vault.open_visit(entered_at=now - 300, party=1, token=token, receipt_key=rk)
    return vault.close_visit(visit, left_at=now, lines=lines, amount=sum(ln.amount for ln in lines), currency="KRW")


def drain(outbox: Outbox, clock: ManualClock, limit: int = 200) -> int:
    """Run passes until nothing is pending, moving the clock to each retry's due time; returns passes made."""
    for n in range(limit):
        outbox.run_once()
        if outbox.pending() == 0:
            return n + 1
        due = outbox.next_due()
        assert due is not None, "rows are pending but none is scheduled"
        if due > clock.now():
            clock.set(due)
    raise AssertionError("the outbox never finished")


def wait_until(done: Callable[[], bool], limit_s: float = 20.0) -> None:
    """Wait for another thread's work to show (never to move time: the box's clock is moved by hand)."""
    deadline = time.monotonic() + limit_s
    while not done():
        assert time.monotonic() < deadline, "gave up waiting"
        time.sleep(0.01)


def intents(sandbox: SandboxProcessor) -> dict[str, int]:
    return dict(sandbox.ledger.summary()["per_order_ref"])


def test_a_closed_visit_is_charged_once_and_its_token_destroyed(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    charge = close_a_visit(vault)
    outbox = an_outbox(vault, gateway, sandbox)
    assert outbox.run_once().answered == 1
    stored = vault.charge(charge.order_ref)
    assert stored is not None and stored.state == "succeeded" and stored.processor_ref.startswith("pi_")
    assert vault.payment_token(charge.order_ref) is None
    assert intents(sandbox) == {charge.order_ref: 1}
    assert outbox.run_once().sent == 0 and sandbox.requests["POST /v1/payment_intents"] == 1


@pytest.mark.parametrize("kind", ["error_500", "conflict_409", "drop_after_commit"])
def test_a_charge_without_an_answer_is_retried_with_the_same_key_and_charged_once(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor, kind: str
) -> None:
    charge = close_a_visit(vault)
    sandbox.inject(Fault(kind, times=3))  # type: ignore[arg-type]
    outbox = an_outbox(vault, gateway, sandbox)
    first = outbox.run_once()
    assert (first.sent, first.answered, first.waiting) == (1, 0, 1)
    assert vault.charge(charge.order_ref).state == "pending"  # type: ignore[union-attr]
    assert vault.payment_token(charge.order_ref) == VISA
    passes = drain(outbox, clock_of(sandbox))
    assert passes == 4 and sandbox.requests["POST /v1/payment_intents"] == 4
    assert intents(sandbox) == {charge.order_ref: 1}
    assert vault.charge(charge.order_ref).state == "succeeded"  # type: ignore[union-attr]
    assert sandbox.ledger.summary()["keys"] == 1  # one idempotency key was ever used


def test_a_slow_processor_times_out_and_the_retry_gets_the_first_answer(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    charge = close_a_visit(vault)
    sandbox.inject(Fault("delay", seconds=1.0))
    outbox = an_outbox(vault, gateway, sandbox)
    assert outbox.run_once().answered == 0  # read timeout 0.5 s; the sandbox goes on and charges
    wait_until(lambda: intents(sandbox) == {charge.order_ref: 1})  # the sandbox's delay runs on its own thread
    drain(outbox, clock_of(sandbox))
    assert intents(sandbox) == {charge.order_ref: 1}
    assert vault.charge(charge.order_ref).state == "succeeded"  # type: ignore[union-attr]


def test_backoff_grows_with_jitter_up_to_the_cap_while_the_processor_is_down(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    close_a_visit(vault)
    sandbox.inject(Fault("down", seconds=600))
    outbox = an_outbox(vault, gateway, sandbox)
    waits = []
    while outbox.pending():
        before = sandbox.clock.now()
        outbox.run_once()
        due = outbox.next_due()
        if due is not None:
            waits.append(due - before)
            clock_of(sandbox).set(max(due, before))
    assert sandbox.clock.now() >= 1_750_000_600.0
    assert all(0 <= w <= min(60.0, 2.0 * 2**i) for i, w in enumerate(waits))
    assert max(waits) > 8.0  # it really backed off
    assert len(waits) < 60  # and did not hammer the processor


def test_the_receipt_is_sealed_to_the_shopper_and_identical_on_every_attempt(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    shopper = X25519PrivateKey.from_private_bytes(bytes(range(100, 132)))
    charge = close_a_visit(vault, rk=public_bytes(shopper))
    sandbox.inject(Fault("drop_after_commit"))
    outbox = an_outbox(vault, gateway, sandbox)
    outbox.run_once()
    restarted = an_outbox(vault, gateway, sandbox, seed=2)  # a new process would seal it again from the vault
    drain(restarted, clock_of(sandbox))
    assert sandbox.ledger.summary()["keys"] == 1 and intents(sandbox) == {charge.order_ref: 1}
    stored = vault.charge(charge.order_ref)
    assert stored is not None and stored.state == "succeeded"  # same key, same parameters: replayed, not refused
    found = sandbox.ledger.get(f"/v1/payment_intents/{stored.processor_ref}", [])
    metadata = found.body["metadata"]
    text = "".join(metadata[f"receipt_{i}"] for i in range(len(metadata) - 1))
    document = open_receipt(text, shopper)
    assert document["total"] == charge.amount and document["shop"] == "Corner Seven"
    assert [line["sku"] for line in document["lines"]] == ["8801", "8802", "8803"]
    assert "visit" not in document and charge.visit not in text


@pytest.mark.parametrize(("token", "state", "code"), [
    ("cus_d/pm_card_chargeDeclined", "declined", "generic_decline"),
    ("cus_a/pm_card_authenticationRequired", "requires_action", "authentication_required"),
    ("cus_m/pm_missing", "failed", "resource_missing"),
])  # fmt: skip
def test_a_declined_or_awaiting_shopper_charge_is_final_never_resent_and_shown_to_the_owner(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor, token: str, state: str, code: str
) -> None:
    charge = close_a_visit(vault, token=token)
    paid = close_a_visit(vault)
    drain(an_outbox(vault, gateway, sandbox), clock_of(sandbox))
    stored = vault.charge(charge.order_ref)
    assert stored is not None and (stored.state, stored.error_code) == (state, code)
    assert vault.payment_token(charge.order_ref) is None
    sent = sandbox.requests["POST /v1/payment_intents"]
    restarted = an_outbox(vault, gateway, sandbox, seed=9)
    restarted.recover()
    clock_of(sandbox).advance(2 * 86400)
    assert restarted.run_once().sent == 0 and sandbox.requests["POST /v1/payment_intents"] == sent
    status = payments_status(vault, sandbox.clock.now())
    assert [v.visit for v in status.needs_owner] == [charge.visit] and paid.visit not in format_status(status)
    assert status.needs_owner[0].label == {"declined": "declined", "requires_action": "awaiting shopper",
                                           "failed": "failed"}[state]  # fmt: skip
    assert status.counts["succeeded"] == 1 and status.counts[state] == 1


def test_a_visit_without_a_token_fails_at_once_without_a_request(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    charge = close_a_visit(vault, token=None)
    an_outbox(vault, gateway, sandbox).run_once()
    assert vault.charge(charge.order_ref).error_code == "no_token"  # type: ignore[union-attr]
    assert sandbox.requests.get("POST /v1/payment_intents", 0) == 0


def test_a_refused_secret_key_leaves_charges_pending_and_is_logged_once(
    vault: Vault, sandbox: SandboxProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    charge = close_a_visit(vault)
    wrong = StripeGateway("sk_live_not_the_sandbox", sandbox.url)
    outbox = an_outbox(vault, wrong, sandbox)
    with caplog.at_level(logging.INFO, logger="appliance.payments.outbox"):
        for _ in range(4):
            outbox.run_once()
            clock_of(sandbox).set(outbox.next_due() or sandbox.clock.now())
    assert vault.charge(charge.order_ref).state == "pending"  # type: ignore[union-attr]
    assert sum("credentials" in r.message for r in caplog.records) == 1
    assert VISA not in caplog.text and charge.idempotency_key not in caplog.text


def test_a_restarted_outbox_finishes_what_the_last_one_left(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    """One charge was made at the processor but its answer died with the process; another's answer was
    stored but the process died before its token went. The next start finishes both, charging nothing twice."""
    made = close_a_visit(vault)
    sandbox.inject(Fault("drop_after_commit"))
    an_outbox(vault, gateway, sandbox).run_once()
    assert intents(sandbox) == {made.order_ref: 1} and vault.charge(made.order_ref).state == "pending"  # type: ignore[union-attr]
    answered = close_a_visit(vault, token="cus_d/pm_card_chargeDeclined")
    vault.set_charge_state(answered.order_ref, "declined", error_code="generic_decline")  # stored; token not yet gone
    assert vault.final_charges_with_tokens() == [answered.order_ref]
    restarted = an_outbox(vault, gateway, sandbox, seed=3)
    assert restarted.recover() == 1 and vault.payment_token(answered.order_ref) is None
    drain(restarted, clock_of(sandbox))
    assert intents(sandbox) == {made.order_ref: 1}
    assert vault.charge(made.order_ref).state == "succeeded"  # type: ignore[union-attr]


def test_a_day_old_charge_is_looked_up_before_it_is_sent_again(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    charge = close_a_visit(vault)
    sandbox.inject(Fault("drop_after_commit"))
    an_outbox(vault, gateway, sandbox).run_once()
    clock_of(sandbox).advance(25 * 3600)  # the processor has forgotten the key by now
    drain(an_outbox(vault, gateway, sandbox, seed=4), clock_of(sandbox))
    assert intents(sandbox) == {charge.order_ref: 1}
    assert sandbox.requests["GET /v1/payment_intents/search"] == 1
    assert vault.charge(charge.order_ref).state == "succeeded"  # type: ignore[union-attr]


def test_line_and_visit_refunds_are_written_first_then_sent_with_their_own_keys(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    charge = close_a_visit(vault)
    outbox = an_outbox(vault, gateway, sandbox)
    drain(outbox, clock_of(sandbox))
    sandbox.inject(Fault("down", seconds=120))
    one = outbox.refund_line(charge.order_ref, "8801", units=1)
    assert (one.amount, one.state, one.qty) == (1700, "pending", 1)
    outbox.run_once()
    assert vault.refunds(charge.order_ref)[0].state == "pending"  # down: written, not lost, not yet sent
    drain(outbox, clock_of(sandbox))
    weighed = outbox.refund_line(charge.order_ref, "8803")
    assert weighed.amount == 2125
    with pytest.raises(RefundError):
        outbox.refund_line(charge.order_ref, "8803")
    with pytest.raises(RefundError):
        outbox.refund_line(charge.order_ref, "8801", units=2)
    rest = outbox.refund_visit(charge.order_ref, reason="not_taken")
    assert rest.amount == charge.amount - 1700 - 2125
    drain(outbox, clock_of(sandbox))
    refunds = vault.refunds(charge.order_ref)
    assert [r.state for r in refunds] == ["succeeded"] * 3 and all(r.processor_ref.startswith("re_") for r in refunds)
    assert len({r.idempotency_key for r in refunds}) == 3 and charge.idempotency_key not in {
        r.idempotency_key for r in refunds
    }
    assert sandbox.ledger.summary()["refunds"] == 3 and vault.refundable(charge.order_ref) == 0
    with pytest.raises(RefundError):
        outbox.refund_visit(charge.order_ref)


def test_only_a_paid_charge_can_be_refunded(vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor) -> None:
    charge = close_a_visit(vault, token="cus_d/pm_card_chargeDeclined")
    outbox = an_outbox(vault, gateway, sandbox)
    with pytest.raises(ChargeStateError):
        outbox.refund_visit(charge.order_ref)  # still pending
    drain(outbox, clock_of(sandbox))
    with pytest.raises(ChargeStateError):
        outbox.refund_visit(charge.order_ref)  # declined


def test_the_worker_thread_sends_as_soon_as_it_is_poked_and_stops_promptly(tmp_path: Path) -> None:
    from appliance.gate.clock import WallClock

    clock = WallClock()
    with SandboxProcessor(tmp_path / "p.db") as sandbox, Vault.open(
        tmp_path / "v", bytes(range(1, 33)), RetentionPolicy.load(), clock
    ) as vault:
        gateway = StripeGateway("sk_test_thread", sandbox.url)
        outbox = Outbox(vault, gateway, clock=clock, rng=random.Random(1), idle_s=60.0)
        outbox.start()
        try:
            charges = [close_a_visit(vault) for _ in range(3)]
            outbox.poke()
            wait_until(lambda: outbox.pending() == 0)
        finally:
            started = time.monotonic()
            outbox.stop()
            stopped_in = time.monotonic() - started
            gateway.close()
        assert [vault.charge(c.order_ref).state for c in charges] == ["succeeded"] * 3  # type: ignore[union-attr]
        assert stopped_in < 5.0


@pytest.mark.parametrize(("raw", "code"), [("card_declined", "card_declined"), ("Generic_Decline", "generic_decline"),
                                           ("", ""), ("weird code!", "processor_error"), ("x" * 41, "processor_error")])
def test_processor_codes_are_stored_as_short_codes(raw: str, code: str) -> None:
    assert error_code(raw) == code


@pytest.mark.parametrize(("raw", "ref"), [("pi_123", "pi_123"), ("", ""), ("pi 1; drop", ""), ("p" * 97, "")])
def test_processor_references_are_stored_only_when_they_look_like_ids(raw: str, ref: str) -> None:
    assert processor_ref(raw) == ref


def test_a_damaged_row_holds_back_only_itself(vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor) -> None:
    """Regression: a token that no longer unseals made the whole pass fail, so no other visit was charged."""
    bad, good = close_a_visit(vault), close_a_visit(vault)
    conn = vault.files.connection(vault.files.live_periods("payment_token")[0])
    assert conn is not None
    conn.execute("UPDATE payment_tokens SET token = ? WHERE visit = ?", (b"\x00" * 44, bad.visit))
    outbox = an_outbox(vault, gateway, sandbox)
    assert outbox.run_once().answered == 1
    assert vault.charge(good.order_ref).state == "succeeded"  # type: ignore[union-attr]
    assert vault.charge(bad.order_ref).state == "pending" and outbox.next_due() is not None  # type: ignore[union-attr]


def test_a_charge_the_shopper_confirms_in_the_app_is_recorded_as_paid_without_being_sent_again(
    vault: Vault, gateway: StripeGateway, sandbox: SandboxProcessor
) -> None:
    import urllib.request

    charge = close_a_visit(vault, token="cus_a/pm_card_authenticationRequired")
    outbox = an_outbox(vault, gateway, sandbox)
    drain(outbox, clock_of(sandbox))
    awaiting = vault.charge(charge.order_ref)
    assert awaiting is not None and awaiting.state == "requires_action"
    # The shopper's app confirms the payment with the processor (the box is not involved):
    request = urllib.request.Request(f"{sandbox.url}/v1/payment_intents/{awaiting.processor_ref}/confirm",
                                     data=b"", method="POST", headers={"Authorization": "Bearer sk_test_app"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as response:
        assert json.loads(response.read())["status"] == "succeeded"
    outbox.run_once()
    assert vault.charge(charge.order_ref).state == "requires_action"  # type: ignore[union-attr]  # not looked up yet
    clock_of(sandbox).advance(15 * 60)
    outbox.run_once()
    paid = vault.charge(charge.order_ref)
    assert paid is not None and paid.state == "succeeded" and paid.processor_ref == awaiting.processor_ref
    assert sandbox.requests["POST /v1/payment_intents"] == 1 and intents(sandbox) == {charge.order_ref: 1}
    assert payments_status(vault, clock_of(sandbox).now()).needs_owner == ()
