"""Camera calibration: the image -> floor homography, and where a person's feet are on the floor.

A ceiling camera sees the floor as a plane, so four or more floor points whose pixel and floor
positions are known (tape marks measured with a tape, tiles counted) fix the 3x3 homography
that store.toml keeps as `image_to_floor`. A person stands where the bottom centre of their box
is, so projecting that pixel gives their floor position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.config.model import Camera
from appliance.events import FloatArray
from appliance.vision.boxes import foot_points


class CalibrationError(ValueError):
    """Points that do not determine a usable homography."""


@dataclass(frozen=True, slots=True)
class Calibration:
    """A fitted `image_to_floor` homography and how well it fits the points it came from."""

    image_to_floor: FloatArray
    rms_m: float
    max_m: float

    def as_toml(self) -> str:
        rows = ", ".join("[" + ", ".join(f"{v:.9g}" for v in row) + "]" for row in self.image_to_floor)
        return f"image_to_floor = [{rows}]"


def fit_homography(pixels: Sequence[Sequence[float]], floor: Sequence[Sequence[float]]) -> Calibration:
    """Fit image -> floor from matching points (pixels u, v and floor x, y in metres).

    Uses all points in a least-squares fit (`cv2.findHomography`, method 0), so a fifth or
    sixth point averages out measuring errors; the residuals say how far off the worst is.

    Raises:
        CalibrationError: fewer than four pairs, mismatched lists, or points on one line.
    """
    src = np.asarray(pixels, dtype=np.float64)
    dst = np.asarray(floor, dtype=np.float64)
    if src.ndim != 2 or src.shape[1:] != (2,) or dst.shape != src.shape:
        raise CalibrationError(f"need matching lists of (u, v) pixels and (x, y) floor points, got {src.shape} and "
                               f"{dst.shape}")
    if len(src) < 4:
        raise CalibrationError(f"need at least 4 point pairs, got {len(src)}")
    if not (np.all(np.isfinite(src)) and np.all(np.isfinite(dst))):
        raise CalibrationError("points must be finite numbers")
    for name, pts in (("pixel", src), ("floor", dst)):
        centred = pts - pts.mean(axis=0)
        if np.linalg.matrix_rank(centred, tol=1e-6 * max(1.0, float(np.abs(centred).max()))) < 2:
            raise CalibrationError(f"the {name} points lie on one line; spread them over the floor")
    h, _ = cv2.findHomography(src, dst, 0)
    if h is None or not np.all(np.isfinite(h)) or abs(np.linalg.det(h)) < 1e-12:
        raise CalibrationError("these points give no usable homography; check that each pixel matches its floor point")
    h = h / h[2, 2]
    err = np.linalg.norm(to_floor(h, src) - dst, axis=1)
    return Calibration(h, float(np.sqrt(np.mean(err**2))), float(err.max()))


def to_floor(image_to_floor: FloatArray, pixels: FloatArray) -> FloatArray:
    """Project pixels (n, 2) of points on the floor to floor positions (n, 2) in metres.

    A pixel above the horizon has no floor point; its row is NaN.
    """
    pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    p = np.c_[pts, np.ones(len(pts))] @ np.asarray(image_to_floor, dtype=np.float64).T
    w = p[:, 2:3]
    return np.where(w > 1e-12, p[:, :2] / np.where(w > 1e-12, w, 1.0), np.nan)


def to_image(image_to_floor: FloatArray, floor_xy: FloatArray) -> FloatArray:
    """The pixels (n, 2) at which floor positions (n, 2) appear."""
    return to_floor(np.linalg.inv(np.asarray(image_to_floor, dtype=np.float64)), floor_xy)


def floor_jacobian(image_to_floor: FloatArray, pixels: FloatArray) -> FloatArray:
    """d(floor x, y) / d(pixel u, v) at each pixel, shape (n, 2, 2): metres per pixel, by direction."""
    h = np.asarray(image_to_floor, dtype=np.float64)
    pts = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    w = p[:, 2]
    jac = np.empty((len(pts), 2, 2))
    for i in range(2):
        for j in range(2):
            jac[:, i, j] = (h[i, j] * w - p[:, i] * h[2, j]) / w**2
    return jac


@dataclass(frozen=True, slots=True)
class CameraView:
    """One calibrated camera: turns its person boxes into floor positions with their uncertainty.

    The foot point of a box is uncertain by a share of the box's size (`foot_sd`: across, down);
    through the homography that becomes a floor covariance that grows with distance from the
    camera, so the tracker trusts a nearby camera more than a far one. `floor_sd_m` adds the
    calibration's own error.
    """

    camera: str
    size: tuple[int, int]
    image_to_floor: FloatArray
    foot_sd: tuple[float, float] = (0.15, 0.05)
    floor_sd_m: float = 0.05

    @classmethod
    def of(cls, camera: Camera) -> CameraView:
        return cls(camera.id, camera.size, np.array(camera.image_to_floor, dtype=np.float64))

    def positions(self, boxes: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Floor positions (n, 2) of the people in `boxes` and their covariances (n, 2, 2)."""
        feet = foot_points(boxes)
        xy = to_floor(self.image_to_floor, feet)
        jac = floor_jacobian(self.image_to_floor, feet)
        boxes = np.asarray(boxes, dtype=np.float64)
        sd = np.zeros((len(feet), 2, 2))
        sd[:, 0, 0] = np.square(self.foot_sd[0] * boxes[:, 2])
        sd[:, 1, 1] = np.square(self.foot_sd[1] * boxes[:, 3])
        cov = jac @ sd @ np.transpose(jac, (0, 2, 1)) + np.eye(2) * self.floor_sd_m**2
        return xy, cov
