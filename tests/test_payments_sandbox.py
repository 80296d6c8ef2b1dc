"""The sandbox processor, driven through StripeGateway over loopback: Stripe's idempotency, errors, faults, state."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.broker import free_port
from appliance.gate.clock import ManualClock
from appliance.payments.attempts import attempt_charge
from appliance.payments.faults import Fault
from appliance.payments.gateway import (
    ChargeRequest,
    KeyConflictError,
    ProcessorUnavailableError,
    RefundRequest,
    new_idempotency_key,
    new_order_ref,
)
from appliance.payments.sandbox_ledger import KEY_LIFETIME_S
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway

VISA = "cus_demo/pm_card_visa"


def a_charge(amount: int = 4200, token: str = VISA) -> ChargeRequest:
    return ChargeRequest(new_order_ref(), token, amount, "KRW", new_idempotency_key())


def intents(sandbox: SandboxProcessor) -> int:
    return sum(sandbox.ledger.summary()["payment_intents"].values())


@pytest.fixture
def gateway(sandbox: SandboxProcessor) -> StripeGateway:
    return StripeGateway("sk_test_box", sandbox.url, connect_timeout_s=1.0, read_timeout_s=5.0)


def raw(sandbox: SandboxProcessor, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    """One HTTP request without the Stripe library: (status, JSON body, headers)."""
    request = urllib.request.Request(sandbox.url + path, data=body or None, method=method)
    for name, value in {"Authorization": "Bearer sk_test_raw", **(headers or {})}.items():
        request.add_header(name, value)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, json.loads(response.read()), response.headers
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read()), err.headers


# --- idempotency --------------------------------------------------------------------------------


def test_a_retry_with_the_same_key_gets_the_first_answer_replayed(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    charge = a_charge()
    first, second = gateway.charge(charge), gateway.charge(charge)
    assert first.status == "succeeded" and not first.replayed
    assert second.status == "succeeded" and second.replayed and second.processor_ref == first.processor_ref
    assert intents(sandbox) == 1


def test_an_error_answer_is_replayed_too(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    charge = a_charge(token="cus_demo/pm_card_chargeDeclined")
    first, second = gateway.charge(charge), gateway.charge(charge)
    assert (first.status, first.code, first.replayed) == ("declined", "generic_decline", False)
    assert (second.status, second.processor_ref, second.replayed) == ("declined", first.processor_ref, True)
    assert intents(sandbox) == 1


def test_the_same_key_with_other_parameters_is_an_error_and_creates_nothing(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    charge = a_charge(amount=4200)
    gateway.charge(charge)
    changed = ChargeRequest(charge.order_ref, charge.token, 4300, "KRW", charge.idempotency_key)
    with pytest.raises(KeyConflictError):
        gateway.charge(changed)
    ref = gateway.find(charge.order_ref)[0].processor_ref
    with pytest.raises(KeyConflictError):  # a key is bound to its endpoint, too
        gateway.refund(RefundRequest(ref, 100, charge.idempotency_key))
    assert intents(sandbox) == 1 and sandbox.ledger.summary()["refunds"] == 0


def test_a_request_that_fails_validation_does_not_use_up_its_key(sandbox) -> None:  # type: ignore[no-untyped-def]
    key = {"Idempotency-Key": "k" * 20, "Content-Type": "application/x-www-form-urlencoded"}
    good = b"amount=500&currency=krw&customer=cus_a&payment_method=pm_b&off_session=true&confirm=true"
    status, body, _ = raw(sandbox, "POST", "/v1/payment_intents", good.replace(b"krw", b"KRWW"), key)
    assert status == 400 and body["error"]["param"] == "currency"
    status, body, _ = raw(sandbox, "POST", "/v1/payment_intents", good, key)
    assert status == 200 and body["status"] == "succeeded"


def test_keys_are_forgotten_after_a_day_so_an_old_charge_is_looked_up_before_it_is_resent(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    charge = a_charge()
    sent_at = sandbox.clock.now()
    sandbox.inject(Fault("drop_after_commit"))
    with pytest.raises(ProcessorUnavailableError):
        gateway.charge(charge)  # the charge was made; the box never heard
    sandbox.clock.advance(KEY_LIFETIME_S + 60)
    outcome = attempt_charge(gateway, charge, first_sent_at=sent_at, now=sandbox.clock.now())
    assert outcome.status == "succeeded" and intents(sandbox) == 1
    # Without the look-up, the forgotten key would have charged the shopper a second time:
    gateway.charge(charge)
    assert sandbox.ledger.summary()["per_order_ref"][charge.order_ref] == 2


def test_a_day_old_charge_the_processor_never_saw_is_sent_after_the_look_up(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    charge = a_charge()
    sent_at = sandbox.clock.now()
    sandbox.inject(Fault("error_500"))
    with pytest.raises(ProcessorUnavailableError):
        gateway.charge(charge)
    sandbox.clock.advance(KEY_LIFETIME_S + 60)
    outcome = attempt_charge(gateway, charge, first_sent_at=sent_at, now=sandbox.clock.now())
    assert outcome.status == "succeeded" and not outcome.replayed and intents(sandbox) == 1


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["error_500", "conflict_409", "drop_after_commit"])
def test_transport_faults_give_no_answer_and_a_retry_with_the_same_key_charges_once(sandbox, gateway, kind) -> None:  # type: ignore[no-untyped-def]
    charge = a_charge()
    sandbox.inject(Fault(kind))  # type: ignore[arg-type]
    with pytest.raises(ProcessorUnavailableError):
        gateway.charge(charge)
    assert intents(sandbox) == (1 if kind == "drop_after_commit" else 0)
    outcome = gateway.charge(charge)
    assert outcome.status == "succeeded" and outcome.replayed == (kind == "drop_after_commit")
    assert intents(sandbox) == 1
    assert sandbox.requests["POST /v1/payment_intents"] == 2  # the library itself never retried


def test_a_slow_answer_times_out_and_a_concurrent_retry_is_told_409(sandbox) -> None:  # type: ignore[no-untyped-def]
    impatient = StripeGateway("sk_test_box", sandbox.url, connect_timeout_s=1.0, read_timeout_s=0.3)
    charge = a_charge()
    sandbox.inject(Fault("delay", seconds=1.5))
    with pytest.raises(ProcessorUnavailableError):
        impatient.charge(charge)
    with pytest.raises(ProcessorUnavailableError, match="409"):
        impatient.charge(charge)  # the first is still being worked on
    deadline = time.monotonic() + 10
    while True:
        try:
            outcome = impatient.charge(charge)
            break
        except ProcessorUnavailableError:
            assert time.monotonic() < deadline
            time.sleep(0.1)  # waiting for the real delay to end, not moving any clock
    assert outcome.status == "succeeded" and outcome.replayed and intents(sandbox) == 1


def test_a_processor_down_for_ten_minutes_refuses_everything_until_it_is_back(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    charge = a_charge()
    sandbox.inject(Fault("down", seconds=600))
    for _ in range(3):
        with pytest.raises(ProcessorUnavailableError):
            gateway.charge(charge)
        sandbox.clock.advance(150)
    sandbox.clock.advance(150)
    assert gateway.charge(charge).status == "succeeded"
    assert intents(sandbox) == 1


def test_declines_and_authentication_can_be_injected_for_one_token(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    sandbox.inject(Fault("decline", token="cus_x/pm_tired", decline_code="insufficient_funds", times=None))
    sandbox.inject(Fault("authentication_required", token="pm_needs_app"))
    assert gateway.charge(a_charge(token="cus_x/pm_tired")).code == "insufficient_funds"
    assert gateway.charge(a_charge(token="cus_x/pm_tired")).status == "declined"
    needs = a_charge(token="cus_y/pm_needs_app")
    first = gateway.charge(needs)
    assert (first.status, first.code) == ("requires_action", "authentication_required")
    assert gateway.charge(needs).status == "requires_action"  # replayed, not re-tried
    assert gateway.charge(a_charge(token="cus_z/pm_fine")).status == "succeeded"
    assert gateway.find(needs.order_ref)[0].status == "requires_action"


# --- look-ups and refunds -------------------------------------------------------------------------


def test_charges_are_found_by_their_order_reference(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    charges = [a_charge(amount=100 * (i + 1)) for i in range(3)]
    refs = [gateway.charge(c).processor_ref for c in charges]
    found = gateway.find(charges[1].order_ref)
    assert [(f.processor_ref, f.amount, f.currency, f.status) for f in found] == [(refs[1], 200, "KRW", "succeeded")]
    assert gateway.find(new_order_ref()) == []


def test_refunds_give_back_part_then_the_rest_and_never_more(sandbox, gateway) -> None:  # type: ignore[no-untyped-def]
    ref = gateway.charge(a_charge(amount=5000)).processor_ref
    key = new_idempotency_key()
    first = gateway.refund(RefundRequest(ref, 1200, key))
    assert (first.status, first.amount) == ("succeeded", 1200)
    assert gateway.refund(RefundRequest(ref, 1200, key)).refund_ref == first.refund_ref  # replayed
    assert gateway.refund(RefundRequest(ref, 3801, new_idempotency_key())).code == "amount_too_large"
    assert gateway.refund(RefundRequest(ref, 3800, new_idempotency_key())).status == "succeeded"
    assert gateway.refund(RefundRequest(ref, 1, new_idempotency_key())).code == "charge_already_refunded"
    declined = gateway.charge(a_charge(token="cus_demo/pm_card_chargeDeclined")).processor_ref
    assert gateway.refund(RefundRequest(declined, 1, new_idempotency_key())).code == "charge_not_refundable"
    assert sandbox.ledger.summary()["refunds"] == 2


# --- Stripe's shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "error"),
    [
        ("POST", "/v1/payment_intents", b"amount=1&bogus=1", {"Content-Type": "application/x-www-form-urlencoded"},
         400, {"type": "invalid_request_error", "code": "parameter_unknown", "param": "bogus"}),
        ("POST", "/v1/payment_intents", b'{"amount": 1}', {"Content-Type": "application/json"},
         400, {"type": "invalid_request_error"}),
        ("POST", "/v1/payment_intents", b"amount=5&currency=krw&off_session=true&confirm=true",
         {"Content-Type": "application/x-www-form-urlencoded"},
         400, {"type": "invalid_request_error", "code": "parameter_missing"}),
        ("GET", "/v1/payment_intents/pi_nothere", b"", {}, 404, {"type": "invalid_request_error",
                                                               "code": "resource_missing"}),
        ("GET", "/v1/payment_intents/search?query=status%3A%27succeeded%27", b"", {}, 400,
         {"type": "invalid_request_error", "param": "query"}),
        ("GET", "/v1/charges", b"", {}, 404, {"type": "invalid_request_error"}),
        ("GET", "/v1/payment_intents", b"", {"Authorization": "Bearer pk_live_nope"}, 401,
         {"type": "invalid_request_error"}),
    ],
    ids=["unknown parameter", "JSON body", "missing parameter", "unknown intent", "unsupported search",
         "unknown endpoint", "wrong key"],
)  # fmt: skip
def test_errors_have_stripes_shape(sandbox, method, path, body, headers, status, error) -> None:  # type: ignore[no-untyped-def]
    got_status, got, _ = raw(sandbox, method, path, body, headers)
    assert got_status == status
    assert set(got) == {"error"} and isinstance(got["error"]["message"], str)
    assert {k: got["error"].get(k) for k in error} == error


def test_the_admin_endpoints_check_what_they_are_told(sandbox) -> None:  # type: ignore[no-untyped-def]
    json_type = {"Content-Type": "application/json"}
    assert raw(sandbox, "POST", "/_sandbox/faults", b'{"kind": "meteor"}', json_type)[0] == 400
    assert raw(sandbox, "POST", "/_sandbox/faults", b'{"kind": "decline"}', json_type)[0] == 400  # no token
    assert raw(sandbox, "POST", "/_sandbox/faults", b"not json", json_type)[0] == 400
    assert raw(sandbox, "POST", "/_sandbox/faults", b'{"kind": "error_500", "times": 2}', json_type)[0] == 200
    assert raw(sandbox, "POST", "/_sandbox/clock", b'{"advance": 60}', json_type)[1]["now"] == 1_750_000_060.0
    assert raw(sandbox, "DELETE", "/_sandbox/faults")[0] == 200
    assert raw(sandbox, "GET", "/_sandbox/summary")[1]["payment_intents"] == {}


# --- state that survives ---------------------------------------------------------------------------


def test_state_survives_a_restart_and_keys_still_replay(tmp_path: Path) -> None:
    clock = ManualClock(1_750_000_000.0)
    charge = a_charge()
    with SandboxProcessor(tmp_path / "state.db", clock=clock) as first:
        ref = StripeGateway("sk_test_box", first.url).charge(charge).processor_ref
    with SandboxProcessor(tmp_path / "state.db", clock=clock) as second:
        again = StripeGateway("sk_test_box", second.url).charge(charge)
        assert (again.processor_ref, again.replayed) == (ref, True)
        assert intents(second) == 1


@contextlib.contextmanager
def sandbox_process(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`appliance sandbox-processor ARGS` in its own process; yields it and its API base once it listens."""
    port = free_port()
    command = [sys.executable, "-m", "appliance", "sandbox-processor", "--port", str(port), *args]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL) as proc:
        try:
            assert proc.stdout is not None and b"sandbox processor on" in proc.stdout.readline()
            yield proc, f"http://127.0.0.1:{port}"
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=10)


