"""The camera workers' detections message (shared/spec/mqtt.md): topic, encoding and strict parsing.

`shop/<shop>/vision/<camera>/detections`, QoS 0, not retained:
`{"ts": <unix ms>, "seq": <n>, "size": [w, h], "boxes": [[left, top, width, height, score], ...]}`.
Only boxes travel; frames never leave the worker that decoded them. Parsing is a pure function
that rejects anything off-spec with a short reason, which the subscriber counts per camera.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, TypeGuard

import numpy as np

from appliance.events import Detections

MAX_BOXES = 500
MAX_CLOCK_SKEW_S = 600.0
MAX_PAYLOAD_BYTES = 64 * 1024


class PayloadError(ValueError):
    """A detections message that does not follow the spec; `reason` is a short, countable key."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def detections_topic(shop: str, camera: str) -> str:
    return f"shop/{shop}/vision/{camera}/detections"


def camera_of(topic: str, shop: str) -> str | None:
    """The camera id in a detections topic of this shop, or None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[:3] != ["shop", shop, "vision"] or parts[4] != "detections":
        return None
    return parts[3] or None


def encode_detections(detections: Detections, seq: int, size: tuple[int, int]) -> bytes:
    """The message for one frame's boxes (pixels to 0.1, scores to 0.001)."""
    boxes = [[round(float(v), 1) for v in b[:4]] + [round(float(b[4]), 3)] for b in detections.boxes]
    body = {"ts": round(detections.t * 1000), "seq": int(seq), "size": [int(size[0]), int(size[1])],
            "boxes": boxes}
    return json.dumps(body, separators=(",", ":")).encode()


def _number(value: Any) -> TypeGuard[float]:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def parse_detections(
    camera: str, payload: bytes, sizes: Mapping[str, tuple[int, int]], now: float
) -> tuple[int, Detections]:
    """Check and decode one message from `camera`; returns its sequence number and the boxes.

    Args:
        camera: the camera id from the topic.
        payload: the raw message.
        sizes: picture size of every camera the store knows.
        now: the box's clock (unix seconds); messages more than 10 minutes off are refused.

    Raises:
        PayloadError: with reason unknown-camera, too-large, not-json, bad-field, bad-size,
            clock-skew, too-many-boxes or bad-box.
    """
    if camera not in sizes:
        raise PayloadError("unknown-camera", f"camera {camera!r} is not in store.toml")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise PayloadError("too-large", f"{len(payload)} bytes")
    try:
        body = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise PayloadError("not-json", str(err)) from err
    if not isinstance(body, dict):
        raise PayloadError("not-json", "expected a JSON object")
    ts, seq, size, boxes = body.get("ts"), body.get("seq"), body.get("size"), body.get("boxes")
    if not _number(ts) or not isinstance(seq, int) or isinstance(seq, bool) or seq < 0 or not isinstance(boxes, list):
        raise PayloadError("bad-field", "needs numeric ts, a whole seq >= 0 and a boxes list")
    if (not isinstance(size, list) or len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                 for v in size)):
        raise PayloadError("bad-field", "size must be [width, height] in whole pixels")
    if tuple(size) != tuple(sizes[camera]):
        raise PayloadError("bad-size", f"picture is {size}, store.toml says {list(sizes[camera])}")
    t = float(ts) / 1000.0
    if abs(t - now) > MAX_CLOCK_SKEW_S:
        raise PayloadError("clock-skew", f"timestamp is {t - now:+.0f} s from the box's clock")
    if len(boxes) > MAX_BOXES:
        raise PayloadError("too-many-boxes", f"{len(boxes)} boxes (at most {MAX_BOXES})")
    rows = []
    for b in boxes:
        if not isinstance(b, list) or len(b) != 5 or not all(_number(v) for v in b):
            raise PayloadError("bad-box", "each box must be 5 finite numbers")
        if b[2] <= 0 or b[3] <= 0 or not 0.0 <= b[4] <= 1.0:
            raise PayloadError("bad-box", "width and height must be positive and the score within 0-1")
        rows.append([float(v) for v in b])
    return seq, Detections(t, camera, np.array(rows, dtype=np.float64).reshape(-1, 5))
