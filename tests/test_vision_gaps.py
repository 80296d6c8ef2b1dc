"""Offline gap filling: a person the tracker followed while hidden gets boxes in the hidden frames."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.vision.gaps import fill_gaps


def _row(frame: int, track: int, left: float, score: float = 0.9) -> list[float]:
    return [frame, track, left, 100.0, 20.0, 60.0, score]


def test_a_two_frame_gap_gets_boxes_on_the_straight_line_between_the_sightings():
    rows = np.array([_row(1, 4, 10.0, 0.8), _row(4, 4, 40.0, 0.6)])
    out = fill_gaps(rows, fps=7.0, max_gap_s=1.0)
    assert out[:, 0].tolist() == [1, 2, 3, 4]
    assert out[:, 2].tolist() == pytest.approx([10.0, 20.0, 30.0, 40.0])
    assert (out[:, 1] == 4).all()
    assert out[1:3, 6].tolist() == [0.6, 0.6]


@pytest.mark.parametrize(("missing", "max_gap_s", "filled"), [
    (7, 1.0, 7),     # exactly one second at 7 fps
    (8, 1.0, 0),     # longer than the limit: left alone, the person may have turned
    (3, 0.0, 0),     # 0 fills nothing
    (14, 2.0, 14),
])
def test_only_gaps_up_to_the_limit_are_filled(missing, max_gap_s, filled):
    rows = np.array([_row(1, 1, 0.0), _row(2 + missing, 1, 10.0)])
    assert len(fill_gaps(rows, fps=7.0, max_gap_s=max_gap_s)) == 2 + filled


def test_two_tracks_are_never_joined_and_the_rows_come_out_in_frame_order():
    rows = np.array([_row(3, 2, 50.0), _row(1, 1, 0.0), _row(1, 2, 70.0), _row(3, 1, 20.0), _row(5, 3, 0.0)])
    out = fill_gaps(rows, fps=10.0)
    assert [(int(f), int(t)) for f, t in out[:, :2]] == [(1, 1), (1, 2), (2, 1), (2, 2), (3, 1), (3, 2), (5, 3)]
    assert out[(out[:, 0] == 2) & (out[:, 1] == 2), 2].tolist() == [60.0]


@pytest.mark.parametrize(("rows", "fps", "gap", "message"), [
    (np.zeros((2, 6)), 7.0, 1.0, "shape"),
    (np.zeros((2, 7)), 0.0, 1.0, "fps"),
    (np.zeros((2, 7)), 7.0, -1.0, "max_gap_s"),
])
def test_bad_input_is_named(rows, fps, gap, message):
    with pytest.raises(ValueError, match=message):
        fill_gaps(rows, fps, gap)


def test_nothing_to_fill_returns_the_rows_unchanged():
    rows = np.array([_row(1, 1, 0.0), _row(2, 1, 5.0)])
    assert np.array_equal(fill_gaps(rows, fps=7.0), rows)
    assert fill_gaps(np.zeros((0, 7)), fps=7.0).shape == (0, 7)
