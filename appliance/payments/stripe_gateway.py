"""The Stripe adapter: off-session PaymentIntents, refunds and look-ups on the official `stripe` library.

A charge is one `POST /v1/payment_intents` with `customer`, `payment_method`,
`off_session=true`, `confirm=true`, `amount`, `currency` and the order reference (plus the
sealed receipt, if any) in `metadata`, sent with the charge's `Idempotency-Key`. The library's
own retries are off: the outbox retries with the same key, so a retry is always visible and
always idempotent.

What leaves the box is pinned here, not left to the library's defaults:
- telemetry off (it would send a persistent install id, the platform string and the previous
  request's timing);
- `User-Agent` and `X-Stripe-Client-User-Agent` fixed to the library name and version;
- proxy settings from the environment ignored (the API base is the only destination);
- the library's logger capped at WARNING (its debug lines print request bodies, i.e. tokens).

The pass's token is `<customer>/<payment_method>` (e.g. `cus_demo/pm_card_visa`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import requests
import stripe

from appliance.config.model import PaymentSettings
from appliance.payments.gateway import (
    ChargeOutcome,
    ChargeRequest,
    ChargeStatus,
    KeyConflictError,
    ProcessorCharge,
    ProcessorConfigError,
    ProcessorUnavailableError,
    RefundOutcome,
    RefundRequest,
)
from appliance.payments.receipts import receipt_metadata

logger = logging.getLogger(__name__)

ORDER_REF_KEY = "order_ref"
_HEADERS = {
    "User-Agent": f"Stripe/v1 PythonBindings/{stripe.VERSION}",
    "X-Stripe-Client-User-Agent": json.dumps({"bindings_version": stripe.VERSION, "lang": "python"}),
}
_NEEDS_SHOPPER = {"authentication_required"}
_ORDER_REF = re.compile(r"[A-Za-z0-9_-]{1,64}")


def split_token(token: str) -> tuple[str, str] | None:
    """`cus_x/pm_y` -> ("cus_x", "pm_y"); None when the token is not such a pair."""
    customer, sep, method = token.partition("/")
    if not sep or not customer.startswith("cus_") or not method.startswith("pm_") or "/" in method:
        return None
    return customer, method


def box_status(intent_status: str, error_code: str = "") -> str:
    """A PaymentIntent's status in the box's words (succeeded, declined, requires_action, failed, pending)."""
    if intent_status == "succeeded":
        return "succeeded"
    if intent_status == "requires_action" or error_code in _NEEDS_SHOPPER:
        return "requires_action"
    if intent_status == "requires_payment_method":
        return "declined"
    if intent_status == "canceled":
        return "failed"
    return "pending"


def read_secret_key(path: str | Path) -> str:
    """The processor secret key from its file (first line); raises ValueError naming the problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ValueError(f"cannot read the processor secret key file {path}: {err.strerror or err}") from err
    key = text.strip().splitlines()[0].strip() if text.strip() else ""
    if not key.startswith(("sk_", "rk_")):
        raise ValueError(f"{path} does not hold a processor secret key (it should start with sk_ or rk_)")
    return key


SANDBOX_KEY = "sk_test_sandbox"


def gateway_from_settings(settings: PaymentSettings) -> StripeGateway:
    """The gateway the `[payments]` section describes; raises ValueError if the key file is unusable."""
    if settings.secret_key_file:
        key = read_secret_key(settings.secret_key_file)
    elif settings.processor == "sandbox":
        key = SANDBOX_KEY
    else:
        raise ValueError("payments.secret_key_file is required to charge a real processor")
    return StripeGateway(
        key, settings.api_base, connect_timeout_s=settings.connect_timeout_s, read_timeout_s=settings.read_timeout_s
    )


