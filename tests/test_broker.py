"""The box's broker enforces per-device passwords and write ACLs (a real Mosquitto)."""

from __future__ import annotations

import threading

import paho.mqtt.client as mqtt


def _client(port: int, user: str, password: str) -> mqtt.Client:
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set(user, password)
    c.connect("127.0.0.1", port)
    return c


def test_a_device_can_publish_only_in_its_own_subtree(make_broker):  # type: ignore[no-untyped-def]
    broker = make_broker({"g1": "shelf", "g2": "shelf"})
    got: list[str] = []
    subscribed = threading.Event()
    app = _client(broker.port, "appliance", broker.config.appliance_password)
    app.on_message = lambda c, u, m: got.append(m.topic)
    app.on_subscribe = lambda *a: subscribed.set()
    app.subscribe("shop/test/#", qos=1)
    app.loop_start()
    assert subscribed.wait(5)
    dev = _client(broker.port, "g1", broker.config.devices["g1"][1])
    dev.loop_start()
    dev.publish("shop/test/shelf/g2/weight", b"{}", qos=1).wait_for_publish(5)  # someone else's subtree
    dev.publish("shop/test/shelf/g1/weight", b"{}", qos=1).wait_for_publish(5)
    deadline = threading.Event()
    deadline.wait(0.5)
    dev.loop_stop()
    app.loop_stop()
    assert got == ["shop/test/shelf/g1/weight"]


def test_anonymous_and_wrong_password_clients_are_refused(broker):  # type: ignore[no-untyped-def]
    refused = threading.Event()
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    c.username_pw_set("appliance", "wrong")
    c.on_connect = lambda cl, u, f, rc, p: refused.set() if rc.is_failure else None
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    assert refused.wait(5)
    c.loop_stop()
