"""Camera workers: decode, detect and send boxes, one process per group of cameras (or in-process).

A worker owns some cameras. For each it reads frames (OpenCV VideoCapture: RTSP, USB or a file),
lets the motion gate decide whether the detector must run, and hands the boxes to a sink: MQTT
(`MqttPublisher`, spec/mqtt.md) when workers run as their own processes or on other machines,
or a plain callback in the demo and replay. Frames never leave the worker. On the appliance side
`DetectionFeed` subscribes to every camera's boxes and turns valid messages into `Detections`;
anything malformed is dropped and counted per camera, never raised.

Each camera publishes as its own broker user (the camera id), so the box's ACL, which lets a
device write only `shop/<shop>/vision/<user>/#`, keeps one camera's worker from speaking for
another; a worker with several cameras holds one connection per camera.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import paho.mqtt.client as mqtt

from appliance.config import load_config
from appliance.config.model import StoreConfig
from appliance.events import Detections, FloatArray
from appliance.vision.detector import Detector, Frame, OnnxDetector
from appliance.vision.messages import (
    PayloadError,
    camera_of,
    detections_topic,
    encode_detections,
    parse_detections,
)
from appliance.vision.motion_gate import MotionGate

logger = logging.getLogger(__name__)

Clock = Callable[[], float]


class Stop(Protocol):
    """A stop signal (threading.Event or multiprocessing.Event)."""

    def is_set(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> bool: ...


class FrameSource(Protocol):
    """Where a camera's frames come from."""

    def read(self) -> tuple[float, Frame] | None:
        """The next frame and its time, or None when there is none now (ended, or camera lost)."""
        ...

    @property
    def ended(self) -> bool:
        """True once a file has no more frames (a live camera never ends)."""
        ...

    def close(self) -> None: ...


def _capture_target(source: str) -> str | int:
    """`/dev/video2` or `2` opens USB camera 2; anything else is a URL or a file path."""
    if source.isdigit():
        return int(source)
    if source.startswith("/dev/video") and source[len("/dev/video"):].isdigit():
        return int(source[len("/dev/video"):])
    return source


class CaptureSource:
    """Frames from OpenCV's VideoCapture: an RTSP URL, a USB camera or a video file.

    Live frames are stamped with `clock()` when read. A file's frames are stamped with its own
    timing from the moment it was opened (or with `frame_times`), and with `realtime` the file is
    paced like a live camera. A live camera that fails is reopened after `retry_s`; its loss and
    its return are logged once each.
    """

    def __init__(self, camera: str, source: str, clock: Clock = time.time, realtime: bool = False,
                 frame_times: FloatArray | None = None, retry_s: float = 5.0) -> None:
        if not source:
            raise ValueError(f"camera {camera}: no source (set [[cameras]] source to an rtsp:// URL, /dev/videoN or a "
                             "file)")
        self.camera = camera
        self.source = source
        self.clock = clock
        self.realtime = realtime
        self.frame_times = frame_times
        self.retry_s = retry_s
        self.is_file = Path(source).is_file()
        self._cap: cv2.VideoCapture | None = None
        self._opened_at = 0.0
        self._next_try = 0.0
        self._index = 0
        self._lost = False
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def _open(self) -> bool:
        now = self.clock()
        if now < self._next_try:
            return False
        cap = cv2.VideoCapture(_capture_target(self.source))
        if not cap.isOpened():
            self._next_try = now + self.retry_s
            self._mark_lost("cannot open")
            if self.is_file:
                self._ended = True
            return False
        self._cap = cap
        self._opened_at = now
        return True

    def _mark_lost(self, why: str) -> None:
        if not self._lost:
            logger.warning("camera %s lost (%s)", self.camera, why)
            self._lost = True

    def read(self) -> tuple[float, Frame] | None:
        if self._ended or (self._cap is None and not self._open()):
            return None
        assert self._cap is not None
        ok, frame = self._cap.read()
        if not ok:
            if self.is_file:
                self._ended = True
            else:
                self._mark_lost("no frame")
                self._cap.release()
                self._cap = None
                self._next_try = self.clock() + self.retry_s
            return None
        if self._lost:
            logger.info("camera %s is back", self.camera)
            self._lost = False
        if not self.is_file:
            t = self.clock()
        elif self.frame_times is not None:
            if self._index >= len(self.frame_times):
                self._ended = True
                return None
            t = float(self.frame_times[self._index])
        else:
            t = self._opened_at + self._cap.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if self.realtime:
                delay = t - self.clock()
                if delay > 0:
                    time.sleep(delay)  # pacing a file like a live camera; never used by tests
        self._index += 1
        return t, frame

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class DetectionSink(Protocol):
    """Where a worker's boxes go."""

    def send(self, detections: Detections, size: tuple[int, int]) -> None: ...

    def close(self) -> None: ...


