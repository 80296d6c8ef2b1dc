"""Tracking accuracy on real footage: PETS09-S2L1 frames 1-169, the issue's targets and the peers' figures."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.vision.benchmark import detect_video, track_image
from appliance.vision.boxes import foot_points
from appliance.vision.gaps import fill_gaps
from appliance.vision.scoring import PETS_UNANNOTATED, MotScore, in_region, read_mot, score_tracks
from tests.conftest import shared_path

FRAMES = range(1, 170)


@pytest.fixture(scope="module")
def pets(person_detector):  # type: ignore[no-untyped-def]
    truth = read_mot(shared_path("data", "pets09-s2l1", "gt.txt"))
    detections = detect_video(person_detector, shared_path("data", "pets09-s2l1", "vtest.avi"), len(FRAMES))
    tracks, _ = track_image(detections, (768, 576), 7.0, len(FRAMES))
    return truth, detections, tracks


def test_our_tracker_meets_the_targets_on_pets_with_the_ignore_rule(pets):
    truth, _, tracks = pets
    score = score_tracks(truth, tracks, FRAMES, PETS_UNANNOTATED)
    assert score.mota >= 70.0, score.line()
    assert score.idf1 >= 75.0, score.line()


def test_our_tracker_beats_the_best_off_the_shelf_figures_without_any_mask(pets):
    """The README's peers (default settings, same detector, no mask): BoT-SORT 66.1 / 73.4, ByteTrack 65.0 / 68.5."""
    truth, _, tracks = pets
    score = score_tracks(truth, tracks, FRAMES)
    assert score.mota > 66.1 and score.idf1 > 73.4, score.line()


def test_the_tracks_vision_track_writes_meet_the_targets_without_any_mask(pets):
    """`vision track` fills the frames in which a followed person was hidden (at most 2 s): the
    issue's MOTA >= 70 and IDF1 >= 75 on the whole picture, far footpath included."""
    truth, _, tracks = pets
    score = score_tracks(truth, fill_gaps(tracks, 7.0), FRAMES)
    assert score.mota >= 70.0, score.line()
    assert score.idf1 >= 75.0, score.line()


def test_the_ignore_region_holds_no_annotated_person(pets):
    """The rule may only forgive boxes where the ground truth annotates nobody."""
    truth, _, _ = pets
    assert not in_region(PETS_UNANNOTATED, foot_points(truth[:, 2:6])).any()


def test_the_ignore_rule_forgives_only_unmatched_boxes_in_the_region(pets):
    truth, _, tracks = pets
    plain = score_tracks(truth, tracks, FRAMES)
    fair = score_tracks(truth, tracks, FRAMES, PETS_UNANNOTATED)
    assert fair.misses == plain.misses and fair.id_switches == plain.id_switches
    assert fair.false_positives < plain.false_positives


def test_scoring_agrees_with_hand_counts():
    truth = np.array([[1, 1, 0, 0, 10, 10, 1], [1, 2, 50, 50, 10, 10, 1], [2, 1, 1, 0, 10, 10, 1],
                      [2, 2, 51, 50, 10, 10, 1]], dtype=float)
    tracks = np.array([[1, 7, 0, 0, 10, 10, 1], [1, 8, 90, 90, 10, 10, 1], [2, 8, 1, 0, 10, 10, 1],
                       [2, 9, 51, 50, 10, 10, 1]], dtype=float)
    score = score_tracks(truth, tracks, range(1, 3))
    # 4 annotated boxes: 3 matched (one of them switching id 7 -> 8), 1 missed, 1 false box.
    assert score == MotScore(mota=25.0, idf1=pytest.approx(100 * 2 * 2 / (2 * 2 + 2 + 2)), id_switches=1,
                             precision=75.0, recall=75.0, false_positives=1, misses=1, annotated=4)
