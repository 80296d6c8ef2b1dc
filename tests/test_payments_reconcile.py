"""Reconciliation: every difference between the box's charges and the processor's records is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.payments.gateway import (
    ChargeRequest,
    ProcessorCharge,
    RefundRequest,
    new_idempotency_key,
    new_order_ref,
)
from appliance.payments.reconcile import BoxCharge, Mismatch, reconcile
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway

R1, R2 = "order-ref-0000000001", "order-ref-0000000002"


def theirs(
    ref: str, status: str = "succeeded", amount: int = 500, refunded: int = 0, pi: str = "pi_1"
) -> ProcessorCharge:
    return ProcessorCharge(ref, pi, amount, "KRW", status, refunded)


@pytest.mark.parametrize(
    ("box", "processor", "expected"),
    [
        ([BoxCharge(R1, 500, "KRW", "succeeded")], [theirs(R1)], []),
        ([BoxCharge(R1, 500, "KRW", "pending")], [], []),
        ([BoxCharge(R1, 500, "KRW", "failed")], [], []),
        ([BoxCharge(R1, 500, "KRW", "succeeded")], [], [("missing_at_processor", R1)]),
        ([BoxCharge(R1, 500, "KRW", "declined")], [], [("missing_at_processor", R1)]),
        ([], [theirs(R2)], [("missing_on_box", R2)]),
        ([BoxCharge(R1, 500, "KRW", "succeeded")], [theirs(R1, amount=600)], [("amount", R1)]),
        ([BoxCharge(R1, 500, "usd", "succeeded")], [theirs(R1)], [("currency", R1)]),
        ([BoxCharge(R1, 500, "KRW", "pending")], [theirs(R1)], [("state", R1)]),
        ([BoxCharge(R1, 500, "KRW", "requires_action")], [theirs(R1, "requires_action")], []),
        ([BoxCharge(R1, 500, "KRW", "succeeded", 100)], [theirs(R1)], [("refunded", R1)]),
        ([BoxCharge(R1, 500, "KRW", "succeeded")], [theirs(R1, pi="pi_1"), theirs(R1, pi="pi_2")], [("duplicate", R1)]),
        ([BoxCharge(R1, 500, "KRW", "succeeded")], [theirs(R1, "declined", pi="pi_1"), theirs(R1, pi="pi_2")],
         [("duplicate", R1)]),
    ],
    ids=["agree", "pending not sent yet", "failed outright", "lost at processor", "declined unknown",
         "unknown to box", "amount", "currency", "state", "awaiting shopper", "refunds", "double charge",
         "declined then charged"],
)  # fmt: skip
def test_each_kind_of_difference_is_reported(
    box: list[BoxCharge], processor: list[ProcessorCharge], expected: list[tuple[str, str]]
) -> None:
    assert [(m.kind, m.order_ref) for m in reconcile(box, processor)] == expected


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"order_ref": ""}, "order reference"), ({"state": "lost"}, "state"), ({"amount": -1}, "amounts")],
)
def test_a_box_charge_rejects_bad_values(fields: dict[str, object], message: str) -> None:
    values: dict[str, object] = {"order_ref": R1, "amount": 1, "currency": "KRW", "state": "pending"}
    with pytest.raises(ValueError, match=message):
        BoxCharge(**{**values, **fields})  # type: ignore[arg-type]


def test_a_mismatch_reads_as_one_line() -> None:
    line = str(Mismatch("amount", R1, "500", "600"))
    assert line.split() == ["amount", R1, "box:", "500", "processor:", "600"]


def _charge(gateway: StripeGateway, token: str = "cus_demo/pm_card_visa", amount: int = 800) -> ChargeRequest:
    charge = ChargeRequest(new_order_ref(), token, amount, "KRW", new_idempotency_key())
    gateway.charge(charge)
    return charge


def test_reconcile_reads_the_processors_records_and_reports_through_the_command_line(
    sandbox: SandboxProcessor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gateway = StripeGateway("sk_test_box", sandbox.url)
    paid, refunded, declined, extra = (
        _charge(gateway),
        _charge(gateway, amount=1200),
        _charge(gateway, token="cus_demo/pm_card_chargeDeclined"),
        _charge(gateway, amount=999),
    )
    gateway.refund(RefundRequest(gateway.find(refunded.order_ref)[0].processor_ref, 200, new_idempotency_key()))
    box = [
        {"order_ref": paid.order_ref, "amount": 800, "currency": "KRW", "state": "succeeded"},
        {"order_ref": refunded.order_ref, "amount": 1200, "currency": "KRW", "state": "succeeded", "refunded": 200},
        {"order_ref": declined.order_ref, "amount": 800, "currency": "KRW", "state": "declined"},
        {"order_ref": new_order_ref(), "amount": 300, "currency": "KRW", "state": "pending"},
    ]
    charges = tmp_path / "charges.json"
    charges.write_text(json.dumps(box))
    assert main(["payments", "reconcile", "--charges", str(charges), "--api-base", sandbox.url]) == 1
    out = capsys.readouterr().out
    assert f"missing_on_box        {extra.order_ref}  box: -  processor: succeeded 999 KRW" in out
    assert "4 box charges, 4 processor charges, 1 mismatch(es)" in out

    box.append({"order_ref": extra.order_ref, "amount": 999, "currency": "KRW", "state": "succeeded"})
    charges.write_text(json.dumps(box))
    assert main(["payments", "reconcile", "--charges", str(charges), "--api-base", sandbox.url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_reconcile_explains_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    charges = tmp_path / "charges.json"
    charges.write_text(json.dumps([{"order_ref": R1, "amount": 1, "currency": "KRW", "state": "gone"}]))
    assert main(["payments", "reconcile", "--charges", str(charges), "--api-base", "http://127.0.0.1:9"]) == 1
    assert "charges.json[0]: state must be one of" in capsys.readouterr().err
    charges.write_text("{not json")
    assert main(["payments", "reconcile", "--charges", str(charges), "--api-base", "http://127.0.0.1:9"]) == 1
    assert "is not JSON" in capsys.readouterr().err
    charges.write_text("[]")
    assert main(["payments", "reconcile", "--charges", str(charges)]) == 1
    assert "--config" in capsys.readouterr().err
    assert main(["payments", "reconcile", "--charges", str(charges), "--api-base", "http://example.com"]) == 1
    assert "plain http is allowed only on loopback" in capsys.readouterr().err