def test_a_sandbox_killed_mid_stream_keeps_every_charge_it_answered_and_nothing_half_made(tmp_path: Path) -> None:
    """kill -9 of `appliance sandbox-processor` while charges stream in: every answered charge survives, and
    every charge it holds is bound to its key (a retry never charges twice)."""
    state = tmp_path / "state.db"
    charges = [a_charge(amount=100 + i) for i in range(40)]
    answered: dict[str, str] = {}
    with sandbox_process("--state", str(state)) as (proc, url):
        gateway = StripeGateway("sk_test_box", url, read_timeout_s=5.0)
        enough = threading.Event()

        def stream() -> None:
            for charge in charges:
                try:
                    answered[charge.order_ref] = gateway.charge(charge).processor_ref
                except ProcessorUnavailableError:
                    return
                if len(answered) == 8:
                    enough.set()

        sender = threading.Thread(target=stream)
        sender.start()
        assert enough.wait(20)
        os.kill(proc.pid, signal.SIGKILL)
        sender.join(20)
    assert 8 <= len(answered) < len(charges)
    with sandbox_process("--state", str(state)) as (_proc, url):
        gateway = StripeGateway("sk_test_box", url)
        for charge in charges:
            outcome = gateway.charge(charge)
            if charge.order_ref in answered:
                assert (outcome.processor_ref, outcome.replayed) == (answered[charge.order_ref], True)
        per_ref = _admin_get(url, "/_sandbox/summary")["per_order_ref"]
        assert per_ref == {c.order_ref: 1 for c in charges}


def _admin_get(url: str, path: str) -> Any:
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url + path, timeout=5) as response:
        return json.loads(response.read())


def _admin(url: str, path: str, payload: dict[str, Any]) -> Any:
    request = urllib.request.Request(url + path, data=json.dumps(payload).encode(), method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=5) as response:
        return json.loads(response.read())


def test_the_command_line_sandbox_takes_faults_and_a_manual_clock_over_http() -> None:
    with sandbox_process("--manual-clock", "1750000000") as (_proc, url):
        gateway = StripeGateway("sk_test_box", url)
        _admin(url, "/_sandbox/faults", {"kind": "down", "seconds": 600})
        with pytest.raises(ProcessorUnavailableError):
            gateway.charge(a_charge())
        assert _admin(url, "/_sandbox/clock", {"advance": 601})["now"] == 1750000601
        assert gateway.charge(a_charge()).status == "succeeded"
