"""Shelf ingest over MQTT: payloads checked per spec/mqtt.md, bad ones dropped and counted."""

from __future__ import annotations

import json
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from appliance.shelves.ingest import MqttShelfSource, PayloadError, ShelfIngest, parse_weight

NOW_MS = 1_721_731_200_000


def _p(**kw: object) -> bytes:
    doc = {"ts": NOW_MS, "seq": 1, "hz": 60, "g": [2489.3, 2489.1, None]}
    doc.update(kw)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", "not_json"),
        (b"[1, 2]", "bad_shape"),
        (_p(ts="soon"), "bad_ts"),
        (_p(ts=1.5), "bad_ts"),
        (_p(seq=-1), "bad_seq"),
        (_p(hz=0), "bad_hz"),
        (_p(g=[]), "bad_g"),
        (_p(g=["12"]), "bad_g"),
        (_p(g=[True]), "bad_g"),
        (b'{"ts": 1721731200000, "seq": 1, "hz": 60, "g": [NaN]}', "not_finite"),
        (b'{"ts": 1721731200000, "seq": 1, "hz": 60, "g": [1e999]}', "not_finite"),
        (_p(g=[1.0] * 1001), "too_long"),
        (_p(ts=NOW_MS + 11 * 60 * 1000), "clock"),
    ],
)
def test_a_malformed_weight_payload_is_refused_with_its_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as err:
        parse_weight("g1.s1.p1", payload, NOW_MS)
    assert err.value.reason == reason


def test_a_good_payload_becomes_timed_samples_with_null_as_a_fault() -> None:
    b = parse_weight("g1.s1.p1", _p(), NOW_MS)
    assert np.allclose(b.times(), NOW_MS / 1000 + np.arange(3) / 60)
    assert b.grams[0] == 2489.3 and np.isnan(b.grams[2])


def test_the_ingest_counts_drops_gaps_duplicates_and_reordering_and_keeps_going() -> None:
    ing = ShelfIngest(["a", "b"], lambda: NOW_MS)
    assert ing.weight("a", _p(seq=1))
    assert not ing.weight("a", _p(seq=1))  # duplicate
    assert ing.weight("a", _p(seq=4, ts=NOW_MS + 50))  # two lost
    assert ing.weight("a", _p(seq=3, ts=NOW_MS + 30))  # late
    assert not ing.weight("a", b"garbage")
    assert not ing.weight("zz", _p())
    c = ing.counters["a"]
    assert (c.duplicates, c.gaps, c.reordered, c.dropped.get("not_json")) == (1, 2, 1, 1)
    block = ing.take(NOW_MS / 1000 + 10)
    assert np.all(np.diff(block.t) >= 0) and block.t.size == 9
    assert ing.unknown_sensors == {"zz": 1}


def test_an_infinite_sample_drops_its_whole_batch_when_taken() -> None:
    ing = ShelfIngest(["a"], lambda: NOW_MS)
    ing.weight("a", _p(seq=1))
    ing.weight("a", b'{"ts": 1721731200100, "seq": 2, "hz": 60, "g": [1.0, 1e999]}')
    block = ing.take(NOW_MS / 1000 + 10)
    assert block.t.size == 3 and ing.counters["a"].dropped == {"not_finite": 1}


def test_samples_after_the_tick_wait_for_the_next_one() -> None:
    ing = ShelfIngest(["a"], lambda: NOW_MS)
    ing.weight("a", _p(g=[1.0] * 60))
    first = ing.take(NOW_MS / 1000 + 0.5)
    second = ing.take(NOW_MS / 1000 + 2)
    assert first.t.size == 30 and second.t.size == 30 and second.t[0] >= NOW_MS / 1000 + 0.5


def test_weights_published_by_a_shelf_controller_reach_the_ingest_through_the_real_broker(make_broker):  # type: ignore[no-untyped-def]
    broker = make_broker({"g1": "shelf"})
    now = int(time.time() * 1000)
    ing = ShelfIngest(["g1"], lambda: now)
    src = MqttShelfSource(ing, "test", "127.0.0.1", broker.port, "appliance", broker.config.appliance_password)
    src.start()
    try:
        assert src.connected.wait(5)
        dev = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
        dev.username_pw_set("g1", broker.config.devices["g1"][1])
        dev.connect("127.0.0.1", broker.port)
        dev.loop_start()
        for seq in range(5):
            body = json.dumps({"ts": now + seq * 200, "seq": seq, "hz": 60, "g": [1000.0 + seq] * 12})
            dev.publish("shop/test/shelf/g1/weight", body, qos=0).wait_for_publish(5)
        dev.publish("shop/test/shelf/g1/weight", b"{broken", qos=0).wait_for_publish(5)
        dev.publish("shop/test/shelf/g1/status", b"lost", qos=1, retain=True).wait_for_publish(5)
        deadline = time.monotonic() + 5
        while ing.counters["g1"].accepted < 5 and time.monotonic() < deadline:
            src.pump()
            time.sleep(0.02)
        src.pump()
        dev.loop_stop()
    finally:
        src.stop()
    c = ing.counters["g1"]
    assert c.accepted == 5 and c.dropped == {"not_json": 1} and c.status == "lost"
    assert ing.take(now / 1000 + 10).t.size == 60
