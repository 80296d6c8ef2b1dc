"""The pixel pipeline as plain iterators: video -> detections -> floor tracks, in time order.

Replay and the benchmarks drive these with recordings; live operation runs the same detector
and tracker through the camera workers. Frames exist only inside `detections_from_video`, one
per camera at a time, and are never written anywhere.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from appliance.config.model import StoreConfig
from appliance.events import Detections, FloatArray, TrackPoint
from appliance.vision.detector import Detector, Frame
from appliance.vision.motion_gate import MotionGate
from appliance.vision.tracker import FloorTracker

logger = logging.getLogger(__name__)

STEP_S = 0.1


class VisionError(RuntimeError):
    """A video that cannot be read as described."""


class CameraVideo(Protocol):
    """One camera's video file and its frame times (a recording's `VideoFile` is one)."""

    @property
    def camera(self) -> str: ...

    @property
    def path(self) -> Path: ...

    @property
    def frame_times(self) -> FloatArray: ...


def read_video(video: CameraVideo) -> Iterator[tuple[float, str, Frame]]:
    """Decode a camera's frames with their times: (t, camera, frame), in memory only.

    Raises:
        VisionError: the file cannot be opened. A file with fewer frames than times ends early
            (logged once); frames beyond the listed times are not read.
    """
    cap = cv2.VideoCapture(str(video.path))
    if not cap.isOpened():
        raise VisionError(f"{video.path}: cannot open the video (camera {video.camera})")
    try:
        for k, t in enumerate(video.frame_times):
            ok, frame = cap.read()
            if not ok:
                logger.warning("%s: video ends after %s frames, its times list %s", video.path, k,
                               len(video.frame_times))
                return
            yield float(t), video.camera, frame
    finally:
        cap.release()


class DetectionRun:
    """Iterator over the detections of several cameras' videos, in time order across cameras.

    Counts what motion gating saved: `frames` read, `detector_calls` made and `skipped` (frames
    whose picture had not changed, which reuse the camera's last boxes with the new time).
    """

    def __init__(self, config: StoreConfig, videos: Sequence[CameraVideo], detector: Detector,
                 gating: bool | None = None) -> None:
        settings = config.vision
        known = {c.id for c in config.cameras}
        for v in videos:
            if v.camera not in known:
                raise VisionError(f"{v.path}: camera {v.camera!r} is not in store.toml [[cameras]]")
        self.detector = detector
        use_gate = settings.motion_gate if gating is None else gating
        self.gate = MotionGate.from_settings(settings) if use_gate else None
        self.frames = 0
        self.detector_calls = 0
        self.skipped = 0
        self._last: dict[str, FloatArray] = {}
        self._stream = heapq.merge(*(read_video(v) for v in videos), key=lambda item: (item[0], item[1]))

    def __iter__(self) -> DetectionRun:
        return self

    def __next__(self) -> Detections:
        t, camera, frame = next(self._stream)
        self.frames += 1
        # The gate lets a camera's first frame through, so there are always last boxes to reuse.
        if self.gate is not None and not self.gate.changed(camera, t, frame):
            self.skipped += 1
            return Detections(t, camera, self._last[camera])
        boxes = np.asarray(self.detector.detect(frame), dtype=np.float64).reshape(-1, 5)
        self.detector_calls += 1
        self._last[camera] = boxes
        return Detections(t, camera, boxes)


def detections_from_video(
    config: StoreConfig, videos: Sequence[CameraVideo], detector: Detector, *, gating: bool | None = None
) -> DetectionRun:
    """Run the detector over recorded camera videos; yields `Detections` in time order.

    Motion gating follows the config's `[vision] motion_gate` unless `gating` says otherwise;
    the returned iterator's `detector_calls` and `skipped` say how many detector runs it saved.
    """
    return DetectionRun(config, videos, detector, gating)


def time_steps(frames: Iterable[Detections], step_s: float = STEP_S) -> Iterator[list[Detections]]:
    """Group time-ordered frames into steps: at most one frame per camera, spanning under `step_s`."""
    step: list[Detections] = []
    for d in frames:
        if step and (d.t - step[0].t >= step_s or any(s.camera == d.camera for s in step)):
            yield step
            step = []
        step.append(d)
    if step:
        yield step


def tracks_from_detections(config: StoreConfig, frames: Iterable[Detections]) -> Iterator[TrackPoint]:
    """Floor tracks from time-ordered detections of all cameras, in time order.

    Frames of different cameras that are close in time are fused into one tracker step at the
    latest of their times.
    """
    tracker = FloorTracker(config)
    last_t = -np.inf
    for step in time_steps(frames):
        t = max(d.t for d in step)
        if t < last_t:
            raise VisionError(f"detections go back in time ({t} after {last_t}); they must be in time order")
        last_t = t
        yield from tracker.update(t, step)
