"""Measurements behind `appliance bench vision` and `appliance bench tracking`: speed per core, accuracy.

Speed is CPU time (the process's, all threads) per frame with one inference thread and one
OpenCV thread, so "frames per second per core" means the same on a busy 2-core machine and an
idle 8-core one; the best of a few rounds is taken because other processes only ever add time.
Nothing here asserts anything: the commands print the figures with their conditions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance.config.model import StoreConfig
from appliance.events import FloatArray
from appliance.vision.detector import Frame, OnnxDetector
from appliance.vision.pipeline import CameraVideo, detections_from_video, read_video, tracks_from_detections
from appliance.vision.tracker import ImageTracker


@dataclass(frozen=True, slots=True)
class Speed:
    """CPU and wall time for a number of frames."""

    frames: int
    cpu_s: float
    wall_s: float

    @property
    def per_core(self) -> float:
        """Frames per second of one core's CPU time."""
        return self.frames / self.cpu_s if self.cpu_s > 0 else float("inf")

    @property
    def ms_per_frame(self) -> float:
        return 1000.0 * self.cpu_s / max(1, self.frames)


def timed(work: Callable[[], int], rounds: int = 2) -> Speed:
    """Run `work` (which returns how many frames it handled) `rounds` times; the fastest round."""
    best: Speed | None = None
    for _ in range(rounds):
        c0, w0 = time.process_time(), time.perf_counter()
        frames = work()
        speed = Speed(frames, time.process_time() - c0, time.perf_counter() - w0)
        if best is None or speed.cpu_s < best.cpu_s:
            best = speed
    assert best is not None
    return best


def video_frames(videos: Sequence[CameraVideo], limit: int | None = None) -> list[Frame]:
    """Decoded frames of some videos, in memory (for bare-model timing and calibration)."""
    out: list[Frame] = []
    for v in videos:
        for _, _, frame in read_video(v):
            out.append(frame)
            if limit is not None and len(out) >= limit:
                return out
    return out


def bare_speed(detector: OnnxDetector, frames: Sequence[Frame], rounds: int = 2) -> Speed:
    """`session.run` alone on the frames, letterboxed beforehand (untimed)."""
    blobs = []
    for frame in frames:
        detector.letterbox.fill(frame)
        blobs.append(detector.letterbox.blob.copy())

    def work() -> int:
        for blob in blobs:
            detector.infer(blob)
        return len(blobs)

    return timed(work, rounds)


def pipeline_speed(config: StoreConfig, videos: Sequence[CameraVideo], detector: OnnxDetector,
                   rounds: int = 2) -> tuple[Speed, Speed]:
    """The whole per-frame pipeline: decode, detect (every frame, no gating), project, track.

    Returns the pipeline's speed and, from the same (fastest) round, the speed of the
    `session.run` calls inside it: the bare model under exactly the pipeline's conditions, so
    their ratio does not depend on what else the machine was doing.
    """
    best: tuple[Speed, Speed] | None = None
    for _ in range(rounds):
        detector.model_cpu_s = 0.0
        c0, w0 = time.process_time(), time.perf_counter()
        run = detections_from_video(config, videos, detector, gating=False)
        for _ in tracks_from_detections(config, run):
            pass
        whole = Speed(run.frames, time.process_time() - c0, time.perf_counter() - w0)
        model = Speed(run.frames, detector.model_cpu_s, detector.model_cpu_s)
        if best is None or whole.cpu_s < best[0].cpu_s:
            best = (whole, model)
    assert best is not None
    return best


def detect_video(detector: OnnxDetector, video: Path, frames: int,
                 progress: Callable[[int], None] | None = None) -> FloatArray:
    """MOT-style rows (frame, -1, left, top, w, h, score) for the first `frames` frames of a video."""
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open {video}")
    rows: list[list[float]] = []
    try:
        for k in range(1, frames + 1):
            ok, frame = cap.read()
            if not ok:
                break
            rows.extend([float(k), -1.0, *b] for b in detector.detect(frame))
            if progress is not None:
                progress(k)
    finally:
        cap.release()
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


def track_image(detections: FloatArray, size: tuple[int, int], fps: float, frames: int) -> tuple[FloatArray, Speed]:
    """Our image tracker over MOT-style detections; its rows and its speed (tracking only)."""
    by_frame = [detections[detections[:, 0] == k, 2:7] for k in range(1, frames + 1)]
    out: list[list[float]] = []

    def work() -> int:
        out.clear()
        tracker = ImageTracker(size)
        for k, boxes in enumerate(by_frame, start=1):
            out.extend([float(k), float(tb.track), *tb.box, tb.score] for tb in tracker.update(k / fps, boxes))
        return frames

    speed = timed(work, rounds=3)
    return np.array(out, dtype=np.float64).reshape(-1, 7), speed


class PeerUnavailableError(RuntimeError):
    """The off-the-shelf trackers (Roboflow `trackers`) cannot be imported or run here."""


PEERS = ("SORT", "ByteTrack", "OC-SORT", "BoT-SORT")


def track_with_peer(name: str, detections: FloatArray, frames: Sequence[Frame], fps: float,
                    ) -> tuple[FloatArray, Speed]:
    """Roboflow `trackers` (benchmark extra) with default settings on the same detections.

    BoT-SORT gets the frames too, for its camera-motion compensation.
    """
    try:
        import supervision as sv
        import trackers
    except ImportError as err:
        raise PeerUnavailableError(f"the benchmark extra is not installed ({err}); pip install -e '.[bench]'") from err
    make = {"SORT": trackers.SORTTracker, "ByteTrack": trackers.ByteTrackTracker, "OC-SORT": trackers.OCSORTTracker,
            "BoT-SORT": trackers.BoTSORTTracker}[name]
    by_frame = [detections[detections[:, 0] == k, 2:7] for k in range(1, len(frames) + 1)]
    out: list[list[float]] = []

    def work() -> int:
        import warnings

        out.clear()
        tracker = make()
        for k, boxes in enumerate(by_frame, start=1):
            xyxy = np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:4]].astype(np.float32)
            found = sv.Detections(xyxy=xyxy.reshape(-1, 4), confidence=boxes[:, 4].astype(np.float32))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the library warns when given a frame it does not use
                result = tracker.update(found, frames[k - 1]) if name == "BoT-SORT" else tracker.update(found)
            for b, tid in zip(result.xyxy, result.tracker_id):
                if tid >= 0:
                    out.append([float(k), float(tid), float(b[0]), float(b[1]), float(b[2] - b[0]),
                                float(b[3] - b[1]), 1.0])
        return len(by_frame)

    try:
        speed = timed(work, rounds=1 if name == "BoT-SORT" else 3)
    except Exception as err:  # a third-party library failing must not hide our own figures
        raise PeerUnavailableError(f"{name} failed: {type(err).__name__}: {err}") from err
    return np.array(out, dtype=np.float64).reshape(-1, 7), speed
