"""One attempt at a pending charge, and how long to wait before the next: the outbox's two decisions.

`retry_delay` is exponential backoff with full jitter: attempt n waits a uniform time in
[0, min(max, first * 2**n)], which spreads a crowd of retries after an outage instead of
hammering the processor in step. `attempt_charge` applies the spec's 24-hour rule: processors
may forget an idempotency key a day after its first use, so a charge first sent longer ago than
`lookup_after_s` is looked up by order reference before anything is sent again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from appliance.payments.gateway import (
    ChargeOutcome,
    ChargeRequest,
    KeyConflictError,
    PaymentGateway,
    ProcessorCharge,
    ProcessorUnavailableError,
)

LOOKUP_AFTER_S = 23 * 3600
_PREFERENCE = ("succeeded", "requires_action", "declined", "failed")


def retry_delay(attempt: int, first_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (0 for the first retry)."""
    if attempt < 0 or first_s <= 0 or max_s < first_s:
        raise ValueError(f"need attempt >= 0 and 0 < first_s <= max_s, got {attempt}, {first_s}, {max_s}")
    ceiling = min(max_s, first_s * 2.0 ** min(attempt, 60))
    return rng.uniform(0.0, ceiling)


def outcome_of(records: Sequence[ProcessorCharge]) -> ChargeOutcome | None:
    """The definite outcome the processor's records show for one order reference, if any.

    A succeeded record wins over any other (if one charge went through, the visit is paid);
    a record still `pending` at the processor means no definite answer yet.
    """
    for status in _PREFERENCE:
        for record in records:
            if record.status == status:
                return ChargeOutcome(status, processor_ref=record.processor_ref, replayed=True)  # type: ignore[arg-type]
    if records:
        raise ProcessorUnavailableError("the processor is still working on this charge")
    return None


def attempt_charge(
    gateway: PaymentGateway,
    request: ChargeRequest,
    *,
    first_sent_at: float | None,
    now: float,
    lookup_after_s: float = LOOKUP_AFTER_S,
) -> ChargeOutcome:
    """Send (or re-send) a charge, looking it up first once its key may have been forgotten.

    Args:
        gateway: the processor.
        request: the charge row as stored: the same key and parameters on every attempt.
        first_sent_at: when this charge was first sent (None if never).
        now: the box's clock.
        lookup_after_s: how old the first attempt may be before a look-up comes first; keep it
            below the processor's key lifetime (24 h at Stripe).

    A key conflict (the same key sent before with other parameters) is answered from the
    processor's records for the order reference.

    Raises:
        ProcessorError: no definite answer; retry later with the same request.
    """
    if first_sent_at is not None and now - first_sent_at >= lookup_after_s:
        found = outcome_of(gateway.find(request.order_ref))
        if found is not None:
            return found
    try:
        return gateway.charge(request)
    except KeyConflictError:
        # The key already made a charge with other parameters (a changed row, or a receipt sealed
        # anew): what the processor did under this order reference is the answer, never a new key.
        found = outcome_of(gateway.find(request.order_ref))
        if found is None:
            raise
        return found
