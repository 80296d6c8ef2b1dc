"""The interface to a payment processor: what a charge and a refund ask, and what comes back.

A processor adapter is a small class with three methods (`PaymentGateway`). It either returns a
definite answer or raises a `ProcessorError` saying what the caller may do next:

- `ProcessorUnavailableError`: no definite answer (network error, timeout, 409, 429, 5xx). Retry
  later with the SAME idempotency key; the processor replays the first answer it gave.
- `KeyConflictError`: the key was already used with different parameters. Never send a new key;
  look the order reference up (`find`) to learn what really happened.
- `ProcessorConfigError`: the processor refused the box itself (bad secret key, no
  permission). Charges stay pending; the owner must fix the configuration.

Every request carries only what shared/spec/payments.md allows: the token, the amount, the
currency, the visit's random order reference, the idempotency key and, when the pass had an
`rk`, the receipt sealed to it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

ChargeStatus = Literal["succeeded", "declined", "requires_action", "failed"]
CHARGE_STATUSES: tuple[ChargeStatus, ...] = ("succeeded", "declined", "requires_action", "failed")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_REF = re.compile(r"[A-Za-z0-9_-]{16,64}")


def new_order_ref() -> str:
    """A fresh random order reference: 128 bits, unlinkable to anything else the box stores."""
    return secrets.token_urlsafe(16)


def new_idempotency_key() -> str:
    """A fresh random idempotency key (never derived from the visit or the order reference)."""
    return secrets.token_urlsafe(24)


def _check_ref(name: str, value: str) -> None:
    if not _REF.fullmatch(value):
        raise ValueError(f"{name} must be 16-64 base64url characters, got {len(value)} characters")


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One charge, exactly as it is sent (and re-sent) to the processor.

    A retry must send an identical request: same key, same amount, same sealed receipt (seal it
    once, or deterministically with `seal_receipt(..., seed=...)`).
    """

    order_ref: str
    token: str
    amount: int
    currency: str
    idempotency_key: str
    receipt: str | None = None

    def __post_init__(self) -> None:
        _check_ref("order_ref", self.order_ref)
        _check_ref("idempotency_key", self.idempotency_key)
        if not 1 <= len(self.token) <= 255:
            raise ValueError("token must be 1-255 characters")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError(f"amount must be a positive whole number of minor units, got {self.amount!r}")
        if not _CURRENCY.fullmatch(self.currency):
            raise ValueError(f"currency must be an ISO 4217 code, got {self.currency!r}")

    def __repr__(self) -> str:
        return (
            f"ChargeRequest(order_ref={self.order_ref!r}, amount={self.amount}, currency={self.currency!r}, "
            f"token=<hidden>, receipt={'<sealed>' if self.receipt else None})"
        )


@dataclass(frozen=True, slots=True)
class ChargeOutcome:
    """A definite answer to a charge.

    `status`: `succeeded`; `declined` (the card said no); `requires_action` (the shopper must
    confirm in the app: "awaiting shopper", never retried with a new key); `failed` (the
    processor refused the request itself, e.g. an unknown token). `processor_ref` names the
    processor's record (a PaymentIntent id) when there is one; refunds need it.
    """

    status: ChargeStatus
    processor_ref: str = ""
    code: str = ""
    replayed: bool = False

    def __post_init__(self) -> None:
        if self.status not in CHARGE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(CHARGE_STATUSES)}, got {self.status!r}")


@dataclass(frozen=True, slots=True)
class RefundRequest:
    """Give back `amount` of the charge `processor_ref`; re-send with the same key until definite."""

    processor_ref: str
    amount: int
    idempotency_key: str

    def __post_init__(self) -> None:
        _check_ref("idempotency_key", self.idempotency_key)
        if not self.processor_ref:
            raise ValueError("a refund needs the processor's reference of the charge")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int) or self.amount <= 0:
            raise ValueError(f"amount must be a positive whole number of minor units, got {self.amount!r}")


@dataclass(frozen=True, slots=True)
class RefundOutcome:
    """A definite answer to a refund: `succeeded`, `pending` (the processor will settle it) or `failed`."""

    status: Literal["succeeded", "pending", "failed"]
    refund_ref: str = ""
    amount: int = 0
    code: str = ""


@dataclass(frozen=True, slots=True)
class ProcessorCharge:
    """The processor's record of one charge, as found by order reference or listed for reconciling.

    `status` uses the box's words (see `CHARGE_STATUSES`, plus `pending` while the processor is
    still working on it).
    """

    order_ref: str
    processor_ref: str
    amount: int
    currency: str
    status: str
    refunded: int = 0
    created: int = 0


class ProcessorError(Exception):
    """No definite answer; see the subclasses for what to do next."""


class ProcessorUnavailableError(ProcessorError):
    """Network error, timeout, 409, 429 or 5xx: retry later with the same key."""


class KeyConflictError(ProcessorError):
    """The idempotency key was used before with other parameters: look the charge up, never re-key."""


class ProcessorConfigError(ProcessorError):
    """The processor refused the box's credentials or permissions: the owner must act."""


class PaymentGateway(Protocol):
    """A payment processor, as the outbox and the owner's refunds see it."""

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Make (or replay) the charge; a definite answer or a ProcessorError."""
        ...

    def refund(self, request: RefundRequest) -> RefundOutcome:
        """Give money back on a charge; a definite answer or a ProcessorError."""
        ...

    def find(self, order_ref: str) -> Sequence[ProcessorCharge]:
        """Every processor record carrying this order reference (normally none or one)."""
        ...
