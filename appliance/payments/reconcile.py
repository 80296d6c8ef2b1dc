"""Reconciliation: the box's charges against the processor's records, and every difference between them.

`reconcile` is pure. Each box charge is matched to the processor's records by order reference;
what it reports:

- `missing_at_processor`: the box has a definite answer (succeeded, declined, awaiting shopper)
  the processor has no record of;
- `missing_on_box`: the processor has a charge with an order reference the box does not know;
- `duplicate`: the processor has more than one charge for one order reference (a double charge);
- `amount` / `currency`: the records disagree on what was charged;
- `state`: they disagree on the outcome (a pending box charge the processor already answered);
- `refunded`: they disagree on how much was given back.

A pending charge the processor has never seen, and a failed one it has no record of, are
consistent: the outbox simply has not sent it, or the processor refused it outright.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.payments.gateway import ProcessorCharge

BOX_STATES = ("pending", "succeeded", "declined", "requires_action", "failed")
_PROCESSOR_MUST_KNOW = ("succeeded", "declined", "requires_action")


@dataclass(frozen=True, slots=True)
class BoxCharge:
    """A charge as the box recorded it (fed from the vault)."""

    order_ref: str
    amount: int
    currency: str
    state: str
    refunded: int = 0

    def __post_init__(self) -> None:
        if not self.order_ref:
            raise ValueError("a box charge needs its order reference")
        if self.state not in BOX_STATES:
            raise ValueError(f"state must be one of {', '.join(BOX_STATES)}, got {self.state!r}")
        if self.amount < 0 or self.refunded < 0:
            raise ValueError(f"amounts must be >= 0, got {self.amount} and {self.refunded}")


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One difference between the box and the processor."""

    kind: str
    order_ref: str
    box: str
    processor: str

    def __str__(self) -> str:
        return f"{self.kind:<21} {self.order_ref}  box: {self.box or '-'}  processor: {self.processor or '-'}"


def _describe(charge: BoxCharge | ProcessorCharge) -> str:
    state = charge.state if isinstance(charge, BoxCharge) else charge.status
    return f"{state} {charge.amount} {charge.currency.upper()}"


def reconcile(box: Iterable[BoxCharge], processor: Iterable[ProcessorCharge]) -> list[Mismatch]:
    """Every difference between the box's charges and the processor's records, by order reference."""
    theirs: dict[str, list[ProcessorCharge]] = {}
    for record in processor:
        theirs.setdefault(record.order_ref, []).append(record)
    out: list[Mismatch] = []
    ours: set[str] = set()
    for charge in box:
        ours.add(charge.order_ref)
        records = theirs.get(charge.order_ref, [])
        if not records:
            if charge.state in _PROCESSOR_MUST_KNOW:
                out.append(Mismatch("missing_at_processor", charge.order_ref, _describe(charge), ""))
            continue
        if len(records) > 1:
            out.append(
                Mismatch("duplicate", charge.order_ref, _describe(charge), ", ".join(_describe(r) for r in records))
            )
        out.extend(_compare(charge, _main(records)))
    for ref, records in theirs.items():
        if ref not in ours:
            out.append(Mismatch("missing_on_box", ref, "", ", ".join(_describe(r) for r in records)))
    return out


def _main(records: Sequence[ProcessorCharge]) -> ProcessorCharge:
    succeeded = [r for r in records if r.status == "succeeded"]
    return (succeeded or list(records))[0]


def _compare(charge: BoxCharge, record: ProcessorCharge) -> list[Mismatch]:
    out: list[Mismatch] = []
    if charge.amount != record.amount:
        out.append(Mismatch("amount", charge.order_ref, str(charge.amount), str(record.amount)))
    if charge.currency.upper() != record.currency.upper():
        out.append(Mismatch("currency", charge.order_ref, charge.currency.upper(), record.currency.upper()))
    if charge.state != record.status:
        out.append(Mismatch("state", charge.order_ref, charge.state, record.status))
    if charge.refunded != record.refunded:
        out.append(Mismatch("refunded", charge.order_ref, str(charge.refunded), str(record.refunded)))
    return out
