"""What the vault hands back: visits, cart lines, review items, charges, refunds and retention runs.

All plain frozen data. The charge and refund life cycles are pure functions here so the table of
allowed moves is tested on its own (and the outbox can ask before it tries).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from appliance.events import Evidence, ReceiptLine

PENDING = "pending"
SUCCEEDED = "succeeded"
DECLINED = "declined"
REQUIRES_ACTION = "requires_action"
FAILED = "failed"
NONE_DUE = "none_due"

CHARGE_STATES: dict[str, str] = {
    PENDING: "waiting to be sent",
    SUCCEEDED: "paid",
    DECLINED: "declined",
    REQUIRES_ACTION: "awaiting shopper",
    FAILED: "failed",
    NONE_DUE: "nothing to pay",
}
"""Every charge state with the words the owner page shows for it."""

CHARGE_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({SUCCEEDED, DECLINED, REQUIRES_ACTION, FAILED}),
    REQUIRES_ACTION: frozenset({SUCCEEDED, DECLINED, FAILED}),
    SUCCEEDED: frozenset(),
    DECLINED: frozenset(),
    FAILED: frozenset(),
    NONE_DUE: frozenset(),
}
"""Allowed state changes. Nothing returns to pending; `requires_action` may still end when the shopper acts."""

FINAL_CHARGE_STATES = frozenset(CHARGE_STATES) - {PENDING}
"""States in which the outbox is done with a charge and its token must be destroyed."""

REFUND_STATES: dict[str, str] = {PENDING: "waiting to be sent", SUCCEEDED: "refunded", FAILED: "failed"}
REFUND_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({SUCCEEDED, FAILED}),
    SUCCEEDED: frozenset(),
    FAILED: frozenset(),
}


def charge_move_allowed(current: str, new: str) -> bool:
    """Whether a charge in `current` may be set to `new` (writing the same state again is allowed)."""
    if current not in CHARGE_MOVES or new not in CHARGE_MOVES:
        return False
    return new == current or new in CHARGE_MOVES[current]


def refund_move_allowed(current: str, new: str) -> bool:
    """Whether a refund in `current` may be set to `new` (writing the same state again is allowed)."""
    if current not in REFUND_MOVES or new not in REFUND_MOVES:
        return False
    return new == current or new in REFUND_MOVES[current]


@dataclass(frozen=True, slots=True)
class Visit:
    """A visit as stored: a random id, minutes of entry and exit, and how many came in on the pass."""

    id: str
    entered_at: int
    left_at: int | None
    party: int
    state: str


@dataclass(frozen=True, slots=True)
class AdmittedPass:
    """A pass the gate admitted: the visit it opened, and when the pass expires (unix s, to the minute)."""

    visit: str
    expires_at: int


@dataclass(frozen=True, slots=True)
class CartLine:
    """One stored cart change with the evidence for it."""

    visit: str
    sku: str
    qty: int
    grams: float
    evidence: Evidence
    stored_at: int


@dataclass(frozen=True, slots=True)
class OpenReviewItem:
    """A review item waiting for a person: its id for `resolve_review_item`, and what the box saw."""

    id: int
    visit: str
    reason: str
    candidates: tuple[tuple[str, int], ...]
    evidence: Evidence
    stored_at: int


@dataclass(frozen=True, slots=True)
class Charge:
    """One visit's charge: the row the outbox sends, retries with the same key, and settles.

    `order_ref` and `idempotency_key` are random, made when the visit closed, and never change.
    """

    order_ref: str
    visit: str
    amount: int
    currency: str
    state: str
    idempotency_key: str
    processor_ref: str
    error_code: str
    created_at: int
    updated_at: int
    lines: tuple[ReceiptLine, ...] = ()

    @property
    def final(self) -> bool:
        return self.state in FINAL_CHARGE_STATES

    @property
    def state_label(self) -> str:
        return CHARGE_STATES.get(self.state, self.state)


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund of one line (`sku` and `qty`) or of a whole visit (`sku` empty), with its own key."""

    id: str
    order_ref: str
    amount: int
    sku: str
    qty: int
    reason: str
    state: str
    idempotency_key: str
    processor_ref: str
    error_code: str
    created_at: int
    updated_at: int


@dataclass(frozen=True, slots=True)
class RetentionRun:
    """What one run of the retention engine did."""

    started_at: int
    finished_at: int
    deleted: Mapping[str, int] = field(hash=False)
    keys_destroyed: tuple[str, ...]
    tokens_destroyed: int
    charges_failed: int
    audit_bodies_pruned: int
    orphan_files_removed: int

    @property
    def total_deleted(self) -> int:
        return sum(self.deleted.values())
