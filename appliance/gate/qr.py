"""A scanner-less gate: reads the entry pass's QR code from a camera frame with OpenCV.

Frames stay in memory: they are read, decoded and dropped, never written anywhere. A camera sees
the same code in many consecutive frames, so `CameraGate` presents a text once and then holds it
for `hold_s` seconds; a longer hold avoids counting one shopper's pass as a replay many times but
delays a second try after a refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)


class QrReader:
    """Finds and decodes one QR code in a frame (BGR or grey, uint8).

    OpenCV's classic detector is tried first, then the ArUco-based one (more tolerant of blur
    and perspective); when both find nothing, both again on the frame upscaled twice, which
    rescues small codes (about 3-4 pixels per module) at four times the cost of a frame with no
    code in it.
    """

    def __init__(self) -> None:
        self._fast = cv2.QRCodeDetector()
        self._robust = cv2.QRCodeDetectorAruco()

    def read(self, frame: npt.NDArray[np.uint8]) -> str | None:
        """The decoded text, or None when no readable code is in the frame."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8:
            raise ValueError(f"a frame is a uint8 array, got {getattr(frame, 'dtype', type(frame))}")
        if frame.ndim == 3 and frame.shape[2] == 3:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        elif frame.ndim == 2:
            grey = frame
        else:
            raise ValueError(f"a frame has shape (h, w) or (h, w, 3), got {frame.shape}")
        for image in (grey, None):
            if image is None:
                image = cv2.resize(grey, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
            for detector in (self._fast, self._robust):
                try:
                    text, _points, _straight = detector.detectAndDecode(image)
                except cv2.error:
                    continue
                if text:
                    return str(text)
        return None


class CameraGate:
    """Feeds codes seen by a gate camera into the same admission path as a scanner.

    Args:
        gate: the gate id the camera watches.
        present: `present(gate, text, t) -> bool`, e.g. `GateLink.present`.
        hold_s: how long a text just presented is ignored when seen again.
    """

    def __init__(self, gate: str, present: Callable[[str, str, float], bool], hold_s: float = 5.0) -> None:
        if hold_s < 0:
            raise ValueError(f"hold_s must be >= 0, got {hold_s}")
        self.gate = gate
        self._present = present
        self._hold_s = hold_s
        self._reader = QrReader()
        self._last: tuple[str, float] | None = None

    def offer(self, frame: npt.NDArray[np.uint8], t: float) -> bool | None:
        """Look at one frame taken at `t`: None if no new code, else whether the gate opened."""
        text = self._reader.read(frame)
        if text is None:
            return None
        if self._last is not None and self._last[0] == text and t - self._last[1] < self._hold_s:
            return None
        self._last = (text, t)
        return self._present(self.gate, text, t)


def synthetic_view(
    text: str,
    *,
    angle: float,
    module_px: float,
    noise: float,
    rng: np.random.Generator,
    size: tuple[int, int] = (960, 720),
) -> npt.NDArray[np.uint8]:
    """A grey camera frame of a phone showing `text` as a QR code, for tests and `appliance bench qr`.

    The code is drawn sharp, rotated by `angle` degrees, resampled to `module_px` pixels per module
    (area averaging, as a sensor integrates light), centred on a grey background and given Gaussian
    noise of `noise` grey levels.
    """
    fine = 8
    code = cv2.QRCodeEncoder.create().encode(text)
    code = cv2.copyMakeBorder(code, 4, 4, 4, 4, cv2.BORDER_CONSTANT, value=255)
    sharp = cv2.resize(code, None, fx=fine, fy=fine, interpolation=cv2.INTER_NEAREST)
    side = int(np.ceil(sharp.shape[0] * 1.5))
    lo = (side - sharp.shape[0]) // 2
    hi = side - sharp.shape[0] - lo
    canvas = cv2.copyMakeBorder(sharp, lo, hi, lo, hi, cv2.BORDER_CONSTANT, value=190)
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0)
    turned = cv2.warpAffine(canvas, turn, (side, side), flags=cv2.INTER_LINEAR, borderValue=190)
    target = round(side * module_px / fine)
    width, height = size
    if target > min(width, height):
        raise ValueError(f"a code of {module_px} px per module does not fit a {width}x{height} frame")
    small = cv2.resize(turned, (target, target), interpolation=cv2.INTER_AREA)
    frame = np.full((height, width), 190, np.uint8)
    y, x = (height - target) // 2, (width - target) // 2
    frame[y : y + target, x : x + target] = small
    noisy = frame + rng.normal(0.0, noise, frame.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)
