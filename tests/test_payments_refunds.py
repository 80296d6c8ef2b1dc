"""Refunds of single lines, units of a line and whole visits: exact amounts, never more than was charged."""

from __future__ import annotations

import pytest

from appliance.events import ReceiptLine
from appliance.payments.gateway import ChargeRequest, new_idempotency_key, new_order_ref
from appliance.payments.refunds import (
    LineRefund,
    RefundError,
    RefundPlan,
    plan_line_refund,
    plan_visit_refund,
    send_refund,
)
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway

LINES = (
    ReceiptLine("yogurt", "Yogurt", 3, 0.0, 1000),  # 333.33 a unit: rounding must telescope
    ReceiptLine("nuts", "Mixed nuts", 0, 182.4, 4560),
    ReceiptLine("water", "Water 2 L", 1, 0.0, 1500),
)
CHARGED = 7060


@pytest.mark.parametrize(
    ("wanted", "done", "refunded", "amount"),
    [
        ([LineRefund(2)], {}, 0, 1500),
        ([LineRefund(1)], {}, 0, 4560),
        ([LineRefund(0, 1)], {}, 0, 333),
        ([LineRefund(0, 1)], {0: 1}, 333, 333),
        ([LineRefund(0, 1)], {0: 2}, 666, 334),
        ([LineRefund(0, 3)], {}, 0, 1000),
        ([LineRefund(0, 2), LineRefund(2)], {}, 0, 2166),
    ],
)
def test_a_line_refund_gives_back_exactly_that_lines_share(
    wanted: list[LineRefund], done: dict[int, int], refunded: int, amount: int
) -> None:
    plan = plan_line_refund(LINES, wanted, charged=CHARGED, refunded_total=refunded, refunded_units=done)
    assert plan == RefundPlan(amount, tuple(wanted))


@pytest.mark.parametrize(
    ("wanted", "done", "refunded", "message"),
    [
        ([LineRefund(3)], {}, 0, "no line 3"),
        ([LineRefund(0, 4)], {}, 0, "3 unit"),
        ([LineRefund(0, 2)], {0: 2}, 666, "1 unit"),
        ([LineRefund(1, 2)], {}, 0, "1 unit"),
        ([LineRefund(2), LineRefund(2)], {}, 0, "twice"),
        ([LineRefund(1)], {}, 3000, "exceed"),
        ([], {}, 0, "at least one"),
    ],
)
def test_an_impossible_line_refund_is_refused_with_the_reason(
    wanted: list[LineRefund], done: dict[int, int], refunded: int, message: str
) -> None:
    with pytest.raises(RefundError, match=message):
        plan_line_refund(LINES, wanted, charged=CHARGED, refunded_total=refunded, refunded_units=done)


def test_a_whole_visit_refund_gives_back_everything_still_charged() -> None:
    assert plan_visit_refund(LINES, charged=CHARGED) == RefundPlan(
        CHARGED, (LineRefund(0, 3), LineRefund(1, 1), LineRefund(2, 1))
    )
    after_one = plan_visit_refund(LINES, charged=CHARGED, refunded_total=333, refunded_units={0: 1})
    assert after_one == RefundPlan(CHARGED - 333, (LineRefund(0, 2), LineRefund(1, 1), LineRefund(2, 1)))
    with pytest.raises(RefundError, match="already fully refunded"):
        plan_visit_refund(LINES, charged=CHARGED, refunded_total=CHARGED)


def test_refunding_every_unit_one_by_one_adds_up_to_the_charge() -> None:
    done: dict[int, int] = {}
    total = 0
    for index, line in enumerate(LINES):
        units = line.qty if line.qty and not line.grams else 1
        for _ in range(units):
            plan = plan_line_refund(
                LINES, [LineRefund(index)], charged=CHARGED, refunded_total=total, refunded_units=done
            )
            total += plan.amount
            done[index] = done.get(index, 0) + 1
    assert total == CHARGED


def test_line_and_visit_refunds_go_through_the_processor(sandbox: SandboxProcessor) -> None:
    gateway = StripeGateway("sk_test_box", sandbox.url)
    charge = ChargeRequest(new_order_ref(), "cus_demo/pm_card_visa", CHARGED, "KRW", new_idempotency_key())
    ref = gateway.charge(charge).processor_ref
    line = plan_line_refund(LINES, [LineRefund(0, 1)], charged=CHARGED)
    assert send_refund(gateway, ref, line, new_idempotency_key()).amount == 333
    rest = plan_visit_refund(LINES, charged=CHARGED, refunded_total=line.amount, refunded_units={0: 1})
    assert send_refund(gateway, ref, rest, new_idempotency_key()).amount == CHARGED - 333
    assert gateway.find(charge.order_ref)[0].refunded == CHARGED
