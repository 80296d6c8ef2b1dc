"""Motion gating: skip the detector on a camera whose picture has not changed since it last ran.

A shop is empty much of the day and a shopper reading a label barely moves; re-running the
detector on the same picture gives the same boxes. The gate compares a small, averaged grey copy
of each frame (averaging also flattens sensor noise) with the copy taken when the detector last
ran, and lets the frame through when enough pixels changed, or when `refresh_s` has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from appliance.config.model import VisionSettings

SCALE = 4


@dataclass(slots=True)
class MotionGate:
    """Per-camera decision: run the detector on this frame, or reuse the last boxes.

    Args:
        delta: grey-level change (after averaging 4x4 pixel blocks) that marks a block changed.
        share: share of changed blocks that counts as motion; a person walking in the far
            corner of a 640x384 picture changes about 1%.
        refresh_s: run anyway after this long, so a slow change can never hide for good.
    """

    delta: int = 18
    share: float = 0.001
    refresh_s: float = 2.0
    _last: dict[str, tuple[float, npt.NDArray[Any]]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: VisionSettings) -> MotionGate:
        return cls(settings.motion_delta, settings.motion_share, settings.motion_refresh_s)

    def changed(self, camera: str, t: float, frame_bgr: npt.NDArray[Any]) -> bool:
        """True when the detector should run on this frame (the gate then remembers it)."""
        h, w = frame_bgr.shape[:2]
        small = cv2.resize(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY), (max(1, w // SCALE), max(1, h // SCALE)),
                           interpolation=cv2.INTER_AREA)
        last = self._last.get(camera)
        if last is not None and last[1].shape == small.shape and t - last[0] < self.refresh_s:
            moved = np.count_nonzero(cv2.absdiff(small, last[1]) > self.delta)
            if moved <= self.share * small.size:
                return False
        self._last[camera] = (t, small)
        return True
