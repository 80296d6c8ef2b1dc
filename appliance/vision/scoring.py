"""Tracking accuracy in MOTChallenge terms (MOTA, IDF1, ID switches, precision, recall).

Files use the MOTChallenge text format: `frame,id,left,top,width,height,score,-1,-1,-1`, frames
from 1; in ground truth the seventh column is a flag (0 = ignore this box). The counting is
py-motmetrics' (a maintained implementation of CLEAR MOT and identity metrics); only the IoU
distance is computed here, because the library's own helper no longer runs on numpy 2.

Ground truth often leaves part of the picture unannotated (people far in the background). An
`ignore` polygon makes the comparison fair without hiding real mistakes: a tracked box whose
feet stand inside it and that matches no annotated person is not counted as a false positive;
everything else (misses, switches, false boxes elsewhere) counts as usual, for every tracker.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from appliance.events import FloatArray
from appliance.vision.boxes import foot_points, iou_matrix

# PETS09-S2L1 view 001: the far footpath behind the lawn (top left) is not annotated; people
# walking there are real but absent from gt.txt. No annotated person ever stands in it.
PETS_UNANNOTATED = ((0.0, 0.0), (320.0, 0.0), (320.0, 100.0), (0.0, 155.0))

MATCH_IOU = 0.5


class MotFileError(ValueError):
    """A MOTChallenge file that cannot be read; the message names the line."""


def read_mot(path: Path) -> FloatArray:
    """Rows (n, 7) of frame, id, left, top, width, height, score/flag from a MOTChallenge file."""
    rows: list[list[float]] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                if not row or not "".join(row).strip():
                    continue
                if len(row) < 7:
                    raise MotFileError(f"{path}:{n}: expected at least 7 comma-separated fields, got {len(row)}")
                try:
                    values = [float(v) for v in row[:7]]
                except ValueError as err:
                    raise MotFileError(f"{path}:{n}: not a number ({err})") from err
                if not all(math.isfinite(v) for v in values) or values[0] < 1 or values[4] <= 0 or values[5] <= 0:
                    raise MotFileError(f"{path}:{n}: frame must be >= 1 and width, height > 0, got {row[:7]}")
                rows.append(values)
    except (OSError, UnicodeDecodeError) as err:
        raise MotFileError(f"{path}: cannot read: {err}") from err
    return np.array(rows, dtype=np.float64).reshape(-1, 7)


def format_mot(rows: Sequence[Sequence[float]]) -> str:
    """MOTChallenge text for rows of frame, id, left, top, width, height, score."""
    lines = [
        f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{r[6]:.3f},-1,-1,-1" for r in rows
    ]
    return "\n".join(lines) + ("\n" if lines else "")


@dataclass(frozen=True, slots=True)
class MotScore:
    """CLEAR MOT and identity figures of one tracker run (percentages where MOTChallenge uses them)."""

    mota: float
    idf1: float
    id_switches: int
    precision: float
    recall: float
    false_positives: int
    misses: int
    annotated: int

    def line(self) -> str:
        return (f"MOTA {self.mota:5.1f}  IDF1 {self.idf1:5.1f}  ID switches {self.id_switches:3d}  "
                f"precision {self.precision:5.1f}  recall {self.recall:5.1f}  (FP {self.false_positives}, "
                f"missed {self.misses} of {self.annotated})")


def _distances(gt: FloatArray, hyp: FloatArray) -> FloatArray:
    d = 1.0 - iou_matrix(gt[:, 2:6], hyp[:, 2:6])
    d[d > 1.0 - MATCH_IOU] = np.nan
    return d


def in_region(polygon: Sequence[tuple[float, float]], points: FloatArray) -> FloatArray:
    """Which points (n, 2) lie inside or on the polygon."""
    contour = np.asarray(polygon, dtype=np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(contour, (float(x), float(y)), False) >= 0 for x, y in points], dtype=bool)


def score_tracks(
    truth: FloatArray, tracks: FloatArray, frames: Sequence[int],
    ignore: Sequence[tuple[float, float]] | None = None,
) -> MotScore:
    """Score tracker output against ground truth over `frames` (a box matches at IoU >= 0.5).

    Args:
        truth: ground-truth rows (frame, id, left, top, w, h, flag); flag 0 rows are "don't care":
            a tracked box on them counts neither way.
        tracks: tracker rows (frame, id, left, top, w, h, score).
        frames: the frames to score (ground truth must cover all of them).
        ignore: optional polygon (pixels) of an unannotated area, see the module notes.
    """
    import motmetrics  # the metrics library is a development and benchmark dependency

    acc = motmetrics.MOTAccumulator(auto_id=True)
    for fr in frames:
        g = truth[truth[:, 0] == fr]
        h = tracks[tracks[:, 0] == fr]
        dont_care = g[g[:, 6] == 0]
        g = g[g[:, 6] != 0]
        if len(dont_care) and len(h):
            h = h[~np.any(np.isfinite(_distances(dont_care, h)), axis=0)]
        if ignore is not None and len(h):
            unmatched = ~np.any(np.isfinite(_distances(g, h)), axis=0) if len(g) else np.ones(len(h), dtype=bool)
            h = h[~(unmatched & in_region(ignore, foot_points(h[:, 2:6])))]
        acc.update(g[:, 1].astype(np.int64), h[:, 1].astype(np.int64), _distances(g, h) if len(g) and len(h)
                   else np.empty((len(g), len(h))))
    return _summary(acc)


def score_positions(truth: FloatArray, tracks: FloatArray, max_m: float = 0.5) -> MotScore:
    """Score floor tracks against true floor positions: rows of (t, id, x, y) on both sides.

    A track point matches a person within `max_m` metres at the same time `t`; the truth rows
    must be given at the tracks' times (people outside the shop simply have no row).
    """
    import motmetrics

    acc = motmetrics.MOTAccumulator(auto_id=True)
    for t in np.unique(np.concatenate([truth[:, 0], tracks[:, 0]])):
        g = truth[truth[:, 0] == t]
        h = tracks[tracks[:, 0] == t]
        d = np.linalg.norm(g[:, None, 2:4] - h[None, :, 2:4], axis=2)
        d[d > max_m] = np.nan
        acc.update(g[:, 1].astype(np.int64), h[:, 1].astype(np.int64), d)
    return _summary(acc)


def _summary(acc: Any) -> MotScore:
    import motmetrics

    names = ["mota", "idf1", "num_switches", "precision", "recall", "num_false_positives", "num_misses",
             "num_objects"]
    row = motmetrics.metrics.create().compute(acc, metrics=names, name="run").iloc[0]
    return MotScore(
        100.0 * float(row["mota"]), 100.0 * float(row["idf1"]), int(row["num_switches"]),
        100.0 * float(row["precision"]), 100.0 * float(row["recall"]), int(row["num_false_positives"]),
        int(row["num_misses"]), int(row["num_objects"]),
    )
