"""Offline gap filling of image tracks: frames in which a followed person was hidden get a box.

The image tracker keeps a person's identity while they are hidden (behind a post or a passer-by)
but, being online, reports only the frames in which the detector saw them. When a whole video is
tracked to a file, the hidden frames can be filled afterwards: the track was seen before and after
the gap, so a box moving linearly between the two sightings is where the person most likely was.
Only gaps the tracker itself bridged are filled (same track id on both sides), and only up to a
limit: over a long gap a person may have turned, and a straight line would be a guess.
"""

from __future__ import annotations

import numpy as np

from appliance.events import FloatArray

DEFAULT_MAX_GAP_S = 2.0


def fill_gaps(rows: FloatArray, fps: float, max_gap_s: float = DEFAULT_MAX_GAP_S) -> FloatArray:
    """MOT rows (frame, id, left, top, width, height, score) with each track's short gaps filled.

    A gap of at most `max_gap_s` (that many seconds of missing frames at `fps`) between two
    sightings of one track gets one linearly interpolated box per missing frame; its score is the
    lower of the two sightings' scores. Returns all rows sorted by frame, then track.

    Args:
        rows: (n, 7) tracker output; frames are whole numbers, one row per track and frame.
        fps: the video's frame rate, to turn `max_gap_s` into frames.
        max_gap_s: longest hidden stretch to fill; 0 fills nothing.

    Raises:
        ValueError: rows of the wrong shape, or a non-positive frame rate, or a negative limit.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != 7:
        raise ValueError(f"rows must have shape (n, 7), got {rows.shape}")
    if fps <= 0 or max_gap_s < 0:
        raise ValueError(f"fps must be > 0 and max_gap_s >= 0, got fps={fps}, max_gap_s={max_gap_s}")
    max_missing = int(np.floor(max_gap_s * fps + 1e-9))
    filled = [rows]
    for track in np.unique(rows[:, 1]):
        seen = rows[rows[:, 1] == track]
        seen = seen[np.argsort(seen[:, 0], kind="stable")]
        missing = np.diff(seen[:, 0]).astype(np.int64) - 1
        for k in np.flatnonzero((missing > 0) & (missing <= max_missing)):
            before, after = seen[k], seen[k + 1]
            share = np.arange(1, missing[k] + 1)[:, None] / (missing[k] + 1)
            boxes = before[2:6] + share * (after[2:6] - before[2:6])
            frames = before[0] + np.arange(1, missing[k] + 1)
            score = min(before[6], after[6])
            filled.append(np.column_stack([frames, np.full(len(frames), track), boxes,
                                           np.full(len(frames), score)]))
    out = np.concatenate(filled)
    return out[np.lexsort((out[:, 1], out[:, 0]))]
