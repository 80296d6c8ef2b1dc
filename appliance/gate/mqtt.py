"""The gates over MQTT (shared/spec/mqtt.md): scans, card taps and passages in, open commands out.

Topics under `shop/<shop>/gate/<gate>/`:

| topic | direction | payload |
| --- | --- | --- |
| `scan` | gate -> box | `{"ts": ms, "seq": n, "text": "<what the scanner read>"}` |
| `passage` | gate -> box | `{"ts": ms, "seq": n, "direction": "in" or "out"}` |
| `card` | gate terminal -> box | `{"ts": ms, "seq": n, "sealed": "<card tap sealed to the tap key>"}` (extension) |
| `cmd/open` | box -> gate | `{"people": 2, "until": ms}` |
| `cmd/card_key` | box -> gate, retained | `{"key": "<base64url X25519>", "label": "walkout card tap v1"}` (extension) |

The two extensions keep card entry inside the broker's existing ACL (a gate writes only its own
subtree and reads its own `cmd/#`). A payload that is too long, not JSON, of the wrong types, or
stamped more than ten minutes from the box's clock is dropped and counted per gate and reason;
an exact redelivery (same `seq` and `ts`, as QoS 1 may do) is dropped as a duplicate. Nothing a
gate sends can stop the link.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import paho.mqtt.client as mqtt

from appliance.gate.admission import GateKeeper, OpenCommand
from appliance.gate.card import TAP_LABEL, CardDesk
from appliance.gate.clock import Clock
from appliance.gate.passes import PassError, b64url_encode

logger = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
MAX_CLOCK_GAP_MS = 600_000
_KINDS = ("scan", "passage", "card")
_RECENT = 64


class PayloadError(ValueError):
    """A gate message the box drops; `reason` is the counter it is counted under."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class Scan:
    """What a gate's scanner read."""

    ts_ms: int
    seq: int
    text: str

    def __repr__(self) -> str:
        return f"Scan(ts_ms={self.ts_ms}, seq={self.seq}, text=<{len(self.text)} chars>)"


@dataclass(frozen=True, slots=True)
class Passage:
    """Someone crossed the gate."""

    ts_ms: int
    seq: int
    direction: Literal["in", "out"]


@dataclass(frozen=True, slots=True)
class Tap:
    """A card tapped on the gate terminal, sealed to the box's tap key."""

    ts_ms: int
    seq: int
    sealed: str


def _envelope(payload: bytes, now: float) -> dict[str, Any]:
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too_long", f"payload is {len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError) as err:  # bad UTF-8, bad JSON, or an absurdly long number
        raise PayloadError("not_json", "payload is not UTF-8 JSON") from err
    if not isinstance(obj, dict):
        raise PayloadError("wrong_type", "payload must be a JSON object")
    ts, seq = obj.get("ts"), obj.get("seq")
    if isinstance(ts, bool) or not isinstance(ts, int):
        raise PayloadError("wrong_type", "ts must be an integer of unix milliseconds")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise PayloadError("wrong_type", "seq must be a non-negative integer")
    if abs(ts - int(now * 1000)) > MAX_CLOCK_GAP_MS:  # integers: a huge ts must not overflow a float
        raise PayloadError("clock", "ts is more than ten minutes from the box's clock")
    return obj


def parse_scan(payload: bytes, now: float) -> Scan:
    """A `scan` message; raises PayloadError. The text itself is judged later, by pass verification."""
    obj = _envelope(payload, now)
    text = obj.get("text")
    if not isinstance(text, str):
        raise PayloadError("wrong_type", "text must be a string")
    return Scan(obj["ts"], obj["seq"], text)


def parse_passage(payload: bytes, now: float) -> Passage:
    """A `passage` message; raises PayloadError."""
    obj = _envelope(payload, now)
    direction = obj.get("direction")
    if direction == "in":
        return Passage(obj["ts"], obj["seq"], "in")
    if direction == "out":
        return Passage(obj["ts"], obj["seq"], "out")
    raise PayloadError("wrong_type", 'direction must be "in" or "out"')


def parse_tap(payload: bytes, now: float) -> Tap:
    """A `card` message; raises PayloadError."""
    obj = _envelope(payload, now)
    sealed = obj.get("sealed")
    if not isinstance(sealed, str) or not sealed:
        raise PayloadError("wrong_type", "sealed must be a non-empty string")
    return Tap(obj["ts"], obj["seq"], sealed)


