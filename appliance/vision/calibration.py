"""Camera calibration: the image -> floor homography, and where a person's feet are on the floor.

A ceiling camera sees the floor as a plane, so four or more floor points whose pixel and floor
positions are known (tape marks measured with a tape, tiles counted) fix the 3x3 homography
that store.toml keeps as `image_to_floor`. A person stands where the bottom centre of their box
is, so projecting that pixel gives their floor position.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from appliance.config.model import Camera
from appliance.events import FloatArray
from appliance.vision.boxes import foot_points

NEAR_M = 0.05
HEAD_M = 1.7
HEAD_SD_M = 0.12


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
class Pinhole:
    """A pinhole camera: intrinsics `k`, rotation `r` (world -> camera: x right, y down, z ahead)
    and position `c` in the floor frame (metres, z up from the floor).

    The simulator films with one; the tracker recovers one from a camera's homography to tell
    where a person stands when only their upper body shows (legs hidden by a shelf).
    """

    size: tuple[int, int]
    k: FloatArray
    r: FloatArray
    c: FloatArray

    @classmethod
    def looking_at(
        cls, position: Sequence[float], target: Sequence[float], size: tuple[int, int], hfov_deg: float
    ) -> Pinhole:
        """A level (no roll) camera at `position` aimed at the floor point or 3-d point `target`."""
        c = np.asarray(position, dtype=np.float64)
        tgt = np.asarray(target, dtype=np.float64)
        if tgt.shape == (2,):
            tgt = np.append(tgt, 0.0)
        ahead = tgt - c
        ahead /= np.linalg.norm(ahead)
        right = np.cross(ahead, [0.0, 0.0, 1.0])
        if np.linalg.norm(right) < 1e-6:
            raise ValueError("a camera looking straight down needs a heading; aim it at an angle")
        right /= np.linalg.norm(right)
        down = np.cross(ahead, right)
        w, h = size
        f = (w / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        k = np.array([[f, 0.0, w / 2.0], [0.0, f, h / 2.0], [0.0, 0.0, 1.0]])
        return cls(size, k, np.stack([right, down, ahead]), c)

    @classmethod
    def from_homography(cls, image_to_floor: FloatArray, size: tuple[int, int]) -> Pinhole:
        """Recover the camera from its floor homography, assuming square pixels and a centred
        principal point (true of `camera_rig`'s cameras and of most real ones).

        The floor -> image homography is K [r1 r2 t] up to scale; the two rotation columns being
        orthogonal and of equal length fixes the focal length, then the pose follows.
        """
        h_fi = np.linalg.inv(np.asarray(image_to_floor, dtype=np.float64))
        w, hgt = size
        shift = np.array([[1.0, 0.0, -w / 2.0], [0.0, 1.0, -hgt / 2.0], [0.0, 0.0, 1.0]])
        a = shift @ h_fi
        a1, a2 = a[:, 0], a[:, 1]
        estimates = []
        den = a1[2] * a2[2]
        if abs(den) > 1e-12:
            estimates.append((-(a1[0] * a2[0] + a1[1] * a2[1]) / den, abs(den)))
        den = a2[2] ** 2 - a1[2] ** 2
        if abs(den) > 1e-12:
            estimates.append(((a1[0] ** 2 + a1[1] ** 2 - a2[0] ** 2 - a2[1] ** 2) / den, abs(den)))
        good = [(f2, wt) for f2, wt in estimates if f2 > 0]
        if not good:
            raise CalibrationError("this homography fits no angled pinhole camera (is it looking straight down?)")
        f = math.sqrt(max(good, key=lambda e: e[1])[0])
        k = np.array([[f, 0.0, w / 2.0], [0.0, f, hgt / 2.0], [0.0, 0.0, 1.0]])
        m = np.linalg.inv(k) @ h_fi
        scale = 1.0 / np.linalg.norm(m[:, 0])
        for sign in (1.0, -1.0):
            r1, r2, t = sign * scale * m[:, 0], sign * scale * m[:, 1], sign * scale * m[:, 2]
            r = np.stack([r1, r2, np.cross(r1, r2)], axis=1)
            u, _, vt = np.linalg.svd(r)
            r = u @ vt
            c = -r.T @ t
            if c[2] > 0:
                return cls(size, k, r, c)
        raise CalibrationError("this homography puts the camera below the floor")

    def to_camera(self, points: FloatArray) -> FloatArray:
        """World points (n, 3) in camera coordinates (n, 3); z is the depth ahead of the camera."""
        return (np.asarray(points, dtype=np.float64).reshape(-1, 3) - self.c) @ self.r.T

    def project(self, points: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Pixels (n, 2) and depths (n,) of world points; pixels of points behind the camera are NaN."""
        cam = self.to_camera(points)
        z = cam[:, 2]
        uv = (cam @ self.k.T)[:, :2] / np.where(z > NEAR_M, z, np.nan)[:, None]
        return uv, z

    def floor_to_image(self) -> FloatArray:
        m = self.k @ np.c_[self.r[:, 0], self.r[:, 1], -self.r @ self.c]
        return m / m[2, 2]

    def image_to_floor(self) -> FloatArray:
        m = np.linalg.inv(self.floor_to_image())
        return m / m[2, 2]

    def stature(self, floor_xy: FloatArray, row: FloatArray) -> FloatArray:
        """How high above floor points (n, 2) a point must be to show at picture rows `row` (n,):
        a standing person's height from their foot point and the top of their box."""
        p0 = (np.c_[floor_xy, np.zeros(len(floor_xy))] - self.c) @ (self.k @ self.r).T
        p1 = self.k @ self.r[:, 2]
        den = row * p1[2] - p1[1]
        with np.errstate(divide="ignore", invalid="ignore"):
            h = (p0[:, 1] - row * p0[:, 2]) / den
        return np.where(np.abs(den) > 1e-9, h, np.nan)

    def head_distance(self, bearing: FloatArray, row: FloatArray, height_m: float) -> FloatArray:
        """How far (metres, on the floor) from the camera along each floor direction `bearing`
        (n, 2) a point `height_m` high shows at picture row `row` (n,); NaN where it never does.

        Only the row is used, so a person slanting across a wide lens does not matter.
        """
        p0 = self.k @ self.r @ np.array([0.0, 0.0, height_m - self.c[2]])
        p1 = (self.k @ self.r @ np.c_[bearing, np.zeros(len(bearing))].T).T
        den = row * p1[:, 2] - p1[:, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (p0[1] - row * p0[2]) / den
        return np.where(np.abs(den) > 1e-9, d, np.nan)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where one camera's boxes put people: floor positions (n, 2), their covariances (n, 2, 2),
    each person's height in metres where the feet showed (NaN where they did not), and which
    were placed from the head because the feet were hidden (n,) booleans (None: not known)."""

    xy: FloatArray
    cov: FloatArray
    stature: FloatArray
    hidden: npt.NDArray[np.bool_] | None = None

    def take(self, keep: npt.NDArray[np.bool_] | Sequence[int]) -> Placement:
        """The placements selected by `keep` (a boolean mask or indices)."""
        hidden = None if self.hidden is None else self.hidden[keep]
        return Placement(self.xy[keep], self.cov[keep], self.stature[keep], hidden)


def covered_feet(boxes: FloatArray, overlap: float = 0.5, margin: float = 0.05) -> npt.NDArray[np.bool_]:
    """Which boxes (n,) end inside a box that reaches lower in the picture: a person standing
    nearer the camera, in front of this one's legs.

    A box counts as covered when its bottom edge lies within another box's rows, more than
    `margin` of its own height above that box's bottom, and at least `overlap` of its width is
    inside the other's columns. Its bottom edge is then where the nearer person began to hide
    it (or where the detector guessed the feet), not the feet: placing it by the bottom edge
    would put the person too far away, into the people behind.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
    if len(b) < 2:
        return np.zeros(len(b), dtype=bool)
    left, top, w, h = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    bottom = top + h
    inside_cols = np.clip(np.minimum(left[:, None] + w[:, None], left[None, :] + w[None, :])
                          - np.maximum(left[:, None], left[None, :]), 0.0, None) / np.maximum(w[:, None], 1e-9)
    lower = bottom[None, :] - bottom[:, None] > margin * h[:, None]
    within = (bottom[:, None] > top[None, :]) & lower
    hit = within & (inside_cols >= overlap)
    np.fill_diagonal(hit, False)
    return np.asarray(hit.any(axis=1))


@dataclass(frozen=True, slots=True)
class CameraView:
    """One calibrated camera: turns its person boxes into floor positions with their uncertainty.

    The foot point of a box is uncertain by a share of the box's size (`foot_sd`: across, down);
    through the homography that becomes a floor covariance that grows with distance from the
    camera, so the tracker trusts a nearby camera more than a far one. `floor_sd_m` adds the
    calibration's own error.

    In a shop the legs are often hidden behind a shelf, and then the box's bottom edge is the
    shelf's, not the feet. With the camera's pose (recovered from the homography, see
    `Pinhole.from_homography`) each box's top row also says how far from the camera the person
    is, taking the head to be 1.7 m above the floor (give or take 0.12 m). When the foot point
    lies well beyond that (more than twice what the height guess allows), the feet are taken as
    hidden and the person is placed in the same direction at the head's distance, with a
    covariance stretched along the line of sight. A small child may be taken for a hidden adult
    and placed a little too close to the camera. Where the feet do show, feet and head rows give
    the person's height: a cue that tells two shoppers apart when they stand close together.
    """

    camera: str
    size: tuple[int, int]
    image_to_floor: FloatArray
    pose: Pinhole | None = None
    foot_sd: tuple[float, float] = (0.15, 0.05)
    floor_sd_m: float = 0.05
    hidden_beyond_m: float = 0.3

    @classmethod
    def of(cls, camera: Camera) -> CameraView:
        h = np.array(camera.image_to_floor, dtype=np.float64)
        try:
            pose: Pinhole | None = Pinhole.from_homography(h, camera.size)
        except CalibrationError:
            pose = None  # no pose (e.g. a camera looking straight down): feet only
        return cls(camera.id, camera.size, h, pose)

    def positions(self, boxes: FloatArray) -> Placement:
        """Where the people in `boxes` stand on the floor, how surely, and how tall they are.

        A box whose bottom edge lies inside the box of someone nearer the camera (see
        `covered_feet`) is placed from its top edge too: its legs are hidden by that person.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 5)
        feet = foot_points(boxes)
        xy, cov = self._through(self.image_to_floor, feet, boxes)
        if self.pose is None or not len(boxes):
            return Placement(xy, cov, np.full(len(xy), np.nan), np.zeros(len(xy), dtype=bool))
        here = self.pose.c[:2]
        away = xy - here
        far = np.linalg.norm(away, axis=1)
        bearing = away / np.where(far > 0, far, 1.0)[:, None]
        near = self.pose.head_distance(bearing, boxes[:, 1], HEAD_M)
        # How much farther a head 0.12 m higher would put the person: the height is a guess.
        spread = np.abs(self.pose.head_distance(bearing, boxes[:, 1], HEAD_M + HEAD_SD_M) - near)
        # Feet hidden: the bottom edge (a shelf's top) lies beyond where the head says the person
        # is, or the legs are behind someone standing nearer.
        shelf = far - near > np.maximum(self.hidden_beyond_m, 2.0 * spread)
        behind = covered_feet(boxes)
        hidden = np.isfinite(near) & (near > 0) & (shelf | behind)
        stature = np.where(hidden, np.nan, self.pose.stature(xy, boxes[:, 1]))
        if hidden.any():
            xy[hidden], cov[hidden] = self._from_head(boxes[hidden], bearing[hidden], near[hidden], spread[hidden])
        return Placement(xy, cov, stature, hidden)

    def _from_head(self, boxes: FloatArray, bearing: FloatArray, near: FloatArray,
                   spread: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Positions at distance `near` along `bearing`, with a covariance stretched along the line
        of sight by `spread` (how far a height error moves the person)."""
        assert self.pose is not None
        xy = self.pose.c[:2] + bearing * near[:, None]
        across = np.c_[-bearing[:, 1], bearing[:, 0]]
        sd_across = self.foot_sd[0] * boxes[:, 2] * near / self.pose.k[0, 0]
        sd_along = np.hypot(spread, self.floor_sd_m)
        cov = (bearing[:, :, None] * bearing[:, None, :] * np.square(sd_along)[:, None, None]
               + across[:, :, None] * across[:, None, :] * np.square(sd_across)[:, None, None]
               + np.eye(2) * self.floor_sd_m**2)
        return xy, cov

    def _through(self, homography: FloatArray, points: FloatArray, boxes: FloatArray) -> tuple[FloatArray, FloatArray]:
        xy = to_floor(homography, points)
        jac = floor_jacobian(homography, points)
        sd = np.zeros((len(points), 2, 2))
        sd[:, 0, 0] = np.square(self.foot_sd[0] * boxes[:, 2])
        sd[:, 1, 1] = np.square(self.foot_sd[1] * boxes[:, 3])
        cov = jac @ sd @ np.transpose(jac, (0, 2, 1)) + np.eye(2) * self.floor_sd_m**2
        return xy, cov
