"""Egress of a whole simulated day: every byte the appliance sends to the processor holds only what the spec allows.

The appliance plays a day (some passes carry a receipt key), the processor fails some requests so
charges are retried, and a line and a whole visit are refunded afterwards. A wiretap between the
Stripe adapter and the sandbox keeps every byte; each request is then checked field by field
against shared/spec/payments.md, and the whole stream for anything that names the shop, a product,
a visit, a pass or a time.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import stripe
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.app import Appliance, RecordingSource
from appliance.bench.faults import drive
from appliance.gate.clock import ManualClock
from appliance.gate.passes import b64url_encode, issue_pass, parse_pass_unchecked
from appliance.gate.sealed import public_bytes
from appliance.payments.faults import Fault
from appliance.payments.receipts import open_receipt, receipt_from_metadata
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway
from appliance.payments.wiretap import Wiretap
from appliance.replay import replay
from appliance.sim.recording import Recording
from appliance.vault import RetentionPolicy, Vault

SEED = 3
ALLOWED_HEADERS = {
    "host", "user-agent", "accept-encoding", "accept", "connection", "authorization", "idempotency-key",
    "content-type", "content-length", "stripe-version", "x-stripe-client-user-agent",
}  # fmt: skip
CHARGE_FIELDS = {"amount", "currency", "customer", "payment_method", "off_session", "confirm", "metadata[order_ref]"}


@pytest.fixture(scope="module")
def day_with_receipt_keys() -> tuple[Recording, X25519PrivateKey]:
    """A simulated day whose every other pass carries the shopper app's receipt key (re-signed by its issuer)."""
    from appliance.sim import simulate
    from appliance.sim.live import as_recording
    from appliance.sim.shop import issuer_key

    recording = as_recording(simulate("rush", SEED, shoppers=6, duration_s=140.0))
    shopper = X25519PrivateKey.from_private_bytes(bytes(range(7, 39)))
    gate = []
    for i, event in enumerate(recording.gate):
        if event.kind == "entry" and i % 2 == 0:
            c = parse_pass_unchecked(event.pass_text)
            payload = {"iss": c.iss, "tok": c.tok, "iat": c.iat, "exp": c.exp, "nonce": c.nonce, "party": c.party,
                       "rk": b64url_encode(public_bytes(shopper))}  # fmt: skip
            event = dataclasses.replace(event, pass_text=issue_pass(issuer_key(SEED), payload))
        gate.append(event)
    recording.gate = gate
    return recording, shopper


@pytest.fixture
def tap(sandbox: SandboxProcessor) -> Iterator[Wiretap]:
    with Wiretap(sandbox.port) as t:
        yield t


def test_a_whole_day_sends_the_processor_only_what_the_spec_allows(
    day_with_receipt_keys: tuple[Recording, X25519PrivateKey], sandbox: SandboxProcessor, tap: Wiretap,
    tmp_path: Path,
) -> None:  # fmt: skip
    recording, shopper = day_with_receipt_keys
    assert isinstance(sandbox.clock, ManualClock)
    for kind in ("error_500", "drop_after_commit", "conflict_409"):
        sandbox.inject(Fault(kind, times=2))  # type: ignore[arg-type]
    gateway = StripeGateway("sk_test_egress", tap.url, read_timeout_s=5.0)
    with Vault.open(tmp_path / "vault", secrets.token_bytes(32), RetentionPolicy.load(), sandbox.clock) as vault:
        app = Appliance(recording.config, RecordingSource(recording), vault=vault, gateway=gateway,
                        clock=sandbox.clock, retention=False)  # fmt: skip
        app.start()
        try:
            assert app.wait_source(60) and app.outbox is not None
            drive(app.outbox, sandbox.clock)
            paid = [c for c in vault.charges() if c.state == "succeeded"]
            assert len(paid) >= 3
            app.outbox.refund_line(paid[0].order_ref, paid[0].lines[0].sku)
            app.outbox.refund_visit(paid[1].order_ref, reason="not_taken")
            drive(app.outbox, sandbox.clock)
        finally:
            app.stop()
            gateway.close()
        charges = {c.order_ref: c for c in vault.charges()}
        refunds = {r.idempotency_key: r for r in vault.refunds()}
        visits = {c.visit for c in charges.values()}
        passes = {}
        for e in recording.gate:
            if e.kind == "entry":
                claims = parse_pass_unchecked(e.pass_text)
                known = vault.admitted_pass(claims.nonce)
                assert known is not None
                passes[known.visit] = (claims, e.pass_text)

    requests = tap.requests()
    sent_charges = [r for r in requests if (r.method, r.path) == ("POST", "/v1/payment_intents")]
    sent_refunds = [r for r in requests if (r.method, r.path) == ("POST", "/v1/refunds")]
    assert len(sent_charges) >= len(paid) + 6  # every charge, and the retries the faults forced
    assert len(sent_refunds) == 2 and len(sent_charges) + len(sent_refunds) == len(requests)

    for request in requests:
        assert set(request.headers) <= ALLOWED_HEADERS, set(request.headers) - ALLOWED_HEADERS
        assert request.headers["authorization"] == "Bearer sk_test_egress"
        assert request.headers["user-agent"] == f"Stripe/v1 PythonBindings/{stripe.VERSION}"
        assert json.loads(request.headers["x-stripe-client-user-agent"]) == {
            "bindings_version": stripe.VERSION, "lang": "python",
        }  # fmt: skip

    first_seen: dict[str, tuple[tuple[str, str], ...]] = {}
    with_receipt = 0
    for request in sent_charges:
        fields = dict(request.form)
        assert len(fields) == len(request.form), "a field was sent twice"
        charge = charges[fields["metadata[order_ref]"]]
        claims, _ = passes[charge.visit]
        customer, method = claims.tok.split("/")
        receipt_fields = {k: v for k, v in fields.items() if k.startswith("metadata[receipt_")}
        assert {k: v for k, v in fields.items() if k not in receipt_fields} == {
            "amount": str(charge.amount), "currency": "krw", "customer": customer, "payment_method": method,
            "off_session": "true", "confirm": "true", "metadata[order_ref]": charge.order_ref,
        }  # fmt: skip
        assert request.headers["idempotency-key"] == charge.idempotency_key
        assert first_seen.setdefault(charge.order_ref, request.form) == request.form, "a retry differed"
        if claims.rk is None:
            assert receipt_fields == {}
        else:
            with_receipt += 1
            sealed = receipt_from_metadata({k[len("metadata[") : -1]: v for k, v in receipt_fields.items()})
            assert sealed is not None
            document = open_receipt(sealed, shopper)
            assert document["total"] == charge.amount and document["order_ref"] == charge.order_ref
    assert with_receipt > 0 and len(first_seen) == sum(1 for c in charges.values() if c.amount > 0)

    for request in sent_refunds:
        fields = dict(request.form)
        refund = refunds[request.headers["idempotency-key"]]
        assert fields == {"payment_intent": charges[refund.order_ref].processor_ref, "amount": str(refund.amount)}

    stream = tap.sent()
    config = recording.config
    forbidden = [config.store.id, config.store.name, config.store.timezone]
    forbidden += [p.sku for p in config.products] + [p.name for p in config.products if p.name]
    forbidden += [s.id for s in config.sensors] + sorted(visits)
    for claims, text in passes.values():
        forbidden += [claims.nonce, text.split(".")[1][:40], claims.iss]
    for receipt in replay(recording).receipts:
        forbidden += [str(int(receipt.entered)), str(int(receipt.left))]
    for word in forbidden:
        assert word.encode() not in stream, f"{word!r} left the box"
