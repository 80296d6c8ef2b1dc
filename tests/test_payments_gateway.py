"""StripeGateway and the outbox's decisions: exactly one charge per visit through every fault the sandbox has."""

from __future__ import annotations

import importlib
import logging
import random
from pathlib import Path

import pytest
import stripe

from appliance.config.model import PaymentSettings
from appliance.payments.attempts import LOOKUP_AFTER_S, attempt_charge, outcome_of, retry_delay
from appliance.payments.faults import Fault
from appliance.payments.gateway import (
    ChargeOutcome,
    ChargeRequest,
    ProcessorCharge,
    ProcessorConfigError,
    ProcessorUnavailableError,
    new_idempotency_key,
    new_order_ref,
)
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway, gateway_from_settings, read_secret_key, split_token

VISA = "cus_demo/pm_card_visa"


def a_charge(token: str = VISA, amount: int = 3300) -> ChargeRequest:
    return ChargeRequest(new_order_ref(), token, amount, "KRW", new_idempotency_key())


# --- requests and tokens ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"order_ref": "short"}, "order_ref"),
        ({"idempotency_key": "k" * 65}, "idempotency_key"),
        ({"token": ""}, "token"),
        ({"token": "t" * 256}, "token"),
        ({"amount": 0}, "amount"),
        ({"amount": 10.5}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "WON!"}, "currency"),
    ],
)
def test_a_charge_request_rejects_bad_values(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {
        "order_ref": new_order_ref(),
        "token": VISA,
        "amount": 100,
        "currency": "KRW",
        "idempotency_key": new_idempotency_key(),
    }
    with pytest.raises(ValueError, match=message):
        ChargeRequest(**{**values, **fields})  # type: ignore[arg-type]


def test_a_charge_request_never_shows_its_token() -> None:
    assert "cus_demo" not in repr(a_charge()) and "pm_card" not in repr(a_charge())


@pytest.mark.parametrize(
    ("token", "pair"),
    [
        ("cus_a/pm_b", ("cus_a", "pm_b")),
        ("pm_b", None),
        ("cus_a/", None),
        ("cus_a/pm_b/pm_c", None),
        ("pm_b/cus_a", None),
        ("billing-key-123", None),
    ],
)
def test_a_pass_token_is_a_customer_and_payment_method_pair(token: str, pair: tuple[str, str] | None) -> None:
    assert split_token(token) == pair


def test_a_token_stripe_cannot_use_fails_definitely_without_a_request(sandbox: SandboxProcessor) -> None:
    outcome = StripeGateway("sk_test_box", sandbox.url).charge(a_charge(token="billing-key-123"))
    assert outcome == ChargeOutcome("failed", code="token_unusable")
    assert sandbox.requests == {}


def test_an_unknown_payment_method_is_a_definite_failure(sandbox: SandboxProcessor) -> None:
    outcome = StripeGateway("sk_test_box", sandbox.url).charge(a_charge(token="cus_a/pm_missing"))
    assert (outcome.status, outcome.code) == ("failed", "resource_missing")


def test_a_wrong_secret_key_is_a_configuration_problem_not_an_answer(sandbox: SandboxProcessor) -> None:
    with pytest.raises(ProcessorConfigError):
        StripeGateway("sk_live_not_for_the_sandbox", sandbox.url).charge(a_charge())


def test_a_processor_that_is_not_listening_gives_no_answer() -> None:
    from appliance.broker import free_port

    with pytest.raises(ProcessorUnavailableError):
        StripeGateway("sk_test_box", f"http://127.0.0.1:{free_port()}", connect_timeout_s=0.5).charge(a_charge())


# --- what the library must not do -------------------------------------------------------------------


def test_no_token_or_key_reaches_the_log_even_at_debug_level(
    sandbox: SandboxProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = StripeGateway("sk_test_secretkey", sandbox.url)
    sandbox.inject(Fault("drop_after_commit"))
    charges = [a_charge(), a_charge(token="cus_demo/pm_card_chargeDeclined"), a_charge()]
    for charge in charges:
        try:
            gateway.charge(charge)
        except ProcessorUnavailableError:
            gateway.charge(charge)
    gateway.find(charges[0].order_ref)
    assert "POST /v1/payment_intents" in caplog.text  # the log was on
    for secret in ("cus_demo", "pm_card", "sk_test_secretkey"):
        assert secret not in caplog.text


def test_the_stripe_library_would_log_tokens_if_the_adapter_did_not_cap_its_logger(
    sandbox: SandboxProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    """The control for the test above: proves that test would catch the library's debug lines."""
    caplog.set_level(logging.DEBUG)
    gateway = StripeGateway("sk_test_secretkey", sandbox.url)
    logging.getLogger("stripe").setLevel(logging.DEBUG)
    try:
        gateway.charge(a_charge())
    finally:
        logging.getLogger("stripe").setLevel(logging.WARNING)
    assert "pm_card_visa" in caplog.text


def test_the_library_writes_no_telemetry_id_and_never_retries_by_itself(
    sandbox: SandboxProcessor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setattr(importlib.import_module("stripe._telemetry_id"), "_loaded", False)  # forget a cached id
    gateway = StripeGateway("sk_test_box", sandbox.url)
    sandbox.inject(Fault("error_500"))  # the library, left to itself, would retry this and succeed
    with pytest.raises(ProcessorUnavailableError):
        gateway.charge(a_charge())
    gateway.charge(a_charge())
    assert stripe.enable_telemetry is False
    assert list(home.iterdir()) == []
    assert sandbox.requests["POST /v1/payment_intents"] == 2


# --- settings ---------------------------------------------------------------------------------------


def test_the_secret_key_comes_from_its_file(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk_test_abc\n")
    (tmp_path / "empty").write_text("")
    (tmp_path / "wrong").write_text("password123")
    assert read_secret_key(tmp_path / "key") == "sk_test_abc"
    for name, message in (("empty", "does not hold"), ("wrong", "does not hold"), ("missing", "cannot read")):
        with pytest.raises(ValueError, match=message):
            read_secret_key(tmp_path / name)


def test_the_settings_make_a_gateway_to_their_processor(sandbox: SandboxProcessor, tmp_path: Path) -> None:
    gateway = gateway_from_settings(PaymentSettings(api_base=sandbox.url))
    assert gateway.charge(a_charge()).status == "succeeded"
    (tmp_path / "key").write_text("sk_test_fromfile")
    stripe_kind = PaymentSettings(processor="stripe", api_base=sandbox.url, secret_key_file=str(tmp_path / "key"))
    assert gateway_from_settings(stripe_kind).charge(a_charge()).status == "succeeded"


# --- the outbox's decisions -------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [0, 1, 5, 20, 100])
def test_retry_delays_grow_with_jitter_and_stay_under_the_cap(attempt: int) -> None:
    rng = random.Random(attempt)
    delays = [retry_delay(attempt, 1.0, 300.0, rng) for _ in range(200)]
    ceiling = min(300.0, 2.0**attempt)
    assert all(0 <= d <= ceiling for d in delays)
    assert max(delays) > 0.8 * ceiling and len(set(delays)) > 150


def test_retry_delay_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        retry_delay(0, 10.0, 1.0, random.Random(0))


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ([], None),
        (["declined"], "declined"),
        (["declined", "succeeded"], "succeeded"),
        (["requires_action"], "requires_action"),
        (["failed", "declined"], "declined"),
    ],
)
def test_the_processors_records_give_one_outcome(statuses: list[str], expected: str | None) -> None:
    records = [ProcessorCharge("r" * 22, f"pi_{i}", 100, "KRW", s) for i, s in enumerate(statuses)]
    outcome = outcome_of(records)
    assert (outcome.status if outcome else None) == expected


def test_a_charge_still_processing_at_the_processor_is_no_answer_yet() -> None:
    with pytest.raises(ProcessorUnavailableError):
        outcome_of([ProcessorCharge("r" * 22, "pi_1", 100, "KRW", "pending")])


def test_a_fresh_charge_is_sent_without_a_look_up(sandbox: SandboxProcessor) -> None:
    gateway = StripeGateway("sk_test_box", sandbox.url)
    now = sandbox.clock.now()
    attempt_charge(gateway, a_charge(), first_sent_at=now - LOOKUP_AFTER_S + 60, now=now)
    assert "GET /v1/payment_intents/search" not in sandbox.requests


def test_a_key_reused_with_other_parameters_is_answered_from_the_processors_records(sandbox: SandboxProcessor) -> None:
    """E.g. a receipt sealed anew on a retry: the first charge under the key stands; no second charge."""
    gateway = StripeGateway("sk_test_box", sandbox.url)
    first = a_charge()
    ref = gateway.charge(first).processor_ref
    resealed = ChargeRequest(first.order_ref, first.token, first.amount, "KRW", first.idempotency_key, "WR1.other")
    outcome = attempt_charge(gateway, resealed, first_sent_at=sandbox.clock.now(), now=sandbox.clock.now())
    assert (outcome.status, outcome.processor_ref) == ("succeeded", ref)
    assert sandbox.ledger.summary()["per_order_ref"] == {first.order_ref: 1}


def test_every_visit_is_charged_exactly_once_through_a_bad_day_of_faults(sandbox: SandboxProcessor) -> None:
    """A small outbox run: timeouts, 500s, 409s, dropped answers and ten minutes of outage; no clock sleeps."""
    rng = random.Random(5)
    gateway = StripeGateway("sk_test_box", sandbox.url, connect_timeout_s=0.5, read_timeout_s=0.3)
    tokens = [VISA] * 30 + ["cus_d/pm_card_chargeDeclined"] * 4 + ["cus_a/pm_card_authenticationRequired"] * 4
    tokens += ["cus_m/pm_missing"] * 2
    rng.shuffle(tokens)
    charges = [a_charge(token=t, amount=1000 + i) for i, t in enumerate(tokens)]
    due = {c.order_ref: sandbox.clock.now() for c in charges}
    first_sent: dict[str, float] = {}
    attempts = {c.order_ref: 0 for c in charges}
    outcomes: dict[str, ChargeOutcome] = {}
    delays = 0
    while len(outcomes) < len(charges):
        now = sandbox.clock.now()
        for i, charge in enumerate(charges):
            ref = charge.order_ref
            if ref in outcomes or due[ref] > now:
                continue
            if i == 20 and attempts[ref] == 0:
                sandbox.inject(Fault("down", seconds=600))
            kind = rng.choice(["none", "none", "error_500", "conflict_409", "drop_after_commit", "delay"])
            if sandbox.faults.is_down(now):
                kind = "none"  # a fault injected now would wait, unused, for the outage to end
            if kind == "delay" and delays < 1:
                delays += 1
                sandbox.inject(Fault("delay", seconds=0.6))
            elif kind not in ("none", "delay"):
                sandbox.inject(Fault(kind))  # type: ignore[arg-type]
            first_sent.setdefault(ref, now)
            try:
                outcomes[ref] = attempt_charge(gateway, charge, first_sent_at=first_sent[ref], now=now)
            except ProcessorUnavailableError:
                due[ref] = now + retry_delay(attempts[ref], 5.0, 300.0, rng)
                attempts[ref] += 1
        pending = [due[c.order_ref] for c in charges if c.order_ref not in outcomes]
        if pending and min(pending) > sandbox.clock.now():
            sandbox.clock.set(min(pending))
    sandbox.faults.clear()

    expected = {VISA: "succeeded", "cus_d/pm_card_chargeDeclined": "declined",
                "cus_a/pm_card_authenticationRequired": "requires_action", "cus_m/pm_missing": "failed"}  # fmt: skip
    assert {c.order_ref: outcomes[c.order_ref].status for c in charges} == {
        c.order_ref: expected[c.token] for c in charges
    }
    per_ref = sandbox.ledger.summary()["per_order_ref"]
    assert per_ref == {c.order_ref: 1 for c in charges if c.token != "cus_m/pm_missing"}
    assert sum(attempts.values()) > len(charges) // 2  # the faults really happened
    assert sandbox.requests["POST /v1/payment_intents"] == len(charges) + sum(attempts.values())  # no hidden retries
    assert sandbox.clock.now() - 1_750_000_000.0 >= 600  # and the outage was waited out
