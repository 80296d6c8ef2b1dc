"""Card entry: a card tapped on the gate terminal becomes a box-signed pass and is charged like any pass."""

from __future__ import annotations

import json
import queue
import threading
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.events import GateEvent
from appliance.gate.admission import GateKeeper
from appliance.gate.card import CARD_ISSUER, TAP_MAX_AGE_S, CardDesk, seal_tap
from appliance.gate.clock import ManualClock
from appliance.gate.mqtt import GateLink
from appliance.gate.passes import PassError, ReplayCache, parse_pass_unchecked, verify_pass
from appliance.gate.sealed import public_bytes, seal
from appliance.gate.terminal import SandboxCardTerminal
from appliance.payments.gateway import ChargeRequest, new_idempotency_key, new_order_ref
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway

NOW = 1_750_000_000.0


def _code(desk: CardDesk, sealed: str, now: float = NOW) -> str:
    try:
        desk.pass_for(sealed, now)
    except PassError as err:
        return err.code
    return "accepted"


def test_a_tap_becomes_a_pass_for_one_person_with_a_fresh_nonce_signed_by_the_box() -> None:
    desk = CardDesk()
    text = desk.pass_for(seal_tap(desk.tap_key, "cus_x/pm_y", NOW - 2), NOW)
    claims = verify_pass(text, {CARD_ISSUER: desk.public_key}, NOW, ReplayCache())
    assert (claims.iss, claims.tok, claims.party, claims.iat) == (CARD_ISSUER, "cus_x/pm_y", 1, int(NOW))
    assert claims.exp - claims.iat <= 600 and claims.rk is None
    again = desk.pass_for(seal_tap(desk.tap_key, "cus_x/pm_y", NOW - 1), NOW)
    assert parse_pass_unchecked(again).nonce != claims.nonce


def test_a_card_pass_is_not_valid_at_another_box() -> None:
    mine, theirs = CardDesk(), CardDesk()
    text = mine.pass_for(seal_tap(mine.tap_key, "cus_x/pm_y", NOW), NOW)
    with pytest.raises(PassError) as caught:
        verify_pass(text, {CARD_ISSUER: theirs.public_key}, NOW, ReplayCache())
    assert caught.value.code == "bad_signature"


@pytest.mark.parametrize(
    ("make", "code"),
    [
        (lambda d: seal_tap(d.tap_key, "cus_x/pm_y", NOW - TAP_MAX_AGE_S), "expired"),
        (lambda d: seal_tap(d.tap_key, "cus_x/pm_y", NOW + 31), "not_yet_valid"),
        (lambda d: seal_tap(public_bytes(X25519PrivateKey.generate()), "cus_x/pm_y", NOW), "malformed"),
        (lambda d: "AAAA", "malformed"),
        (lambda d: seal(d.tap_key, b"not json", "walkout card tap v1"), "malformed"),
        (lambda d: seal(d.tap_key, b'{"tok": "", "nonce": "AAAAAAAAAAAAAAAAAAAAAA", "at": 1}', "walkout card tap v1"),
         "malformed"),
        (lambda d: seal(d.tap_key, b'{"tok": "t", "nonce": "AAAAAAAAAAAAAAAAAAAAAA", "at": 1}', "walkout receipt v1"),
         "malformed"),
    ],
    ids=["too old", "from the future", "sealed to another box", "not sealed", "not JSON", "empty token",
         "sealed for another purpose"],
)  # fmt: skip
def test_bad_taps_are_refused_with_the_pass_codes(make: Any, code: str) -> None:
    desk = CardDesk()
    assert _code(desk, make(desk)) == code


def test_a_tap_seen_twice_is_refused_as_replayed() -> None:
    desk = CardDesk()
    sealed = seal_tap(desk.tap_key, "cus_x/pm_y", NOW)
    assert _code(desk, sealed) == "accepted"
    assert _code(desk, sealed, NOW + 5) == "replayed"


def test_a_tapped_card_enters_through_the_gate_and_is_charged_without_its_token_crossing_mqtt(
    make_broker,  # type: ignore[no-untyped-def]
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """The whole path: terminal -> processor token -> sealed over MQTT -> box pass -> entry -> charge."""
    broker = make_broker({"gate1": "gate"})
    clock = ManualClock(NOW)
    events: list[GateEvent] = []
    heard: queue.Queue[tuple[str, bytes]] = queue.Queue()
    spy_ready = threading.Event()
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    spy.username_pw_set("appliance", broker.config.appliance_password)
    seen: list[bytes] = []

    def hear(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        seen.append(msg.topic.encode() + bytes(msg.payload))
        heard.put((msg.topic, bytes(msg.payload)))

    spy.on_message = hear
    spy.on_subscribe = lambda *a: spy_ready.set()
    spy.connect("127.0.0.1", broker.port)
    spy.subscribe("shop/test/#", qos=1)
    spy.loop_start()
    assert spy_ready.wait(5)

    with SandboxProcessor(tmp_path / "processor.db", clock=clock) as processor:
        link = GateLink(
            GateKeeper({}, clock, events.append), shop="test", gates=["gate1"], host="127.0.0.1", port=broker.port,
            username="appliance", password=broker.config.appliance_password, clock=clock, card_desk=CardDesk(),
        )  # fmt: skip
        link.start()
        terminal = SandboxCardTerminal(
            processor_url=processor.url, terminal_key="sk_test_terminal", shop="test", gate="gate1",
            mqtt_port=broker.port, mqtt_password=broker.config.devices["gate1"][1], clock=clock,
        )  # fmt: skip
        terminal.start()
        try:
            terminal.tap("visa")
            opened = _next(heard, "shop/test/gate/gate1/cmd/open")
            assert opened == {"people": 1, "until": int(NOW * 1000) + 5000}
            terminal.tap("chargeDeclined")
            _next(heard, "shop/test/gate/gate1/cmd/open")
        finally:
            terminal.stop()
            link.stop()
        assert [e.kind for e in events] == ["entry", "entry"]
        tokens = [parse_pass_unchecked(e.pass_text).tok for e in events]
        assert all(t.startswith("cus_") and "/pm_card_" in t for t in tokens)

        gateway = StripeGateway("sk_test_box", processor.url)
        outcomes = [
            gateway.charge(ChargeRequest(new_order_ref(), token, 4200, "KRW", new_idempotency_key()))
            for token in tokens
        ]
        assert [o.status for o in outcomes] == ["succeeded", "declined"]

    spy.loop_stop()
    spy.disconnect()
    everything = b"".join(seen)
    assert b"shop/test/gate/gate1/card" in everything
    for token in tokens:
        for part in token.split("/"):
            assert part.encode() not in everything


def _next(heard: queue.Queue[tuple[str, bytes]], topic: str) -> dict[str, Any]:
    while True:
        got_topic, payload = heard.get(timeout=5)
        if got_topic == topic:
            return json.loads(payload)  # type: ignore[no-any-return]
