"""A sandbox card terminal on a gate: the device side of card entry, for the demo and the tests.

A real gate terminal reads the card (EMV contactless), obtains a reusable token for it from the
payment processor over its own connection, and hands the token to the box. This one does the
same against the sandbox processor's `POST /v1/test_helpers/terminal/card_taps` (the card is a
test card name: `visa`, `chargeDeclined`, `authenticationRequired`), seals the token to the tap
key the box publishes on `shop/<shop>/gate/<gate>/cmd/card_key`, and publishes it on
`shop/<shop>/gate/<gate>/card` as the gate's own MQTT user.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import paho.mqtt.client as mqtt

from appliance.gate.card import seal_tap
from appliance.gate.clock import Clock
from appliance.gate.passes import PassError, b64url_decode_canonical


class TerminalError(RuntimeError):
    """The terminal could not get a token or reach the box."""


class SandboxCardTerminal:
    """A gate's card terminal talking to the sandbox processor and to the box's broker.

    Args:
        processor_url: the sandbox processor's API base (loopback).
        terminal_key: the terminal's processor key (the sandbox takes any `sk_test_...`).
        shop, gate: where it stands; `gate` is also its MQTT user.
        mqtt_port, mqtt_password: the box's broker on loopback, and the gate's password.
        clock: the terminal's clock (stamps taps and messages).
    """

    def __init__(
        self,
        *,
        processor_url: str,
        terminal_key: str,
        shop: str,
        gate: str,
        mqtt_port: int,
        mqtt_password: str,
        clock: Clock,
    ) -> None:
        self._url = processor_url.rstrip("/")
        self._key = terminal_key
        self._shop, self._gate = shop, gate
        self._clock = clock
        self._seq = 0
        self._tap_key: bytes | None = None
        self._have_key = threading.Event()
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self._client.username_pw_set(gate, mqtt_password)
        self._client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(self._topic("cmd/card_key"), qos=1)
        self._client.on_message = self._on_key
        self._port = mqtt_port

    def _topic(self, leaf: str) -> str:
        return f"shop/{self._shop}/gate/{self._gate}/{leaf}"

    def start(self, timeout: float = 10.0) -> None:
        """Connect to the broker and wait for the box's tap key."""
        self._client.connect("127.0.0.1", self._port)
        self._client.loop_start()
        if not self._have_key.wait(timeout):
            self.stop()
            raise TerminalError("the box has not published a card tap key for this gate")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_key(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            key = b64url_decode_canonical(json.loads(msg.payload)["key"], "key") if msg.payload else b""
        except (ValueError, KeyError, TypeError, PassError):
            return
        if len(key) == 32:
            self._tap_key = key
            self._have_key.set()
        else:
            self._tap_key = None
            self._have_key.clear()

    def token_for(self, card: str) -> str:
        """Ask the processor for a reusable token of the tapped card (`cus_.../pm_...`)."""
        request = urllib.request.Request(
            f"{self._url}/v1/test_helpers/terminal/card_taps",
            data=urllib.parse.urlencode({"card": card}).encode(),
            headers={"Authorization": f"Bearer {self._key}", "Content-Type": "application/x-www-form-urlencoded"},
            method="POST",
        )
        try:
            with self._opener.open(request, timeout=10) as response:
                body = json.loads(response.read())
        except (urllib.error.URLError, ValueError, OSError) as err:
            raise TerminalError(f"the processor did not give a token: {err}") from err
        return f"{body['customer']}/{body['payment_method']}"

    def tap(self, card: str = "visa") -> None:
        """A card is tapped: get its token, seal it to the box, publish it."""
        if self._tap_key is None:
            raise TerminalError("no tap key from the box yet")
        now = self._clock.now()
        sealed = seal_tap(self._tap_key, self.token_for(card), now)
        self._seq += 1
        body = json.dumps({"ts": round(now * 1000), "seq": self._seq, "sealed": sealed}).encode()
        self._client.publish(self._topic("card"), body, qos=1).wait_for_publish(10)