class GateLink:
    """Connects the GateKeeper to the gates through the broker.

    Args:
        keeper: decides admissions and emits the gate events.
        shop: the store id in topics.
        gates: the gate device ids; each gets the card tap key (retained) when a desk is given.
        host, port, username, password: the broker and the appliance's own account.
        clock: the box's clock, for the ten-minute timestamp rule.
        card_desk: enables card entry; its issuer is added to the keeper.
    """

    def __init__(
        self,
        keeper: GateKeeper,
        *,
        shop: str,
        gates: Sequence[str],
        host: str,
        port: int,
        username: str,
        password: str,
        clock: Clock,
        card_desk: CardDesk | None = None,
    ) -> None:
        self.keeper = keeper
        self._shop = shop
        self._gates = tuple(gates)
        self._clock = clock
        self._desk = card_desk
        if card_desk is not None:
            keeper.add_issuer(card_desk.issuer, card_desk.public_key)
        self._dropped: dict[str, dict[str, int]] = {}
        self._recent: dict[tuple[str, str], deque[tuple[int, int]]] = {}
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._host, self._port = host, port
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.username_pw_set(username, password)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._lost = False
        self._stopping = False

    def _topic(self, gate: str, leaf: str) -> str:
        return f"shop/{self._shop}/gate/{gate}/{leaf}"

    def start(self, timeout: float = 10.0) -> None:
        """Connect, subscribe and publish the tap key; raises ConnectionError if the broker refuses."""
        self._client.connect(self._host, self._port)
        self._client.loop_start()
        if not self._ready.wait(timeout):
            self._client.loop_stop()
            raise ConnectionError(f"the broker at {self._host}:{self._port} did not accept the gate link")

    def stop(self) -> None:
        """Withdraw the tap key (it dies with this process) and disconnect."""
        self._stopping = True
        if self._desk is not None and self._client.is_connected():
            for gate in self._gates:
                self._client.publish(self._topic(gate, "cmd/card_key"), b"", qos=1, retain=True).wait_for_publish(5)
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if rc.is_failure:
            logger.warning("broker refused the gate link: %s", rc)
            return
        if self._lost:
            logger.info("gate link back on the broker")
            self._lost = False
        client.subscribe([(f"shop/{self._shop}/gate/+/{kind}", 1) for kind in _KINDS])
        if self._desk is not None:  # again after every reconnect: a restarted broker forgets retained keys
            body = json.dumps({"key": b64url_encode(self._desk.tap_key), "label": TAP_LABEL}).encode()
            for gate in self._gates:
                client.publish(self._topic(gate, "cmd/card_key"), body, qos=1, retain=True)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        if not self._lost and not self._stopping:
            logger.warning("gate link lost the broker; reconnecting")
            self._lost = True

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: Any, props: Any = None) -> None:
        self._ready.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.handle(msg.topic, bytes(msg.payload))
        except Exception as err:  # the network thread must survive a faulty event sink
            logger.error("gate message handling failed: %s", type(err).__name__)
            self._drop("?", "handler_error")

    def handle(self, topic: str, payload: bytes) -> None:
        """Process one gate message; never raises for anything a gate can send."""
        parts = topic.split("/")
        if len(parts) != 5 or parts[:3] != ["shop", self._shop, "gate"] or parts[4] not in _KINDS:
            self._drop("?", "topic")
            return
        gate, kind = parts[3], parts[4]
        now = self._clock.now()
        try:
            if kind == "scan":
                scan = parse_scan(payload, now)
                if self._fresh(gate, kind, scan.seq, scan.ts_ms):
                    self.present(gate, scan.text, scan.ts_ms / 1000.0)
            elif kind == "passage":
                passage = parse_passage(payload, now)
                if self._fresh(gate, kind, passage.seq, passage.ts_ms):
                    self.keeper.passage(gate, passage.direction, passage.ts_ms / 1000.0)
            else:
                tap = parse_tap(payload, now)
                if self._fresh(gate, kind, tap.seq, tap.ts_ms):
                    self.tap(gate, tap.sealed, tap.ts_ms / 1000.0)
        except PayloadError as err:
            self._drop(gate, err.reason)
            logger.debug("dropped a %s message from gate %s: %s", kind, gate, err.reason)

    def present(self, gate: str, text: str, t: float) -> bool:
        """A pass shown at `gate` by any reader (scanner, camera): opens the gate if it is accepted."""
        command = self.keeper.present(gate, text, t)
        if command is None:
            return False
        self._send_open(command)
        return True

    def tap(self, gate: str, sealed: str, t: float) -> bool:
        """A sealed card tap from the gate terminal: the same path as a pass once the box signed one."""
        if self._desk is None:
            self._drop(gate, "card_disabled")
            return False
        try:
            text = self._desk.pass_for(sealed, self._clock.now())
        except PassError as err:
            self.keeper.refuse(gate, err.code)
            return False
        return self.present(gate, text, t)

    def _send_open(self, command: OpenCommand) -> None:
        body = json.dumps(command.as_json(), separators=(",", ":")).encode()
        self._client.publish(self._topic(command.gate, "cmd/open"), body, qos=1)

    def _fresh(self, gate: str, kind: str, seq: int, ts_ms: int) -> bool:
        with self._lock:
            recent = self._recent.setdefault((gate, kind), deque(maxlen=_RECENT))
            if (seq, ts_ms) in recent:
                duplicate = True
            else:
                recent.append((seq, ts_ms))
                duplicate = False
        if duplicate:
            self._drop(gate, "duplicate")
        return not duplicate

    def _drop(self, gate: str, reason: str) -> None:
        with self._lock:
            per_gate = self._dropped.setdefault(gate, {})
            per_gate[reason] = per_gate.get(reason, 0) + 1

    def dropped(self) -> dict[str, dict[str, int]]:
        """Dropped messages per gate and reason (`?` for messages on no valid gate topic)."""
        with self._lock:
            return {gate: dict(reasons) for gate, reasons in self._dropped.items()}
