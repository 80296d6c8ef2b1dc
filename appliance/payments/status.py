"""The owner's view of charging: what is waiting, and which visits need the shopper or were declined.

`payments_status(vault, now)` is the data the owner page and `appliance payments status` show. A
visit whose charge needs the shopper (`requires_action`: "awaiting shopper") or was declined is
listed until the owner has dealt with it outside the box; the outbox never re-sends it, and never
under a new key. Nothing here names a shopper: visits are random ids, amounts and codes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

from appliance.vault import CHARGE_STATES, Charge, Vault
from appliance.vault.records import DECLINED, FAILED, PENDING, REQUIRES_ACTION

NEEDS_OWNER = (REQUIRES_ACTION, DECLINED, FAILED)
"""Final states the box cannot resolve by itself: the owner follows them up with the shopper or processor."""


@dataclass(frozen=True, slots=True)
class UnpaidVisit:
    """A visit whose charge did not go through, as the owner sees it."""

    visit: str
    order_ref: str
    amount: int
    currency: str
    state: str
    label: str
    error_code: str
    left_at: int
    updated_at: int

    def as_json(self) -> dict[str, Any]:
        return {
            "visit": self.visit,
            "order_ref": self.order_ref,
            "amount": self.amount,
            "currency": self.currency,
            "state": self.state,
            "label": self.label,
            "error_code": self.error_code,
            "left_at": self.left_at,
            "updated_at": self.updated_at,
        }


@dataclass(frozen=True, slots=True)
class PaymentsStatus:
    """Charges per state, how long the oldest pending one has waited, and the visits needing the owner."""

    counts: dict[str, int]
    oldest_pending_s: float | None
    needs_owner: tuple[UnpaidVisit, ...]

    def as_json(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "oldest_pending_s": self.oldest_pending_s,
            "needs_owner": [v.as_json() for v in self.needs_owner],
        }


def unpaid_visit(charge: Charge) -> UnpaidVisit:
    """The owner's line for one charge."""
    return UnpaidVisit(
        visit=charge.visit,
        order_ref=charge.order_ref,
        amount=charge.amount,
        currency=charge.currency,
        state=charge.state,
        label=CHARGE_STATES.get(charge.state, charge.state),
        error_code=charge.error_code,
        left_at=charge.created_at,
        updated_at=charge.updated_at,
    )


def payments_status(vault: Vault, now: float) -> PaymentsStatus:
    """What the owner page shows about charging, read from the vault (newest problems first)."""
    charges = vault.charges()
    counts = Counter(c.state for c in charges)
    pending = [c.created_at for c in charges if c.state == PENDING]
    needs = sorted((unpaid_visit(c) for c in charges if c.state in NEEDS_OWNER), key=lambda v: -v.updated_at)
    return PaymentsStatus(
        counts={state: counts.get(state, 0) for state in CHARGE_STATES},
        oldest_pending_s=max(0.0, now - min(pending)) if pending else None,
        needs_owner=tuple(needs),
    )


def format_status(status: PaymentsStatus, labels: dict[str, str] | None = None) -> str:
    """The status as lines of text for the terminal."""
    labels = labels or CHARGE_STATES
    counted = ", ".join(f"{n} {labels.get(s, s)}" for s, n in status.counts.items() if n)
    out = [f"charges: {counted or 'none'}"]
    if status.oldest_pending_s is not None:
        out.append(f"oldest charge waiting to be sent: {status.oldest_pending_s:.0f} s")
    if status.needs_owner:
        out.append(f"{len(status.needs_owner)} visit(s) not paid:")
        for v in status.needs_owner:
            code = f" ({v.error_code})" if v.error_code else ""
            out.append(f"  visit {v.visit}  {v.amount} {v.currency}  {v.label}{code}")
    else:
        out.append("no visit needs the owner")
    return "\n".join(out)
