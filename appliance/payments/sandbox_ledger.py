"""The sandbox processor's books: PaymentIntents, refunds and idempotency keys, kept by Stripe's rules.

State lives in its own SQLite file (WAL, synchronous=FULL). One request is one transaction:
the objects it creates and the answer saved under its idempotency key commit together, before
the answer is sent, so a crash (kill -9, power loss) never leaves a charge without its saved
answer or an answer without its charge.

Idempotency, as shared/spec/payments.md asks:
- the first answer for a key (success or error) is saved and replayed on retries, marked with
  the `Idempotent-Replayed: true` header;
- the same key with different parameters, or on another endpoint, is a 400 `idempotency_error`;
- a key still being worked on answers 409 to a concurrent retry;
- keys are forgotten 24 hours after first use, by the sandbox's (injected) clock; after that the
  same request makes a new charge, which is why the outbox looks the order reference up first.
Requests that fail validation save nothing, as at Stripe.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.gate.clock import Clock
from appliance.payments.faults import Fault

KEY_LIFETIME_S = 24 * 3600
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY = 40
MAX_METADATA_VALUE = 500
_ID = re.compile(r"[A-Za-z0-9_]{1,255}")
_CONFIRM = re.compile(r"/v1/payment_intents/(pi_[A-Za-z0-9]{1,64})/confirm")
_SEARCH = re.compile(r"metadata\['([A-Za-z0-9_]{1,40})'\]:'([A-Za-z0-9_-]{1,500})'")
_METADATA = re.compile(r"metadata\[([^\[\]]{1,100})\]")

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    kind TEXT NOT NULL,
    created INTEGER NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS objects_kind ON objects(kind, n);
CREATE INDEX IF NOT EXISTS objects_parent ON objects(parent);
CREATE TABLE IF NOT EXISTS metadata (
    object TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS metadata_value ON metadata(key, value);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    created REAL NOT NULL,
    fingerprint TEXT NOT NULL,
    status INTEGER NOT NULL,
    body TEXT NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP answer: status and JSON body; `replayed` when it came from a saved key."""

    status: int
    body: dict[str, Any]
    replayed: bool = False


class ApiError(Exception):
    """A Stripe-shaped error answer."""

    def __init__(self, status: int, type_: str, message: str, *, code: str = "", param: str = "", **extra: Any):
        super().__init__(message)
        self.status = status
        self.error: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.error["code"] = code
        if param:
            self.error["param"] = param
        self.error.update(extra)

    def reply(self) -> Reply:
        return Reply(self.status, {"error": self.error})


def _invalid(message: str, *, param: str = "", code: str = "") -> ApiError:
    return ApiError(400, "invalid_request_error", message, param=param, code=code)


@dataclass(slots=True)
class _Form:
    """Form-encoded parameters, flattened (`metadata[order_ref]`) and checked against a list."""

    pairs: Sequence[tuple[str, str]]
    values: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)

    def read(self, allowed: set[str]) -> _Form:
        for key, value in self.pairs:
            meta = _METADATA.fullmatch(key)
            if meta:
                name = meta.group(1)
                if len(name) > MAX_METADATA_KEY:
                    raise _invalid(f"Metadata keys can have up to {MAX_METADATA_KEY} characters", param=key)
                if len(value) > MAX_METADATA_VALUE:
                    raise _invalid(f"Metadata values can have up to {MAX_METADATA_VALUE} characters", param=key)
                self.metadata[name] = value
            elif key in allowed:
                if key in self.values:
                    raise _invalid(f"Received the parameter {key} twice", param=key)
                self.values[key] = value
            else:
                raise _invalid(f"Received unknown parameter: {key}", param=key, code="parameter_unknown")
        if len(self.metadata) > MAX_METADATA_KEYS:
            raise _invalid(f"Metadata can have up to {MAX_METADATA_KEYS} keys", param="metadata")
        return self

    def integer(self, key: str, *, required: bool = True) -> int | None:
        raw = self.values.get(key)
        if raw is None:
            if required:
                raise _invalid(f"Missing required param: {key}.", param=key, code="parameter_missing")
            return None
        if not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
            raise _invalid(f"Invalid positive integer: {key}", param=key, code="parameter_invalid_integer")
        return int(raw)

    def ident(self, key: str, prefix: str) -> str:
        raw = self.values.get(key)
        if raw is None:
            raise _invalid(f"Missing required param: {key}.", param=key, code="parameter_missing")
        if not raw.startswith(prefix) or not _ID.fullmatch(raw):
            raise ApiError(
                400, "invalid_request_error", f"No such {key}: '{raw[:60]}'", param=key, code="resource_missing"
            )
        return raw


