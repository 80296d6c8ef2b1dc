"""The sandbox processor: a real local HTTP server speaking the subset of Stripe's API the box uses.

`appliance sandbox-processor --port P [--state FILE]` runs it; tests and the demo start it in a
thread. It listens on loopback only, requires a `Bearer sk_test_...` key, takes form-encoded
requests and answers JSON in Stripe's shapes (errors as `{"error": {"type", "code", "message",
...}}`), so the official `stripe` library pointed at it runs the production code path.

Endpoints: `POST /v1/payment_intents` (off-session confirm), `POST /v1/payment_intents/<id>/confirm`
(the shopper confirming, in their app, a charge that needed them), `GET /v1/payment_intents[/<id>]`,
`GET /v1/payment_intents/search` (`metadata['order_ref']:'...'`), `POST /v1/refunds`,
`GET /v1/refunds[/<id>]`, `POST /v1/test_helpers/terminal/card_taps` (the gate terminal's
card-to-token exchange). Administration, for tests and demos (JSON, loopback):
`POST /_sandbox/faults` (a `Fault`), `DELETE /_sandbox/faults`, `GET /_sandbox/summary`, and
`POST /_sandbox/clock` `{"advance": s}` when started with a hand-moved clock.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from appliance.gate.clock import Clock, ManualClock, WallClock
from appliance.payments.faults import Fault, FaultPlan
from appliance.payments.sandbox_ledger import ApiError, Reply, SandboxLedger

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
KEY_PREFIX = "sk_test_"


class SandboxProcessor:
    """The sandbox processor; a context manager that serves in a background thread.

    Args:
        state: the state file (SQLite; created if missing), or None for memory only.
        clock: its clock (keys forgotten after 24 h, "down for N minutes", object times).
        port: the loopback port; 0 picks a free one.
    """

    def __init__(self, state: Path | None = None, *, clock: Clock | None = None, port: int = 0) -> None:
        self.clock: Clock = clock if clock is not None else WallClock()
        self.ledger = SandboxLedger(state, self.clock)
        self.faults = FaultPlan()
        self.requests: dict[str, int] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The API base to give the Stripe library."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SandboxProcessor:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="sandbox-processor", daemon=True
        )
        self._thread.start()
        logger.info("sandbox processor listening on %s", self.url)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the CLI)."""
        logger.info("sandbox processor listening on %s", self.url)
        try:
            self._server.serve_forever()
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        self.ledger.close()

    def __enter__(self) -> SandboxProcessor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def inject(self, fault: Fault) -> None:
        """Add a fault rule (see appliance.payments.faults)."""
        self.faults.add(fault, self.clock.now())

    def count_request(self, what: str) -> None:
        """Count one API request by method and path (for tests: e.g. proof that the client never retried)."""
        with self._lock:
            self.requests[what] = self.requests.get(what, 0) + 1

    def wait(self, seconds: float) -> None:
        """A delay fault's wait; cut short when the sandbox stops."""
        self._stop.wait(seconds)