class StripeGateway:
    """A `PaymentGateway` speaking Stripe's API through the official library.

    Args:
        api_key: the secret key (read it with `read_secret_key`; never put it in config or logs).
        api_base: where the API is: `https://api.stripe.com`, or the sandbox on loopback.
        connect_timeout_s: how long to wait for a connection; a short one fails fast when the
            processor is down, the outbox retries anyway.
        read_timeout_s: how long to wait for an answer; longer waits more often for a slow but
            definite answer, shorter retries sooner (same key, so never a double charge).
    """

    def __init__(
        self, api_key: str, api_base: str, *, connect_timeout_s: float = 3.0, read_timeout_s: float = 10.0
    ) -> None:
        stripe.enable_telemetry = False
        logging.getLogger("stripe").setLevel(logging.WARNING)
        session = requests.Session()
        session.trust_env = False
        self._session = session
        self.api_base = api_base.rstrip("/")
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": self.api_base},
            max_network_retries=0,
            http_client=stripe.RequestsClient(timeout=(connect_timeout_s, read_timeout_s), session=session),
        )

    def close(self) -> None:
        """Close the kept-alive connections to the processor."""
        self._session.close()

    def _options(self, idempotency_key: str | None = None) -> Any:
        options: dict[str, Any] = {"max_network_retries": 0, "headers": dict(_HEADERS)}
        if idempotency_key is not None:
            options["idempotency_key"] = idempotency_key
        return options

    def charge(self, request: ChargeRequest) -> ChargeOutcome:
        """Create and confirm an off-session PaymentIntent (or get the first answer replayed)."""
        pair = split_token(request.token)
        if pair is None:
            return ChargeOutcome("failed", code="token_unusable")
        metadata = {ORDER_REF_KEY: request.order_ref}
        if request.receipt:
            metadata.update(receipt_metadata(request.receipt))
        params: Any = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "customer": pair[0],
            "payment_method": pair[1],
            "off_session": True,
            "confirm": True,
            "metadata": metadata,
        }
        try:
            intent = self._client.v1.payment_intents.create(params, self._options(request.idempotency_key))
        except stripe.CardError as err:
            return self._card_error(err)
        except stripe.IdempotencyError as err:
            raise KeyConflictError("the idempotency key was already used with other parameters") from err
        except stripe.InvalidRequestError as err:
            return ChargeOutcome("failed", code=str(err.code or "invalid_request"), replayed=_replayed(err))
        except stripe.StripeError as err:
            raise self._no_answer(err) from err
        status = box_status(str(intent.status))
        if status == "pending":
            raise ProcessorUnavailableError(f"the processor is still working on the charge ({intent.status})")
        replayed = _header(intent.last_response.headers if intent.last_response else None, "idempotent-replayed")
        return ChargeOutcome(status, processor_ref=str(intent.id), replayed=replayed == "true")  # type: ignore[arg-type]

    def _card_error(self, err: stripe.CardError) -> ChargeOutcome:
        error = _dict(_dict(err.json_body).get("error"))
        intent = _dict(error.get("payment_intent"))
        code = str(err.code or error.get("code") or "")
        status: ChargeStatus = "requires_action" if code in _NEEDS_SHOPPER else "declined"
        decline = str(error.get("decline_code") or "")
        ref = str(intent.get("id", ""))
        return ChargeOutcome(status, processor_ref=ref, code=decline or code, replayed=_replayed(err))

    def _no_answer(self, err: stripe.StripeError) -> Exception:
        if isinstance(err, (stripe.AuthenticationError, stripe.PermissionError)):
            return ProcessorConfigError(f"the processor refused the box's credentials ({err.http_status})")
        status = err.http_status
        what = f"HTTP {status}" if status else type(err).__name__
        return ProcessorUnavailableError(f"no definite answer from the processor ({what})")

    def refund(self, request: RefundRequest) -> RefundOutcome:
        """Refund part or all of a charge (`POST /v1/refunds`) with the refund's own key."""
        params: Any = {"payment_intent": request.processor_ref, "amount": request.amount}
        try:
            refund = self._client.v1.refunds.create(params, self._options(request.idempotency_key))
        except stripe.IdempotencyError as err:
            raise KeyConflictError("the refund's idempotency key was already used with other parameters") from err
        except stripe.InvalidRequestError as err:
            return RefundOutcome("failed", code=str(err.code or "invalid_request"))
        except stripe.StripeError as err:
            raise self._no_answer(err) from err
        status = str(refund.status)
        if status in ("succeeded", "pending", "requires_action"):
            return RefundOutcome(
                "succeeded" if status == "succeeded" else "pending", str(refund.id), int(refund.amount or 0)
            )
        return RefundOutcome("failed", str(refund.id), int(refund.amount or 0), code=status)

    def find(self, order_ref: str) -> Sequence[ProcessorCharge]:
        """Every PaymentIntent whose metadata carries `order_ref` (Search API).

        Stripe's search lags writes by up to a minute (more in outages), so use it for charges
        whose key may have been forgotten (a day old), not right after a timeout.
        """
        if not _ORDER_REF.fullmatch(order_ref):
            raise ValueError("an order reference is 1-64 base64url characters")
        query = f"metadata['{ORDER_REF_KEY}']:'{order_ref}'"
        try:
            result = self._client.v1.payment_intents.search({"query": query, "limit": 10}, self._options())
        except stripe.StripeError as err:
            raise self._no_answer(err) from err
        refunded = self._refunded(result.data)
        return [self._record(intent, refunded) for intent in result.data]

    def list_charges(self, *, created_from: int | None = None, created_to: int | None = None) -> list[ProcessorCharge]:
        """Every PaymentIntent carrying an order reference, created in [from, to) if given, with refunds.

        For reconciliation; pages through the list API.
        """
        params: dict[str, Any] = {"limit": 100}
        created: dict[str, int] = {}
        if created_from is not None:
            created["gte"] = created_from
        if created_to is not None:
            created["lt"] = created_to
        if created:
            params["created"] = created
        intents = [i for i in self._pages(self._client.v1.payment_intents.list, params) if _order_ref(i)]
        refunds: dict[str, int] = {}
        for refund in self._pages(self._client.v1.refunds.list, {"limit": 100}):
            if str(refund.status) in ("succeeded", "pending"):
                pi = str(refund.payment_intent or "")
                refunds[pi] = refunds.get(pi, 0) + int(refund.amount or 0)
        return [self._record(intent, refunds) for intent in intents]

    def _pages(self, fetch: Any, params: dict[str, Any]) -> Iterator[Any]:
        while True:
            try:
                page = fetch(params, self._options())
            except stripe.StripeError as err:
                raise self._no_answer(err) from err
            yield from page.data
            if not page.has_more or not page.data:
                return
            params = {**params, "starting_after": page.data[-1].id}

    def _refunded(self, intents: Sequence[Any]) -> dict[str, int]:
        out: dict[str, int] = {}
        for intent in intents:
            for refund in self._pages(self._client.v1.refunds.list, {"limit": 100, "payment_intent": intent.id}):
                if str(refund.status) in ("succeeded", "pending"):
                    out[str(intent.id)] = out.get(str(intent.id), 0) + int(refund.amount or 0)
        return out

    @staticmethod
    def _record(intent: Any, refunded: dict[str, int]) -> ProcessorCharge:
        data = intent.to_dict()
        error = data.get("last_payment_error") or {}
        return ProcessorCharge(
            order_ref=_order_ref(intent),
            processor_ref=str(data["id"]),
            amount=int(data["amount"]),
            currency=str(data["currency"]).upper(),
            status=box_status(str(data["status"]), str(error.get("code") or "")),
            refunded=refunded.get(str(data["id"]), 0),
            created=int(data.get("created") or 0),
        )


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _order_ref(intent: Any) -> str:
    metadata = intent.to_dict().get("metadata") or {}
    return str(metadata.get(ORDER_REF_KEY, ""))


def _header(headers: Any, name: str) -> str:
    if headers is None:
        return ""
    value = headers.get(name) or headers.get(name.title()) or ""
    return str(value).lower()


def _replayed(err: stripe.StripeError) -> bool:
    return _header(err.headers, "idempotent-replayed") == "true"
