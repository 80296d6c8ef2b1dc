"""Payments: processor adapters (Stripe, sandbox), charge attempts, refunds, reconciliation, sealed receipts.

The only part of the box that talks to the outside world, and only with what
shared/spec/payments.md allows.
"""

from appliance.payments.attempts import attempt_charge, outcome_of, retry_delay
from appliance.payments.gateway import (
    ChargeOutcome,
    ChargeRequest,
    KeyConflictError,
    PaymentGateway,
    ProcessorCharge,
    ProcessorConfigError,
    ProcessorError,
    ProcessorUnavailableError,
    RefundOutcome,
    RefundRequest,
    new_idempotency_key,
    new_order_ref,
)
from appliance.payments.outbox import Outbox, OutboxPass
from appliance.payments.receipts import ReceiptError, open_receipt, receipt_document, seal_receipt
from appliance.payments.reconcile import BoxCharge, Mismatch, reconcile
from appliance.payments.refunds import LineRefund, RefundError, RefundPlan, plan_line_refund, plan_visit_refund
from appliance.payments.status import PaymentsStatus, UnpaidVisit, payments_status
from appliance.payments.stripe_gateway import StripeGateway, gateway_from_settings

__all__ = [
    "BoxCharge",
    "ChargeOutcome",
    "ChargeRequest",
    "KeyConflictError",
    "LineRefund",
    "Mismatch",
    "Outbox",
    "OutboxPass",
    "PaymentGateway",
    "PaymentsStatus",
    "ProcessorCharge",
    "ProcessorConfigError",
    "ProcessorError",
    "ProcessorUnavailableError",
    "ReceiptError",
    "RefundError",
    "RefundOutcome",
    "RefundPlan",
    "RefundRequest",
    "StripeGateway",
    "UnpaidVisit",
    "attempt_charge",
    "gateway_from_settings",
    "new_idempotency_key",
    "new_order_ref",
    "open_receipt",
    "outcome_of",
    "payments_status",
    "plan_line_refund",
    "plan_visit_refund",
    "receipt_document",
    "reconcile",
    "retry_delay",
    "seal_receipt",
]
