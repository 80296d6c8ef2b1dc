"""Refunds of single lines (or some units of a line) and of whole visits: what to give back, exactly.

The plans are pure: given the receipt's lines, what was charged and what was already refunded,
they say how much to refund, so a line refunded unit by unit gives back exactly its amount (the
rounding telescopes) and no refund ever exceeds what is left of the charge. Sending a plan is
one `PaymentGateway.refund` with the refund's own idempotency key, re-sent with the same key
until definite, like a charge.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from appliance.events import ReceiptLine
from appliance.payments.gateway import PaymentGateway, RefundOutcome, RefundRequest


class RefundError(ValueError):
    """A refund that cannot be made as asked (no such line, nothing left, more than was charged)."""


@dataclass(frozen=True, slots=True)
class LineRefund:
    """Give back `units` of receipt line `line` (by-weight lines have one unit: the whole line)."""

    line: int
    units: int = 1

    def __post_init__(self) -> None:
        if self.line < 0 or self.units < 1:
            raise ValueError(f"line must be >= 0 and units >= 1, got line {self.line}, units {self.units}")


@dataclass(frozen=True, slots=True)
class RefundPlan:
    """How much to refund and which line units it covers."""

    amount: int
    lines: tuple[LineRefund, ...]


def line_units(line: ReceiptLine) -> int:
    """How many separately refundable units a line has."""
    return line.qty if line.qty > 0 and not line.grams else 1


def _amount_for(line: ReceiptLine, units: int) -> int:
    return line.amount * units // line_units(line)


def plan_line_refund(
    lines: Sequence[ReceiptLine],
    wanted: Sequence[LineRefund],
    *,
    charged: int,
    refunded_total: int = 0,
    refunded_units: Mapping[int, int] | None = None,
) -> RefundPlan:
    """Refund some units of some lines.

    Args:
        lines: the receipt's lines, in receipt order.
        wanted: what to refund; a line may appear once.
        charged: the amount the charge succeeded for.
        refunded_total: what earlier refunds of this charge gave back.
        refunded_units: per line index, units already refunded.

    Raises:
        RefundError: a line that does not exist or has fewer units left, or more than is left.
    """
    done = dict(refunded_units or {})
    seen: set[int] = set()
    amount = 0
    for item in wanted:
        if item.line >= len(lines):
            raise RefundError(f"the receipt has {len(lines)} lines; there is no line {item.line}")
        if item.line in seen:
            raise RefundError(f"line {item.line} is asked for twice; ask once with the number of units")
        seen.add(item.line)
        line = lines[item.line]
        before = done.get(item.line, 0)
        left = line_units(line) - before
        if item.units > left:
            raise RefundError(f"line {item.line} ({line.sku}) has {left} unit(s) left to refund, not {item.units}")
        amount += _amount_for(line, before + item.units) - _amount_for(line, before)
    if not wanted:
        raise RefundError("name at least one line to refund")
    if amount > charged - refunded_total:
        raise RefundError(f"refunding {amount} would exceed what is left of the charge ({charged - refunded_total})")
    if amount <= 0:
        raise RefundError("these lines are worth nothing; there is nothing to refund")
    return RefundPlan(amount, tuple(wanted))


def plan_visit_refund(
    lines: Sequence[ReceiptLine],
    *,
    charged: int,
    refunded_total: int = 0,
    refunded_units: Mapping[int, int] | None = None,
) -> RefundPlan:
    """Refund everything not yet refunded of a visit's charge."""
    left = charged - refunded_total
    if left <= 0:
        raise RefundError("this visit's charge is already fully refunded")
    done = refunded_units or {}
    rest = tuple(
        LineRefund(i, line_units(line) - done.get(i, 0))
        for i, line in enumerate(lines)
        if line_units(line) - done.get(i, 0) > 0
    )
    return RefundPlan(left, rest)


def send_refund(gateway: PaymentGateway, processor_ref: str, plan: RefundPlan, idempotency_key: str) -> RefundOutcome:
    """Ask the processor for a planned refund; re-send with the same key on ProcessorError."""
    return gateway.refund(RefundRequest(processor_ref, plan.amount, idempotency_key))
