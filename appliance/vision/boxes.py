"""Person boxes in pixels, as rows of (left, top, width, height, score): overlap and foot points."""

from __future__ import annotations

import numpy as np

from appliance.events import FloatArray


def check_boxes(boxes: FloatArray) -> FloatArray:
    """Return `boxes` as float64 rows of (left, top, width, height, score); raise ValueError otherwise."""
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 5:
        raise ValueError(f"boxes must have shape (n, 5), got {arr.shape}")
    return arr


def iou_matrix(a: FloatArray, b: FloatArray) -> FloatArray:
    """Intersection over union of every box in `a` with every box in `b` (columns left, top, w, h).

    Extra columns (a score) are ignored. Returns an (len(a), len(b)) array; empty inputs give an
    empty matrix of the right shape.
    """
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    a = np.asarray(a, dtype=np.float64)[:, None, :4]
    b = np.asarray(b, dtype=np.float64)[None, :, :4]
    left = np.maximum(a[..., 0], b[..., 0])
    top = np.maximum(a[..., 1], b[..., 1])
    right = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    bottom = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(right - left, 0.0, None) * np.clip(bottom - top, 0.0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def foot_points(boxes: FloatArray) -> FloatArray:
    """The bottom centre of each box: where the person stands, in pixels, shape (n, 2)."""
    arr = np.asarray(boxes, dtype=np.float64)
    return np.stack([arr[:, 0] + arr[:, 2] / 2.0, arr[:, 1] + arr[:, 3]], axis=1) if len(arr) else np.zeros((0, 2))
