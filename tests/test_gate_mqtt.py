"""The gate over MQTT, against the box's real Mosquitto: scans in, open commands out, passages, bad payloads."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.events import GateEvent
from appliance.gate.admission import GateKeeper
from appliance.gate.clock import ManualClock
from appliance.gate.mqtt import GateLink, PayloadError, parse_passage, parse_scan, parse_tap
from appliance.gate.passes import issue_pass, public_key_b64

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
ISSUERS = {"demo-pay": public_key_b64(KEY)}
T0 = 1700000000
NOW = T0 + 60.0
NOW_MS = int(NOW * 1000)


def a_pass(nonce: str, party: int = 1) -> str:
    return issue_pass(
        KEY, {"iss": "demo-pay", "tok": "cus_a/pm_b", "iat": T0, "exp": T0 + 300, "nonce": nonce, "party": party}
    )


class Device:
    """A gate controller on the broker, as its own MQTT user: publishes and hears its commands."""

    def __init__(self, port: int, user: str, password: str, shop: str = "test") -> None:
        self.commands: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self.prefix = f"shop/{shop}/gate/{user}/"
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        self.client.username_pw_set(user, password)
        self.client.on_message = lambda c, u, m: self.commands.put(
            (m.topic[len(self.prefix) :], json.loads(m.payload) if m.payload else {})
        )
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(self.prefix + "cmd/open", qos=1)
        self.client.loop_start()
        assert subscribed.wait(5)
        self.seq = 0

    def send(self, leaf: str, payload: bytes | dict[str, Any]) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.client.publish(self.prefix + leaf, body, qos=1).wait_for_publish(5)

    def scan(self, text: str, ts: int = NOW_MS) -> None:
        self.seq += 1
        self.send("scan", {"ts": ts, "seq": self.seq, "text": text})

    def next_command(self) -> tuple[str, dict[str, Any]]:
        return self.commands.get(timeout=5)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Shop:
    link: GateLink
    device: Device
    events: list[GateEvent]


@pytest.fixture
def shop(make_broker) -> Iterator[Shop]:  # type: ignore[no-untyped-def]
    broker = make_broker({"gate1": "gate"})
    events: list[GateEvent] = []
    clock = ManualClock(NOW)
    link = GateLink(
        GateKeeper(ISSUERS, clock, events.append),
        shop="test",
        gates=["gate1"],
        host="127.0.0.1",
        port=broker.port,
        username="appliance",
        password=broker.config.appliance_password,
        clock=clock,
    )
    link.start()
    device = Device(broker.port, "gate1", broker.config.devices["gate1"][1])
    yield Shop(link, device, events)
    device.close()
    link.stop()


def test_a_scanned_pass_opens_the_gate_for_the_party_and_reaches_the_core_loop(shop: Shop) -> None:
    text = a_pass("A" * 22, party=2)
    shop.device.scan(text, ts=NOW_MS - 250)
    assert shop.device.next_command() == ("cmd/open", {"people": 2, "until": NOW_MS + 5000})
    assert shop.events == [GateEvent(t=(NOW_MS - 250) / 1000, kind="entry", pass_text=text)]


def test_refused_and_malformed_messages_open_nothing_and_are_counted(shop: Shop) -> None:
    text = a_pass("B" * 22)
    shop.device.scan(text)
    assert shop.device.next_command()[0] == "cmd/open"
    shop.device.scan(text)  # replayed
    shop.device.scan("WO1.garbage")  # not a pass
    shop.device.scan(a_pass("C" * 22).replace("WO1.", "WO1.x"))
    bad: list[bytes | dict[str, Any]] = [
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        {"ts": NOW_MS, "seq": 1},  # no text
        {"ts": NOW_MS, "seq": 2, "text": 42},
        {"ts": "soon", "seq": 3, "text": text},
        {"ts": NOW_MS, "seq": -1, "text": text},
        {"ts": NOW_MS + 11 * 60_000, "seq": 4, "text": text},  # eleven minutes ahead of the box
        {"ts": 10**400, "seq": 5, "text": text},  # would overflow a float
        {"ts": True, "seq": 6, "text": text},
        b"{" * 3000,
        b"x" * 5000,
    ]
    for payload in bad:
        shop.device.send("scan", payload)
    shop.device.send("passage", {"ts": NOW_MS, "seq": 7, "direction": "sideways"})
    shop.device.send("card", {"ts": NOW_MS, "seq": 8, "sealed": "AAAA"})  # card entry is off on this link
    shop.device.scan(a_pass("D" * 22))  # still works after all that
    assert shop.device.next_command()[0] == "cmd/open"
    assert shop.device.commands.empty()
    assert [e.kind for e in shop.events] == ["entry", "entry"]
    assert shop.link.keeper.counters.snapshot() == {
        "malformed": 2,
        "unknown_issuer": 0,
        "bad_signature": 0,
        "not_yet_valid": 0,
        "expired": 0,
        "replayed": 1,
    }
    assert shop.link.dropped() == {
        "gate1": {"not_json": 3, "wrong_type": 7, "clock": 2, "too_long": 1, "card_disabled": 1}
    }


def test_passages_out_become_exits_and_a_redelivered_message_counts_once(shop: Shop) -> None:
    out = {"ts": NOW_MS + 1500, "seq": 40, "direction": "out"}
    shop.device.send("passage", out)
    shop.device.send("passage", out)  # QoS 1 may deliver twice
    shop.device.send("passage", {"ts": NOW_MS + 1600, "seq": 41, "direction": "in"})
    shop.device.scan(a_pass("E" * 22))
    assert shop.device.next_command()[0] == "cmd/open"
    assert shop.events[0] == GateEvent(t=(NOW_MS + 1500) / 1000, kind="exit")
    assert [e.kind for e in shop.events] == ["exit", "entry"]
    assert shop.link.keeper.passages() == {"in": 1, "out": 1, "unexpected_in": 1}
    assert shop.link.dropped() == {"gate1": {"duplicate": 1}}


def test_messages_on_foreign_topics_are_dropped_without_crashing(shop: Shop) -> None:
    shop.link.handle("shop/other/gate/gate1/scan", b"{}")
    shop.link.handle("shop/test/gate/gate1/weird", b"{}")
    shop.link.handle("shop/test/gate/scan", b"{}")
    assert shop.link.dropped() == {"?": {"topic": 3}}


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b'{"ts": 1700000060000, "seq": 1, "text": "x"}', None),
        (b'{"ts": 1700000060000, "seq": 1.5, "text": "x"}', "wrong_type"),
        (b'{"ts": 1700000060000.0, "seq": 1, "text": "x"}', "wrong_type"),
        (b'{"ts": 1700000060000, "seq": 1, "text": null}', "wrong_type"),
        (b'{"ts": 1699999400000, "seq": 1, "text": "x"}', "clock"),
        (b'{"ts": NaN, "seq": 1, "text": "x"}', "wrong_type"),
        (b"\x00", "not_json"),
    ],
)
def test_scan_payloads_are_checked_before_anything_else(payload: bytes, reason: str | None) -> None:
    if reason is None:
        assert parse_scan(payload, NOW).text == "x"
    else:
        with pytest.raises(PayloadError) as caught:
            parse_scan(payload, NOW)
        assert caught.value.reason == reason


def test_passage_and_card_payloads_are_checked() -> None:
    assert parse_passage(b'{"ts": 1700000060000, "seq": 0, "direction": "in"}', NOW).direction == "in"
    with pytest.raises(PayloadError):
        parse_passage(b'{"ts": 1700000060000, "seq": 0, "direction": "IN"}', NOW)
    assert parse_tap(b'{"ts": 1700000060000, "seq": 0, "sealed": "abc"}', NOW).sealed == "abc"
    with pytest.raises(PayloadError):
        parse_tap(b'{"ts": 1700000060000, "seq": 0, "sealed": ""}', NOW)


def test_no_pass_or_token_reaches_the_log(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    text = a_pass("F" * 22)
    shop.device.scan(text)
    shop.device.scan(text)
    shop.device.scan(text[:-3])
    assert shop.device.next_command()[0] == "cmd/open"
    shop.device.send("passage", {"ts": NOW_MS, "seq": 99, "direction": "out"})
    shop.device.scan(a_pass("G" * 22))
    assert shop.device.next_command()[0] == "cmd/open"
    assert "gate gate1 refused an entry: replayed" in caplog.text
    for secret in (text, text.split(".")[1][:40], text.split(".")[2][:40], "cus_a", "pm_b", "F" * 22):
        assert secret not in caplog.text


def test_a_failing_event_sink_does_not_stop_the_link(make_broker) -> None:  # type: ignore[no-untyped-def]
    broker = make_broker({"gate1": "gate"})
    clock = ManualClock(NOW)
    calls: list[GateEvent] = []

    def broken_sink(event: GateEvent) -> None:
        calls.append(event)
        if len(calls) == 1:
            raise RuntimeError("core loop bug")

    link = GateLink(
        GateKeeper(ISSUERS, clock, broken_sink), shop="test", gates=["gate1"], host="127.0.0.1",
        port=broker.port, username="appliance", password=broker.config.appliance_password, clock=clock,
    )  # fmt: skip
    link.start()
    device = Device(broker.port, "gate1", broker.config.devices["gate1"][1])
    try:
        device.scan(a_pass("H" * 22))
        device.scan(a_pass("I" * 22))
        assert device.next_command()[0] == "cmd/open"
        assert len(calls) == 2 and link.dropped() == {"?": {"handler_error": 1}}
    finally:
        device.close()
        link.stop()