def fingerprint(method: str, path: str, pairs: Sequence[tuple[str, str]]) -> str:
    """What makes two requests "the same" for an idempotency key: endpoint and parameters."""
    return json.dumps([method, path, sorted(pairs)], separators=(",", ":"))


class SandboxLedger:
    """The sandbox's state and Stripe's rules, without HTTP.

    Args:
        path: the state file (SQLite), or None to keep everything in memory.
        clock: the sandbox's clock: object times and the 24-hour key memory.
    """

    def __init__(self, path: Path | None, clock: Clock) -> None:
        self._clock = clock
        self._db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._busy: set[str] = set()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # --- idempotent POSTs -------------------------------------------------------------------

    def post(
        self,
        path: str,
        pairs: Sequence[tuple[str, str]],
        key: str | None,
        card_fault: Callable[[str, str], Fault | None] = lambda c, p: None,
        before_work: Callable[[], None] = lambda: None,
    ) -> Reply:
        """Handle one POST under its idempotency key (Stripe's rules, see the module docstring).

        `before_work` runs after the key is reserved and before anything is created (the
        sandbox's delay fault); `card_fault` may decline a token.
        """
        handler = self._post_handler(path)
        if handler is None:
            return ApiError(404, "invalid_request_error", f"Unrecognized request URL (POST: {path}).").reply()
        fp = fingerprint("POST", path, pairs)
        if key is not None:
            with self._lock:
                self._forget_old_keys()
                saved = self._db.execute(
                    "SELECT fingerprint, status, body FROM idempotency WHERE key = ?", (key,)
                ).fetchone()
                if saved is None and key in self._busy:
                    return ApiError(
                        409,
                        "idempotency_error",
                        "There is currently another in-progress request using this idempotency key. Try again later.",
                    ).reply()
                if saved is None:
                    self._busy.add(key)
            if saved is not None:
                if saved[0] != fp:
                    return ApiError(
                        400,
                        "idempotency_error",
                        "Keys for idempotent requests can only be used with the same parameters they were first "
                        f"used with. Try using a key other than '{key[:80]}' if you meant to execute a different "
                        "request.",
                    ).reply()
                return Reply(int(saved[1]), json.loads(saved[2]), replayed=True)
        try:
            before_work()
            with self._lock:
                try:
                    form = _Form(pairs)
                    self._db.execute("BEGIN IMMEDIATE")
                    try:
                        reply = handler(form, card_fault)
                    except ApiError as err:
                        reply = err.reply()
                        if reply.status == 400 and err.error.get("code") in _VALIDATION:
                            self._db.execute("ROLLBACK")
                            return reply
                    if key is not None:
                        self._db.execute(
                            "INSERT INTO idempotency (key, created, fingerprint, status, body) VALUES (?, ?, ?, ?, ?)",
                            (key, self._clock.now(), fp, reply.status, json.dumps(reply.body)),
                        )
                    self._db.execute("COMMIT")
                    return reply
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
        finally:
            if key is not None:
                with self._lock:
                    self._busy.discard(key)

    def _forget_old_keys(self) -> None:
        self._db.execute("DELETE FROM idempotency WHERE created <= ?", (self._clock.now() - KEY_LIFETIME_S,))

    def _post_handler(self, path: str) -> Callable[[_Form, Callable[[str, str], Fault | None]], Reply] | None:
        confirm = _CONFIRM.fullmatch(path)
        if confirm is not None:
            return lambda form, card_fault: self._confirm_payment_intent(confirm.group(1), form)
        return {
            "/v1/payment_intents": self._create_payment_intent,
            "/v1/refunds": self._create_refund,
            "/v1/test_helpers/terminal/card_taps": self._card_tap,
        }.get(path)

    def _now(self) -> int:
        return int(self._clock.now())

    def _insert(self, obj: dict[str, Any], kind: str, parent: str = "") -> None:
        self._db.execute(
            "INSERT INTO objects (id, kind, created, parent, body) VALUES (?, ?, ?, ?, ?)",
            (obj["id"], kind, obj["created"], parent, json.dumps(obj)),
        )
        for key, value in (obj.get("metadata") or {}).items():
            self._db.execute("INSERT INTO metadata (object, key, value) VALUES (?, ?, ?)", (obj["id"], key, value))

    def _create_payment_intent(self, form: _Form, card_fault: Callable[[str, str], Fault | None]) -> Reply:
        form.read({"amount", "currency", "customer", "payment_method", "off_session", "confirm"})
        amount = form.integer("amount")
        currency = form.values.get("currency", "")
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise _invalid(
                "Invalid currency: use a three-letter ISO code in lowercase",
                param="currency",
                code="parameter_invalid_string",
            )
        if form.values.get("confirm") != "true" or form.values.get("off_session") != "true":
            raise _invalid(
                "The sandbox makes only off-session charges: send confirm=true and off_session=true",
                param="confirm",
                code="parameter_invalid_string",
            )
        customer = form.ident("customer", "cus_")
        method = form.ident("payment_method", "pm_")
        if "missing" in method:
            raise ApiError(
                400,
                "invalid_request_error",
                f"No such PaymentMethod: '{method}'",
                param="payment_method",
                code="resource_missing",
            )
        intent: dict[str, Any] = {
            "id": "pi_" + secrets.token_hex(12),
            "object": "payment_intent",
            "amount": amount,
            "amount_received": 0,
            "currency": currency,
            "customer": customer,
            "payment_method": method,
            "confirmation_method": "automatic",
            "capture_method": "automatic",
            "created": self._now(),
            "livemode": False,
            "metadata": form.metadata,
            "last_payment_error": None,
            "latest_charge": None,
            "status": "succeeded",
        }
        fault = card_fault(customer, method)
        code = ""
        if fault is not None:
            code = "card_declined" if fault.kind == "decline" else "authentication_required"
        elif "chargeDeclined" in method:
            code = "card_declined"
        elif "authenticationRequired" in method:
            code = "authentication_required"
        if code:
            error: dict[str, Any] = {"type": "card_error", "code": code}
            if code == "card_declined":
                error["decline_code"] = fault.decline_code if fault else "generic_decline"
                error["message"] = "Your card was declined."
            else:
                error["message"] = "This payment needs the customer to authenticate it in their app."
            intent.update(status="requires_payment_method", last_payment_error=error)
            self._insert(intent, "payment_intent")
            raise ApiError(
                402,
                "card_error",
                error["message"],
                code=code,
                **({"decline_code": error["decline_code"]} if "decline_code" in error else {}),
                payment_intent=intent,
            )
        intent.update(amount_received=amount, latest_charge="ch_" + secrets.token_hex(12))
        self._insert(intent, "payment_intent")
        return Reply(200, intent)

    def _confirm_payment_intent(self, pi_id: str, form: _Form) -> Reply:
        """The shopper confirms, in their app, a charge that needed them (`authentication_required`)."""
        form.read(set())
        intent = self._object(pi_id, "payment_intent")
        if intent is None:
            raise ApiError(404, "invalid_request_error", f"No such payment_intent: '{pi_id}'", code="resource_missing")
        if intent["status"] == "succeeded":
            return Reply(200, intent)
        error = intent.get("last_payment_error") or {}
        if error.get("code") != "authentication_required":
            raise _invalid(
                f"This PaymentIntent's status is {intent['status']}; only one awaiting the customer can be confirmed.",
                code="payment_intent_unexpected_state",
            )
        intent.update(status="succeeded", amount_received=intent["amount"], last_payment_error=None,
                      latest_charge="ch_" + secrets.token_hex(12))  # fmt: skip
        self._db.execute("UPDATE objects SET body = ? WHERE id = ?", (json.dumps(intent), pi_id))
        return Reply(200, intent)

    def _create_refund(self, form: _Form, card_fault: Callable[[str, str], Fault | None]) -> Reply:
        form.read({"payment_intent", "amount", "reason"})
        pi_id = form.ident("payment_intent", "pi_")
        intent = self._object(pi_id, "payment_intent")
        if intent is None:
            raise ApiError(
                400,
                "invalid_request_error",
                f"No such payment_intent: '{pi_id}'",
                param="payment_intent",
                code="resource_missing",
            )
        reason = form.values.get("reason")
        if reason is not None and reason not in ("duplicate", "fraudulent", "requested_by_customer"):
            raise _invalid("Invalid reason", param="reason", code="parameter_invalid_string")
        if intent["status"] != "succeeded":
            raise _invalid(
                "This PaymentIntent has no successful charge to refund.",
                param="payment_intent",
                code="charge_not_refundable",
            )
        left = int(intent["amount_received"]) - self._refunded(pi_id)
        if left <= 0:
            raise _invalid(
                f"Charge {intent['latest_charge']} has already been refunded.", code="charge_already_refunded"
            )
        amount = form.integer("amount", required=False) or left
        if amount > left:
            raise _invalid(
                f"Refund amount ({amount}) is greater than unrefunded amount on charge ({left})",
                param="amount",
                code="amount_too_large",
            )
        refund = {
            "id": "re_" + secrets.token_hex(12),
            "object": "refund",
            "amount": amount,
            "currency": intent["currency"],
            "payment_intent": pi_id,
            "charge": intent["latest_charge"],
            "reason": reason,
            "status": "succeeded",
            "created": self._now(),
            "metadata": form.metadata,
        }
        self._insert(refund, "refund", parent=pi_id)
        return Reply(200, refund)

    def _card_tap(self, form: _Form, card_fault: Callable[[str, str], Fault | None]) -> Reply:
        form.read({"card"})
        card = form.values.get("card", "visa")
        if not re.fullmatch(r"[A-Za-z]{1,40}", card):
            raise _invalid("card must be a test card name such as visa", param="card", code="parameter_invalid_string")
        tap = {
            "id": "tap_" + secrets.token_hex(8),
            "object": "test_helpers.card_tap",
            "customer": "cus_" + secrets.token_hex(8),
            "payment_method": f"pm_card_{card}_{secrets.token_hex(6)}",
            "created": self._now(),
        }
        self._insert(tap, "card_tap")
        return Reply(200, tap)

    # --- reads ------------------------------------------------------------------------------

    def _object(self, object_id: str, kind: str) -> dict[str, Any] | None:
        row = self._db.execute("SELECT body FROM objects WHERE id = ? AND kind = ?", (object_id, kind)).fetchone()
        return json.loads(row[0]) if row else None

    def _refunded(self, pi_id: str) -> int:
        total = 0
        for (body,) in self._db.execute("SELECT body FROM objects WHERE kind = 'refund' AND parent = ?", (pi_id,)):
            total += int(json.loads(body)["amount"])
        return total

    def get(self, path: str, pairs: Sequence[tuple[str, str]]) -> Reply:
        """Handle one GET: retrieve, list or search PaymentIntents and refunds."""
        params = dict(pairs)
        try:
            with self._lock:
                if path == "/v1/payment_intents/search":
                    return self._search(params)
                if path in ("/v1/payment_intents", "/v1/refunds"):
                    kind = "payment_intent" if path.endswith("intents") else "refund"
                    return self._list(kind, path, params)
                for prefix, kind in (("/v1/payment_intents/", "payment_intent"), ("/v1/refunds/", "refund")):
                    if path.startswith(prefix):
                        obj = self._object(path[len(prefix) :], kind)
                        if obj is None:
                            raise ApiError(
                                404,
                                "invalid_request_error",
                                f"No such {kind}: '{path[len(prefix) :][:60]}'",
                                code="resource_missing",
                            )
                        return Reply(200, obj)
        except ApiError as err:
            return err.reply()
        return ApiError(404, "invalid_request_error", f"Unrecognized request URL (GET: {path}).").reply()

    def _limit(self, params: dict[str, str]) -> int:
        raw = params.get("limit", "10")
        if not raw.isdigit() or not 1 <= int(raw) <= 100:
            raise _invalid("limit must be 1-100", param="limit")
        return int(raw)

    def _list(self, kind: str, path: str, params: dict[str, str]) -> Reply:
        limit = self._limit(params)
        sql = "SELECT n, body FROM objects WHERE kind = ?"
        args: list[Any] = [kind]
        after = params.get("starting_after")
        if after:
            row = self._db.execute("SELECT n FROM objects WHERE id = ?", (after,)).fetchone()
            if row is None:
                raise _invalid(f"No such object: '{after[:60]}'", param="starting_after", code="resource_missing")
            sql += " AND n < ?"
            args.append(row[0])
        for op, name in ((">=", "created[gte]"), ("<", "created[lt]"), (">", "created[gt]"), ("<=", "created[lte]")):
            if name in params:
                if not params[name].lstrip("-").isdigit():
                    raise _invalid(f"{name} must be unix seconds", param=name)
                sql += f" AND created {op} ?"
                args.append(int(params[name]))
        if kind == "refund" and params.get("payment_intent"):
            sql += " AND parent = ?"
            args.append(params["payment_intent"])
        sql += " ORDER BY n DESC LIMIT ?"
        args.append(limit + 1)
        rows = self._db.execute(sql, args).fetchall()
        data = [json.loads(body) for _n, body in rows[:limit]]
        return Reply(200, {"object": "list", "url": path, "has_more": len(rows) > limit, "data": data})

    def _search(self, params: dict[str, str]) -> Reply:
        match = _SEARCH.fullmatch(params.get("query", "").strip())
        if match is None:
            raise _invalid("The sandbox searches only metadata['key']:'value'", param="query")
        limit = self._limit(params)
        rows = self._db.execute(
            "SELECT o.body FROM metadata m JOIN objects o ON o.id = m.object "
            "WHERE m.key = ? AND m.value = ? AND o.kind = 'payment_intent' ORDER BY o.n DESC LIMIT ?",
            (match.group(1), match.group(2), limit),
        ).fetchall()
        return Reply(
            200,
            {
                "object": "search_result",
                "url": "/v1/payment_intents/search",
                "has_more": False,
                "next_page": None,
                "data": [json.loads(body) for (body,) in rows],
            },
        )

    def summary(self) -> dict[str, Any]:
        """Counts for tests and benchmarks: intents per status, refunds, saved keys, charges per order ref."""
        with self._lock:
            statuses: dict[str, int] = {}
            for (body,) in self._db.execute("SELECT body FROM objects WHERE kind = 'payment_intent'"):
                status = json.loads(body)["status"]
                statuses[status] = statuses.get(status, 0) + 1
            per_ref = dict(
                self._db.execute(
                    "SELECT m.value, COUNT(*) FROM metadata m JOIN objects o ON o.id = m.object "
                    "WHERE m.key = 'order_ref' AND o.kind = 'payment_intent' GROUP BY m.value"
                ).fetchall()
            )
            refunds = self._db.execute("SELECT COUNT(*) FROM objects WHERE kind = 'refund'").fetchone()[0]
            keys = self._db.execute("SELECT COUNT(*) FROM idempotency").fetchone()[0]
        return {"payment_intents": statuses, "refunds": refunds, "keys": keys, "per_order_ref": per_ref}


_VALIDATION = {"parameter_unknown", "parameter_missing", "parameter_invalid_integer", "parameter_invalid_string"}
