"""Camera workers publish boxes over the real broker as spec/mqtt.md says; bad messages never hurt the box."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
import tomli_w

from appliance.config import parse_config
from appliance.events import Detections
from appliance.sim.cameras import example_store
from appliance.sim.recording import read_recording
from appliance.vision.messages import PayloadError, camera_of, detections_topic, encode_detections, parse_detections
from appliance.vision.workers import (
    CameraThread,
    CameraWorker,
    CaptureSource,
    DetectionFeed,
    LocalSink,
    MqttPublisher,
    WorkerPlan,
    plan_groups,
    start_worker,
)

NOW = 1_721_731_200.0
SIZES = {"cam1": (640, 384), "cam2": (640, 384)}


def message(**change: object) -> bytes:
    body: dict[str, object] = {"ts": int(NOW * 1000), "seq": 7, "size": [640, 384],
                               "boxes": [[312.0, 96.0, 58.0, 141.0, 0.87]]}
    body.update(change)
    return json.dumps(body).encode()


def test_a_valid_message_becomes_detections_in_seconds():
    seq, d = parse_detections("cam1", message(), SIZES, NOW + 1.0)
    assert seq == 7 and d.camera == "cam1" and d.t == NOW
    assert d.boxes.tolist() == [[312.0, 96.0, 58.0, 141.0, 0.87]]


def test_encoding_and_parsing_round_trip():
    d = Detections(NOW, "cam2", np.array([[1.04, 2.0, 30.0, 80.0, 0.5004], [5.0, 6.0, 7.0, 8.0, 0.1]]))
    seq, back = parse_detections("cam2", encode_detections(d, 3, (640, 384)), SIZES, NOW)
    assert seq == 3 and back.t == NOW
    assert back.boxes == pytest.approx(np.array([[1.0, 2.0, 30.0, 80.0, 0.5], [5.0, 6.0, 7.0, 8.0, 0.1]]))


@pytest.mark.parametrize(
    ("camera", "payload", "reason"),
    [
        ("cam9", message(), "unknown-camera"),
        ("cam1", b"not json", "not-json"),
        ("cam1", b"\xff\xfe", "not-json"),
        ("cam1", b"[1, 2]", "not-json"),
        ("cam1", message(ts="soon"), "bad-field"),
        ("cam1", message(seq=-1), "bad-field"),
        ("cam1", message(seq=True), "bad-field"),
        ("cam1", message(boxes={"a": 1}), "bad-field"),
        ("cam1", message(size=[640]), "bad-field"),
        ("cam1", message(size=[1280, 720]), "bad-size"),
        ("cam1", message(ts=int((NOW + 3600) * 1000)), "clock-skew"),
        ("cam1", message(boxes=[[1, 2, 3, 4, 0.5]] * 501), "too-many-boxes"),
        ("cam1", message(boxes=[[1, 2, 3, 4]]), "bad-box"),
        ("cam1", message(boxes=[[1, 2, -3, 4, 0.5]]), "bad-box"),
        ("cam1", message(boxes=[[1, 2, 3, 4, 1.5]]), "bad-box"),
        ("cam1", message(boxes=[[1, 2, 3, 4, "0.5"]]), "bad-box"),
        ("cam1", message().replace(b"0.87", b"NaN"), "bad-box"),
        ("cam1", message().replace(b"312.0", b"Infinity"), "bad-box"),
        ("cam1", b"[" * 100_000, "too-large"),
    ],
)
def test_malformed_messages_are_refused_with_a_countable_reason(camera, payload, reason):
    with pytest.raises(PayloadError) as err:
        parse_detections(camera, payload, SIZES, NOW)
    assert err.value.reason == reason


@pytest.mark.parametrize(
    ("topic", "camera"),
    [("shop/test/vision/cam1/detections", "cam1"), ("shop/other/vision/cam1/detections", None),
     ("shop/test/shelf/cam1/detections", None), ("shop/test/vision//detections", None),
     ("shop/test/vision/cam1/detections/x", None)],
)
def test_the_camera_comes_from_the_topic(topic, camera):
    assert camera_of(topic, "test") == camera


@pytest.fixture
def shop_config():  # type: ignore[no-untyped-def]
    raw = example_store()
    raw["store"]["id"] = "test"
    return parse_config(raw)


def test_the_feed_drops_and_counts_bad_duplicate_and_late_messages_and_counts_gaps(shop_config):
    got: list[Detections] = []
    feed = DetectionFeed(shop_config, got.append, clock=lambda: NOW)
    topic = detections_topic("test", "cam1")
    assert feed.handle(topic, message(seq=0)) is not None
    assert feed.handle(topic, message(seq=1)) is not None
    assert feed.handle(topic, message(seq=1)) is None  # duplicate
    assert feed.handle(topic, b"garbage") is None
    assert feed.handle(topic, message(seq=5)) is not None  # 3 lost on the way
    assert feed.handle(topic, message(seq=4)) is None  # arrived late
    assert feed.handle("shop/test/vision/cam7/detections", message(seq=0)) is None
    assert feed.handle(topic, message(seq=0)) is not None  # the worker restarted
    assert len(got) == 4
    assert feed.dropped == {("cam1", "duplicate-or-late"): 2, ("cam1", "not-json"): 1,
                            ("cam7", "unknown-camera"): 1}
    assert feed.gaps["cam1"] == 3


@pytest.mark.parametrize(
    ("groups", "workers", "expected"),
    [
        ((), 1, [("cam1", "cam2", "cam3")]),
        ((), 2, [("cam1", "cam3"), ("cam2",)]),
        ((), 8, [("cam1",), ("cam2",), ("cam3",)]),
        ((("cam3",), ("cam1", "cam2")), 0, [("cam3",), ("cam1", "cam2")]),
    ],
)
def test_cameras_are_split_over_worker_processes(groups, workers, expected):
    raw = example_store(cameras=3)
    raw["vision"] = {"groups": [list(g) for g in groups], "workers": workers}
    assert plan_groups(parse_config(raw), cores=2) == expected


@pytest.mark.parametrize(
    ("groups", "message_part"),
    [([["cam1", "cam9"], ["cam2", "cam3"]], "no camera 'cam9'"),
     ([["cam1", "cam2"], ["cam2", "cam3"]], "already in group 0"),
     ([["cam1", "cam2"]], "'cam3' is in no group")],
)
def test_bad_camera_groups_are_reported(groups, message_part):
    raw = example_store(cameras=3)
    raw["vision"] = {"groups": groups}
    with pytest.raises(ValueError, match=message_part):
        plan_groups(parse_config(raw))


def collect(feed_config, broker):  # type: ignore[no-untyped-def]
    got: list[Detections] = []
    lock = threading.Lock()

    def deliver(d: Detections) -> None:
        with lock:
            got.append(d)

    feed = DetectionFeed(feed_config, deliver)
    feed.connect("127.0.0.1", broker.port, "appliance", broker.config.appliance_password)
    assert feed.wait_subscribed(10)
    return feed, got


def wait_for(predicate, seconds: float = 60.0) -> bool:  # type: ignore[no-untyped-def]
    done = threading.Event()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        done.wait(0.05)  # polling a background process's progress, not moving simulated time
    return predicate()


def test_a_worker_process_publishes_the_same_boxes_the_detector_finds_in_process(
    make_broker, rendered_shop, person_detector, tmp_path
):
    folder, _, _ = rendered_shop
    recording = read_recording(folder)
    video = next(v for v in recording.video or [] if v.camera == "cam1")
    frames = 12
    clip_times = video.frame_times[:frames]
    expected: list[Detections] = []
    local = CameraWorker({"cam1": CaptureSource("cam1", str(video.path), frame_times=clip_times)}, person_detector,
                         LocalSink(expected.append))
    local.run(threading.Event())
    assert len(expected) == frames and local.ended

    broker = make_broker({"cam1": "vision"})
    raw = example_store()
    raw["store"]["id"] = "test"
    raw["vision"] = {"motion_gate": False}
    config_path = tmp_path / "store.toml"
    config_path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    feed, got = collect(parse_config(raw), broker)
    plan = WorkerPlan("w1", config_path, ("cam1",), "127.0.0.1", broker.port,
                      (("cam1", broker.config.devices["cam1"][1]),), (("cam1", str(video.path)),), realtime=False)
    worker = start_worker(plan)
    try:
        assert wait_for(lambda: len(got) >= len(video.frame_times) or not worker.process.is_alive())
    finally:
        worker.stop()
        feed.close()
    assert worker.process.exitcode == 0
    assert len(got) == len(video.frame_times)
    assert feed.dropped == {} and feed.gaps == {}
    for mine, theirs in zip(expected, got[:frames]):
        assert theirs.camera == "cam1"
        assert theirs.boxes == pytest.approx(np.round(mine.boxes, 1), abs=0.051)
    assert abs(got[0].t - time.time()) < 120  # live-like timestamps from the worker's clock


def test_malformed_messages_over_the_broker_are_dropped_and_the_feed_keeps_working(make_broker, shop_config):
    broker = make_broker({"cam1": "vision", "cam2": "vision"})
    feed, got = collect(shop_config, broker)
    device = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    device.username_pw_set("cam1", broker.config.devices["cam1"][1])
    device.connect("127.0.0.1", broker.port)
    device.loop_start()
    now_ms = int(time.time() * 1000)
    good = {"ts": now_ms, "seq": 0, "size": [640, 384], "boxes": [[1, 2, 30, 80, 0.9]]}
    topic = detections_topic("test", "cam1")
    try:
        device.publish(topic, b"\x00garbage", qos=1).wait_for_publish(5)
        device.publish(topic, json.dumps({**good, "boxes": [[1, 2, 3]]}).encode(), qos=1).wait_for_publish(5)
        device.publish(detections_topic("test", "cam2"), json.dumps(good).encode(), qos=1).wait_for_publish(5)
        device.publish(topic, json.dumps(good).encode(), qos=1).wait_for_publish(5)
        assert wait_for(lambda: len(got) >= 1, 10)
    finally:
        device.loop_stop()
        feed.close()
    assert [d.camera for d in got] == ["cam1"]  # cam1 cannot speak for cam2: the broker's ACL
    assert feed.dropped == {("cam1", "not-json"): 1, ("cam1", "bad-box"): 1}


def test_the_publisher_numbers_each_cameras_messages(make_broker, shop_config):
    broker = make_broker({"cam1": "vision", "cam2": "vision"})
    feed, got = collect(shop_config, broker)
    publisher = MqttPublisher("127.0.0.1", broker.port, "test",
                              {c: broker.config.devices[c][1] for c in ("cam1", "cam2")})
    try:
        assert publisher.wait_connected(10)
        for k in range(3):
            for cam in ("cam1", "cam2"):
                publisher.send(Detections(time.time(), cam, np.array([[k, 1.0, 20.0, 50.0, 0.8]])), (640, 384))
        assert wait_for(lambda: len(got) == 6, 10)
    finally:
        publisher.close()
        feed.close()
    assert publisher.seq == {"cam1": 3, "cam2": 3} and publisher.unsent == {}
    assert sorted(d.boxes[0, 0] for d in got if d.camera == "cam2") == [0.0, 1.0, 2.0]


def test_the_in_process_mode_runs_the_same_worker_in_a_thread(rendered_shop, person_detector):
    folder, _, _ = rendered_shop
    video = (read_recording(folder).video or [])[0]
    got: list[Detections] = []
    done = threading.Event()

    def deliver(d: Detections) -> None:
        got.append(d)
        if len(got) == 5:
            done.set()

    source = CaptureSource(video.camera, str(video.path), frame_times=video.frame_times[:5])
    thread = CameraThread(CameraWorker({video.camera: source}, person_detector, LocalSink(deliver)))
    thread.start()
    assert done.wait(60)
    thread.stop()
    assert not thread.running
    assert [d.t for d in got] == video.frame_times[:5].tolist()


def test_a_camera_that_cannot_be_opened_is_logged_once_and_does_not_stop_the_others(caplog, person_detector):
    clock = iter(np.arange(0.0, 100.0, 1.0))
    dead = CaptureSource("cam2", "/nonexistent/camera2.mp4", clock=lambda: float(next(clock)), retry_s=0.0)
    got: list[Detections] = []
    worker = CameraWorker({"cam2": dead}, person_detector, LocalSink(got.append))
    with caplog.at_level("WARNING"):
        for _ in range(3):
            assert worker.step() == 0
    assert got == []
    assert sum("camera cam2 lost" in r.getMessage() for r in caplog.records) == 1


def test_a_failing_consumer_does_not_stop_the_feed(make_broker, shop_config):
    """Regression: an exception in the message callback used to end paho's network loop."""
    broker = make_broker({"cam1": "vision"})
    got: list[Detections] = []

    def deliver(d: Detections) -> None:
        got.append(d)
        if len(got) == 1:
            raise RuntimeError("consumer bug")

    feed = DetectionFeed(shop_config, deliver)
    feed.connect("127.0.0.1", broker.port, "appliance", broker.config.appliance_password)
    assert feed.wait_subscribed(10)
    publisher = MqttPublisher("127.0.0.1", broker.port, "test", {"cam1": broker.config.devices["cam1"][1]})
    try:
        assert publisher.wait_connected(10)
        for k in range(3):
            publisher.send(Detections(time.time(), "cam1", np.array([[k, 1.0, 20.0, 50.0, 0.8]])), (640, 384))
        assert wait_for(lambda: len(got) == 3, 10)
    finally:
        publisher.close()
        feed.close()