@dataclass(slots=True)
class LocalSink:
    """In-process delivery (demo, replay): calls `deliver` with each frame's Detections."""

    deliver: Callable[[Detections], None]

    def send(self, detections: Detections, size: tuple[int, int]) -> None:
        self.deliver(detections)

    def close(self) -> None:
        return None


def _client(client_id: str) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311)
    # A failing callback is logged and the network loop goes on: one bad message must not silence a camera.
    client.enable_logger(logger)
    client.suppress_exceptions = True
    return client


class MqttPublisher:
    """Publishes each camera's boxes to `shop/<shop>/vision/<camera>/detections`, as that camera's user.

    Messages are QoS 0 (a late box is worthless; the next frame replaces it) with a per-camera
    sequence number so the appliance sees gaps. A broken connection is retried by paho in the
    background; what cannot be sent meanwhile is dropped and counted.
    """

    def __init__(self, host: str, port: int, shop: str, passwords: Mapping[str, str]) -> None:
        self.shop = shop
        self.seq: Counter[str] = Counter()
        self.unsent: Counter[str] = Counter()
        self._clients: dict[str, mqtt.Client] = {}
        self._up: dict[str, threading.Event] = {}
        for camera, password in passwords.items():
            client = _client(f"vision-{camera}-{os.getpid()}")
            client.username_pw_set(camera, password)
            up = threading.Event()
            client.on_connect = self._on_connect(camera, up)
            client.on_disconnect = self._on_disconnect(camera, up)
            client.reconnect_delay_set(1, 30)
            client.connect_async(host, port, keepalive=30)
            client.loop_start()
            self._clients[camera] = client
            self._up[camera] = up

    @staticmethod
    def _on_connect(camera: str, up: threading.Event) -> Callable[..., None]:
        def handler(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            if reason.is_failure:
                logger.warning("camera %s: broker refused the connection (%s)", camera, reason)
                return
            logger.info("camera %s connected to the broker", camera)
            up.set()
        return handler

    @staticmethod
    def _on_disconnect(camera: str, up: threading.Event) -> Callable[..., None]:
        def handler(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            if up.is_set():
                logger.warning("camera %s lost the broker (%s)", camera, reason)
            up.clear()
        return handler

    def wait_connected(self, timeout: float) -> bool:
        """True once every camera's connection is up (False after `timeout` seconds)."""
        deadline = time.monotonic() + timeout
        return all(up.wait(max(0.0, deadline - time.monotonic())) for up in self._up.values())

    def send(self, detections: Detections, size: tuple[int, int]) -> None:
        client = self._clients.get(detections.camera)
        if client is None:
            raise KeyError(f"no broker credentials for camera {detections.camera}")
        seq = self.seq[detections.camera]
        self.seq[detections.camera] += 1
        info = client.publish(detections_topic(self.shop, detections.camera),
                              encode_detections(detections, seq, size), qos=0)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.unsent[detections.camera] += 1

    def close(self) -> None:
        for client in self._clients.values():
            client.disconnect()
            client.loop_stop()


class CameraWorker:
    """Reads a group of cameras in turn, runs the detector where the picture changed, sends boxes.

    `frames`, `detector_calls` and `skipped` count the work; the worker needs one CPU core.
    """

    def __init__(self, sources: Mapping[str, FrameSource], detector: Detector, sink: DetectionSink,
                 gate: MotionGate | None = None) -> None:
        self.sources = dict(sources)
        self.detector = detector
        self.sink = sink
        self.gate = gate
        self.frames = 0
        self.detector_calls = 0
        self.skipped = 0
        self._last: dict[str, FloatArray] = {}

    def step(self) -> int:
        """One frame from each camera that has one; returns how many frames were handled."""
        handled = 0
        for camera, source in self.sources.items():
            got = source.read()
            if got is None:
                continue
            t, frame = got
            self.frames += 1
            handled += 1
            if self.gate is not None and not self.gate.changed(camera, t, frame):
                self.skipped += 1
                boxes = self._last[camera]
            else:
                boxes = np.asarray(self.detector.detect(frame), dtype=np.float64).reshape(-1, 5)
                self.detector_calls += 1
                self._last[camera] = boxes
            self.sink.send(Detections(t, camera, boxes), (frame.shape[1], frame.shape[0]))
        return handled

    @property
    def ended(self) -> bool:
        return all(s.ended for s in self.sources.values())

    def run(self, stop: Stop, idle_s: float = 0.02) -> None:
        """Work until `stop` is set or every source (all files) has ended."""
        while not stop.is_set():
            if self.step() == 0:
                if self.ended:
                    return
                stop.wait(idle_s)

    def close(self) -> None:
        for source in self.sources.values():
            source.close()
        self.sink.close()


def plan_groups(config: StoreConfig, cores: int | None = None) -> list[tuple[str, ...]]:
    """Which cameras each worker process reads: `[vision] groups`, else spread over the workers.

    Raises:
        ValueError: a group names an unknown camera, a camera is in two groups or in none.
    """
    ids = [c.id for c in config.cameras]
    groups = config.vision.groups
    if groups:
        problems = []
        seen: dict[str, int] = {}
        for i, group in enumerate(groups):
            for cam in group:
                if cam not in ids:
                    problems.append(f"vision.groups[{i}]: no camera {cam!r} (cameras: {', '.join(ids)})")
                elif cam in seen:
                    problems.append(f"vision.groups[{i}]: camera {cam!r} is already in group {seen[cam]}")
                else:
                    seen[cam] = i
        problems += [f"vision.groups: camera {cam!r} is in no group" for cam in ids if cam not in seen]
        if problems:
            raise ValueError("; ".join(problems))
        return [tuple(g) for g in groups if g]
    count = config.vision.workers or cores or os.cpu_count() or 1
    count = max(1, min(count, len(ids)))
    return [tuple(ids[i::count]) for i in range(count) if ids[i::count]]


@dataclass(frozen=True, slots=True)
class WorkerPlan:
    """Everything a worker process needs, picklable: which cameras, which broker, which credentials.

    `sources` overrides the cameras' configured `source` (tests, files); `passwords` maps each
    camera to its broker password (held in memory only, never logged).
    """

    worker: str
    config: Path
    cameras: tuple[str, ...]
    host: str
    port: int
    passwords: tuple[tuple[str, str], ...] = field(repr=False)
    sources: tuple[tuple[str, str], ...] = ()
    models: Path | None = None
    realtime: bool = True


def run_worker(plan: WorkerPlan, stop: Stop) -> None:
    """The body of a worker process: cameras -> detector -> MQTT until `stop` or the files end."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s %(levelname)s worker {plan.worker}: %(message)s")
    cv2.setNumThreads(1)
    config = load_config(plan.config)
    by_id = {c.id: c for c in config.cameras}
    overrides = dict(plan.sources)
    sources: dict[str, FrameSource] = {
        cam: CaptureSource(cam, overrides.get(cam, by_id[cam].source), realtime=plan.realtime) for cam in plan.cameras
    }
    detector = OnnxDetector.from_settings(config.vision, plan.models)
    publisher = MqttPublisher(plan.host, plan.port, config.store.id, dict(plan.passwords))
    gate = MotionGate.from_settings(config.vision) if config.vision.motion_gate else None
    worker = CameraWorker(sources, detector, publisher, gate)
    if not publisher.wait_connected(10.0):
        logger.warning("not every camera reached the broker yet; boxes are dropped until they do")
    try:
        worker.run(stop)
    finally:
        worker.close()
        logger.info("stopped: %s frames, %s detector runs, %s skipped as unchanged", worker.frames,
                    worker.detector_calls, worker.skipped)


@dataclass(slots=True)
class WorkerProcess:
    """A running worker process and the event that stops it."""

    process: SpawnProcess
    stop_event: Any

    def stop(self, timeout: float = 10.0) -> None:
        self.stop_event.set()
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def start_worker(plan: WorkerPlan) -> WorkerProcess:
    """Start one worker process (spawned: a clean interpreter, no inherited threads)."""
    ctx = multiprocessing.get_context("spawn")
    stop_event = ctx.Event()
    process = ctx.Process(target=run_worker, args=(plan, stop_event), name=f"vision-{plan.worker}", daemon=True)
    process.start()
    return WorkerProcess(process, stop_event)


class CameraThread:
    """The in-process mode: a worker in a background thread of the appliance (demo, one small box)."""

    def __init__(self, worker: CameraWorker) -> None:
        self.worker = worker
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cameras", daemon=True)

    def _run(self) -> None:
        try:
            self.worker.run(self._stop)
        finally:
            self.worker.close()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread.is_alive()


class DetectionFeed:
    """The appliance's side of the camera workers: MQTT messages in, `Detections` out.

    `handle` checks a message (see `messages.parse_detections`), drops it with a counted reason
    when it is malformed, duplicated or out of order, counts sequence gaps, and passes the rest to
    `deliver`. It never raises on bad input, so no camera can stop the appliance.
    """

    def __init__(self, config: StoreConfig, deliver: Callable[[Detections], None], clock: Clock = time.time) -> None:
        self.shop = config.store.id
        self.sizes = {c.id: (int(c.size[0]), int(c.size[1])) for c in config.cameras}
        self.deliver = deliver
        self.clock = clock
        self.received: Counter[str] = Counter()
        self.dropped: Counter[tuple[str, str]] = Counter()
        self.gaps: Counter[str] = Counter()
        self._seq: dict[str, int] = {}
        self._client: mqtt.Client | None = None
        self._subscribed = threading.Event()

    def handle(self, topic: str, payload: bytes) -> Detections | None:
        """Process one message; returns the Detections delivered, or None when dropped."""
        camera = camera_of(topic, self.shop)
        if camera is None:
            self.dropped[("?", "bad-topic")] += 1
            return None
        try:
            seq, detections = parse_detections(camera, payload, self.sizes, self.clock())
        except PayloadError as err:
            if not self.dropped[(camera, err.reason)]:
                logger.warning("camera %s: dropping malformed detections (%s)", camera, err.reason)
            self.dropped[(camera, err.reason)] += 1
            return None
        last = self._seq.get(camera)
        if last is not None and seq <= last and seq != 0:
            self.dropped[(camera, "duplicate-or-late")] += 1
            return None
        if last is not None and seq > last + 1:
            self.gaps[camera] += seq - last - 1
        self._seq[camera] = seq
        self.received[camera] += 1
        self.deliver(detections)
        return detections

    def connect(self, host: str, port: int, username: str, password: str) -> None:
        """Subscribe to every camera's detections on the broker (paho's background thread)."""
        client = _client(f"appliance-vision-{os.getpid()}")
        client.username_pw_set(username, password)
        topic = detections_topic(self.shop, "+")

        def on_connect(c: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any = None) -> None:
            if reason.is_failure:
                logger.warning("detections feed: broker refused the connection (%s)", reason)
                return
            c.subscribe(topic, qos=0)

        def on_subscribe(c: mqtt.Client, userdata: Any, mid: Any, reasons: Any, props: Any = None) -> None:
            self._subscribed.set()

        def on_message(c: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
            self.handle(msg.topic, bytes(msg.payload))

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = on_message
        client.connect_async(host, port, keepalive=30)
        client.loop_start()
        self._client = client

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
