"""Egress: every byte the box sends to the processor during a busy run holds only what the spec allows.

A recording TCP proxy on loopback sits between StripeGateway and the sandbox processor. After many
charges (some with sealed receipts, some retried through faults), refunds and a look-up, the
recorded requests are parsed and checked field by field against shared/spec/payments.md: the
token, the amount, the currency, a random order reference, the idempotency key and the sealed
receipt; nothing else, and no item name, store-internal id or time anywhere in the stream.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest
import stripe
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.events import Receipt, ReceiptLine
from appliance.gate.passes import b64url_encode
from appliance.gate.sealed import public_bytes
from appliance.payments.faults import Fault
from appliance.payments.gateway import ChargeRequest, ProcessorUnavailableError, RefundRequest
from appliance.payments.receipts import open_receipt, receipt_document, receipt_from_metadata, seal_receipt
from appliance.payments.refunds import LineRefund, plan_line_refund, plan_visit_refund
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway
from appliance.payments.wiretap import Wiretap

PRODUCTS = [
    ("8801007001011", "Banana milk", 1700),
    ("8801043015202", "Shin Ramyun", 1100),
    ("8809061420115", "Samdasoo 2L", 1450),
    ("8801062518244", "Pepero almond", 1900),
    ("8801115114154", "Seoul milk 1L", 2980),
    ("8801045310127", "Kimbap tuna", 3500),
]
SHOP_ID, GATE_ID, SHOP_NAME = "corner-7", "gate1", "Corner Seven"
ALLOWED_HEADERS = {
    "host", "user-agent", "accept-encoding", "accept", "connection", "authorization", "idempotency-key",
    "content-type", "content-length", "stripe-version", "x-stripe-client-user-agent",
}  # fmt: skip


@pytest.fixture
def proxy(sandbox: SandboxProcessor) -> Iterator[Wiretap]:
    with Wiretap(sandbox.port) as tap:
        yield tap


def test_only_the_allowed_fields_leave_the_box(sandbox: SandboxProcessor, proxy: Wiretap) -> None:
    rng = random.Random(11)
    gateway = StripeGateway("sk_test_egress", proxy.url, read_timeout_s=5.0)
    shopper = X25519PrivateKey.from_private_bytes(bytes(range(200, 232)))
    visits: dict[str, dict[str, object]] = {}
    t = 1_750_000_000.0
    for n in range(60):
        lines = tuple(
            ReceiptLine(sku, name, qty, 0.0, qty * price)
            for sku, name, price in rng.sample(PRODUCTS, rng.randint(1, 4))
            for qty in [rng.randint(1, 3)]
        )
        visit_id = f"visit-{rng.getrandbits(48):012x}"
        t += rng.uniform(30, 600)
        receipt = Receipt(visit_id, t, t + rng.uniform(60, 900), "KRW", lines)
        order_ref = b64url_encode(rng.randbytes(16))
        sealed = None
        if n % 3 == 0:
            document = receipt_document(receipt, shop=SHOP_NAME, timezone="Asia/Seoul", order_ref=order_ref)
            sealed = seal_receipt(document, public_bytes(shopper), seed=rng.randbytes(32))
        token = f"cus_{rng.getrandbits(40):010x}/pm_card_{'chargeDeclined' if n % 10 == 7 else 'visa'}"
        charge = ChargeRequest(order_ref, token, receipt.total, "KRW", b64url_encode(rng.randbytes(24)), sealed)
        if n % 7 == 3:
            sandbox.inject(Fault(rng.choice(["error_500", "drop_after_commit"])))  # type: ignore[arg-type]
        while True:
            try:
                outcome = gateway.charge(charge)
                break
            except ProcessorUnavailableError:
                continue  # the outbox's retry: same request, same key
        visits[order_ref] = {"charge": charge, "receipt": receipt, "outcome": outcome}
        if outcome.status == "succeeded" and n % 5 == 1:
            plan = plan_line_refund(lines, [LineRefund(0)], charged=receipt.total)
            if len(lines) == 1 or n % 2:
                plan = plan_visit_refund(lines, charged=receipt.total)
            key = b64url_encode(rng.randbytes(24))
            gateway.refund(RefundRequest(outcome.processor_ref, plan.amount, key))
            visits[order_ref]["refund"] = (plan.amount, key)
    gateway.find(next(iter(visits)))  # one look-up, as after a forgotten key

    stream = proxy.sent()
    requests = proxy.requests()
    charges_seen = [r for r in requests if (r.method, r.path) == ("POST", "/v1/payment_intents")]
    refunds_seen = [r for r in requests if (r.method, r.path) == ("POST", "/v1/refunds")]
    lookups = [r for r in requests if r.method == "GET"]
    assert len(charges_seen) >= 60 + sum(1 for n in range(60) if n % 7 == 3)
    assert len(refunds_seen) == sum(1 for v in visits.values() if "refund" in v)
    assert len(charges_seen) + len(refunds_seen) + len(lookups) == len(requests)

    for request in requests:
        assert set(request.headers) <= ALLOWED_HEADERS, set(request.headers) - ALLOWED_HEADERS
        assert request.headers["authorization"] == "Bearer sk_test_egress"
        assert request.headers["user-agent"] == f"Stripe/v1 PythonBindings/{stripe.VERSION}"
        assert json.loads(request.headers["x-stripe-client-user-agent"]) == {
            "bindings_version": stripe.VERSION,
            "lang": "python",
        }

    for request in charges_seen:
        fields = dict(request.form)
        assert len(fields) == len(request.form), "a field was sent twice"
        visit = visits[fields["metadata[order_ref]"]]
        charge: ChargeRequest = visit["charge"]  # type: ignore[assignment]
        customer, method = charge.token.split("/")
        expected = {
            "amount": str(charge.amount),
            "currency": "krw",
            "customer": customer,
            "payment_method": method,
            "off_session": "true",
            "confirm": "true",
            "metadata[order_ref]": charge.order_ref,
        }
        receipt_fields = {k: v for k, v in fields.items() if k.startswith("metadata[receipt_")}
        assert {k: v for k, v in fields.items() if k not in receipt_fields} == expected
        assert request.headers["idempotency-key"] == charge.idempotency_key
        if charge.receipt is None:
            assert receipt_fields == {}
        else:
            metadata = {k[len("metadata[") : -1]: v for k, v in receipt_fields.items()}
            sealed = receipt_from_metadata(metadata)
            assert sealed == charge.receipt
            assert open_receipt(sealed, shopper)["total"] == charge.amount  # the shopper can read it

    for request in refunds_seen:
        fields = dict(request.form)
        assert set(fields) == {"payment_intent", "amount"} and fields["payment_intent"].startswith("pi_")
        assert (int(fields["amount"]), request.headers["idempotency-key"]) in [
            v["refund"] for v in visits.values() if "refund" in v
        ]

    for request in lookups:
        assert request.path in ("/v1/payment_intents/search", "/v1/refunds")
        if request.path.endswith("search"):
            assert request.query == (("query", f"metadata['order_ref']:'{next(iter(visits))}'"), ("limit", "10"))

    refs = list(visits)
    assert len(set(refs)) == len(refs) and all(len(r) >= 22 for r in refs)
    forbidden: list[str] = [SHOP_ID, GATE_ID, SHOP_NAME, "Asia/Seoul"]
    for v in visits.values():
        receipt: Receipt = v["receipt"]  # type: ignore[no-redef]
        forbidden += [receipt.visit, str(int(receipt.entered)), str(int(receipt.left))]
    for sku, name, _price in PRODUCTS:
        forbidden += [sku, name, name.split()[0]]
    for word in forbidden:
        assert word.encode() not in stream, f"{word!r} left the box"