class _Server(ThreadingHTTPServer):
    """The HTTP server; a client that hung up before its answer (a read timeout) is normal, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_for(sandbox: SandboxProcessor) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        box = sandbox

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small answers go out at once instead of waiting for a delayed ACK
    server_version = "sandbox-processor"
    sys_version = ""
    box: SandboxProcessor

    def log_message(self, format: str, *args: Any) -> None:
        """Request lines carry order references and ids: keep them out of the log."""

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        url = urllib.parse.urlsplit(self.path)
        body = self._body()
        if body is None:
            return
        if url.path.startswith("/_sandbox/"):
            self._admin(method, url.path, body)
            return
        self.box.count_request(f"{method} {url.path}")
        if self.box.faults.is_down(self.box.clock.now()):
            self._drop()
            return
        if not self._authorised():
            self._send(
                Reply(
                    401,
                    {
                        "error": {
                            "type": "invalid_request_error",
                            "message": "Invalid API Key provided; the sandbox takes any key starting with sk_test_",
                        }
                    },
                )
            )
            return
        fault = self.box.faults.transport(method, url.path)
        if fault is not None and fault.kind == "error_500":
            self._send(
                Reply(500, {"error": {"type": "api_error", "message": "An unexpected error occurred (injected)."}})
            )
            return
        if fault is not None and fault.kind == "conflict_409":
            self._send(
                Reply(
                    409,
                    {
                        "error": {
                            "type": "idempotency_error",
                            "message": "Another request with this key is in progress (injected).",
                        }
                    },
                )
            )
            return
        delay = fault.seconds if fault is not None and fault.kind == "delay" else 0.0
        if method == "GET":
            if delay:
                self.box.wait(delay)
            reply = self.box.ledger.get(url.path, urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        elif method == "POST":
            pairs = self._form(body)
            if pairs is None:
                return
            reply = self.box.ledger.post(
                url.path,
                pairs,
                self.headers.get("Idempotency-Key"),
                card_fault=self.box.faults.card,
                before_work=(lambda: self.box.wait(delay)) if delay else (lambda: None),
            )
        else:
            reply = ApiError(404, "invalid_request_error", f"Unrecognized request URL ({method}: {url.path}).").reply()
        if fault is not None and fault.kind == "drop_after_commit":
            self._drop()
            return
        self._send(reply)

    def _body(self) -> bytes | None:
        raw = self.headers.get("Content-Length", "0")
        if not raw.isdigit() or int(raw) > MAX_BODY_BYTES:
            self._send(
                ApiError(
                    413 if raw.isdigit() else 400,
                    "invalid_request_error",
                    "Request body too large or without a valid Content-Length",
                ).reply(),
                close=True,
            )
            return None
        return self.rfile.read(int(raw)) if int(raw) else b""

    def _form(self, body: bytes) -> list[tuple[str, str]] | None:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            self._send(
                ApiError(
                    400, "invalid_request_error", "Send parameters form-encoded (application/x-www-form-urlencoded)"
                ).reply()
            )
            return None
        try:
            return urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        except (UnicodeDecodeError, ValueError):
            self._send(ApiError(400, "invalid_request_error", "The request body is not valid form encoding").reply())
            return None

    def _authorised(self) -> bool:
        scheme, _, key = self.headers.get("Authorization", "").partition(" ")
        return scheme == "Bearer" and key.startswith(KEY_PREFIX) and len(key) > len(KEY_PREFIX)

    def _admin(self, method: str, path: str, body: bytes) -> None:
        try:
            payload = json.loads(body.decode("utf-8")) if body else {}
        except (UnicodeDecodeError, ValueError):
            self._send(Reply(400, {"error": {"type": "invalid_request_error", "message": "send JSON"}}))
            return
        try:
            if path == "/_sandbox/faults" and method == "POST":
                self.box.inject(Fault.from_json(payload))
            elif path == "/_sandbox/faults" and method == "DELETE":
                self.box.faults.clear()
            elif path == "/_sandbox/clock" and method == "POST":
                if not isinstance(self.box.clock, ManualClock):
                    raise ValueError("this sandbox runs on the wall clock; start it with --manual-clock")
                advance = payload.get("advance")
                if isinstance(advance, bool) or not isinstance(advance, (int, float)):
                    raise ValueError('send {"advance": seconds}')
                self.box.clock.advance(float(advance))
            elif path == "/_sandbox/summary" and method == "GET":
                self._send(Reply(200, {**self.box.ledger.summary(), "now": self.box.clock.now()}))
                return
            else:
                self._send(
                    Reply(404, {"error": {"type": "invalid_request_error", "message": "no such admin endpoint"}})
                )
                return
        except ValueError as err:
            self._send(Reply(400, {"error": {"type": "invalid_request_error", "message": str(err)}}))
            return
        self._send(Reply(200, {"ok": True, "now": self.box.clock.now()}))

    def _send(self, reply: Reply, close: bool = False) -> None:
        data = json.dumps(reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", "req_" + secrets.token_hex(8))
        if reply.replayed:
            self.send_header("Idempotent-Replayed", "true")
        key = self.headers.get("Idempotency-Key")
        if key:
            self.send_header("Idempotency-Key", key)
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _drop(self) -> None:
        """Close the connection without an answer (the charge, if any, is already saved)."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client may already be gone
            self.connection.shutdown(socket.SHUT_RDWR)
