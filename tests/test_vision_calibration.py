"""Camera calibration: four or more measured floor points give the homography store.toml keeps."""

from __future__ import annotations

import numpy as np
import pytest

from appliance.sim.cameras import rig_camera
from appliance.vision.calibration import (
    CalibrationError,
    CameraView,
    Pinhole,
    covered_feet,
    fit_homography,
    to_floor,
    to_image,
)


@pytest.fixture(scope="module")
def camera():
    return rig_camera((8.0, 6.0), 0, 2)


def test_four_measured_points_recover_the_camera_homography(camera):
    floor = np.array([[1.0, 1.0], [6.0, 1.5], [6.5, 5.0], [1.5, 4.5]])
    pixels = to_image(camera.image_to_floor(), floor)
    cal = fit_homography(pixels, floor)
    assert cal.rms_m < 1e-6
    probe = to_image(camera.image_to_floor(), np.array([[4.0, 3.0], [2.0, 5.5]]))
    assert to_floor(cal.image_to_floor, probe) == pytest.approx(np.array([[4.0, 3.0], [2.0, 5.5]]), abs=1e-6)
    assert cal.as_toml().startswith("image_to_floor = [[")


def test_extra_points_average_out_measuring_errors_and_the_worst_one_is_reported(camera):
    rng = np.random.default_rng(1)
    floor = rng.uniform([1.0, 1.0], [7.0, 5.0], size=(8, 2))
    pixels = to_image(camera.image_to_floor(), floor) + rng.normal(0, 1.0, size=(8, 2))
    cal = fit_homography(pixels, floor)
    assert 0.0 < cal.rms_m < 0.05 and cal.max_m >= cal.rms_m


@pytest.mark.parametrize(
    ("pixels", "floor", "message"),
    [
        ([[0, 0], [1, 0], [0, 1]], [[0, 0], [1, 0], [0, 1]], "at least 4 point pairs"),
        ([[0, 0], [1, 1], [2, 2], [3, 3]], [[0, 0], [1, 0], [0, 1], [1, 1]], "pixel points lie on one line"),
        ([[0, 0], [10, 0], [0, 10], [10, 10]], [[0, 0], [1, 1], [2, 2], [3, 3]], "floor points lie on one line"),
        ([[0, 0], [10, 0], [0, 10]], [[0, 0], [1, 0], [0, 1], [1, 1]], "matching lists"),
        ([[0, 0], [10, 0], [0, 10], [10, float("nan")]], [[0, 0], [1, 0], [0, 1], [1, 1]], "finite"),
    ],
)
def test_unusable_points_are_refused_with_the_reason(pixels, floor, message):
    with pytest.raises(CalibrationError, match=message):
        fit_homography(pixels, floor)


def test_a_pixel_above_the_horizon_has_no_floor_point(camera):
    # This camera tilts 39 degrees down with a 62 degree tall view: its horizon lies above the picture.
    assert np.isnan(to_floor(camera.image_to_floor(), np.array([[320.0, -400.0]]))).all()
    assert np.isfinite(to_floor(camera.image_to_floor(), np.array([[320.0, 0.0]]))).all()


def test_a_far_person_is_placed_less_surely_in_depth_than_a_near_one(camera):
    view = CameraView("cam1", camera.size, camera.image_to_floor())
    boxes = []
    for xy in ((4.0, 2.0), (4.0, 5.5)):
        (feet, head), _ = camera.project(np.array([[*xy, 0.0], [*xy, 1.7]]))
        h = feet[1] - head[1]
        boxes.append([feet[0] - 0.2 * h, head[1], 0.4 * h, h, 0.9])
    placed = view.positions(np.array(boxes))
    xy, cov = placed.xy, placed.cov
    assert xy == pytest.approx(np.array([[4.0, 2.0], [4.0, 5.5]]), abs=1e-6)  # feet = bottom centre
    # The camera looks along +y: a box's bottom edge jitters over more floor the farther away it is.
    assert cov[1][1, 1] > 2 * cov[0][1, 1]


@pytest.mark.parametrize("xy", [(4.0, 3.0), (3.0, 4.0), (5.0, 2.0)])
def test_a_shopper_whose_legs_a_shelf_hides_is_placed_from_the_head(camera, xy):
    """Regression: the bottom edge of a legs-hidden box is the shelf's top, which projected to the
    floor put the shopper metres behind the shelf and started a second track there."""
    view = CameraView("cam1", camera.size, camera.image_to_floor(), Pinhole.from_homography(
        camera.image_to_floor(), camera.size))
    (feet, head), _ = camera.project(np.array([[*xy, 0.0], [*xy, 1.7]]))
    h = feet[1] - head[1]
    whole = [feet[0] - 0.2 * h, head[1], 0.4 * h, h, 0.9]
    upper_half = [feet[0] - 0.2 * h, head[1], 0.4 * h, 0.5 * h, 0.9]
    placed = view.positions(np.array([whole, upper_half]))
    assert placed.xy[0] == pytest.approx(np.array(xy), abs=1e-6)  # a whole person: by the feet
    assert np.hypot(*(placed.xy[1] - xy)) < 0.25  # legs hidden: by the head, not far behind the shelf
    feet_only = CameraView("cam1", camera.size, camera.image_to_floor()).positions(np.array([upper_half])).xy
    assert np.hypot(*(feet_only[0] - xy)) > 1.0  # what the bottom edge alone would have said
    assert np.linalg.det(placed.cov[1]) > np.linalg.det(placed.cov[0])
    # Feet and head rows give the height of a whole person; a hidden one has none.
    assert placed.stature[0] == pytest.approx(1.7, abs=1e-6) and np.isnan(placed.stature[1])


@pytest.mark.parametrize(
    ("boxes", "covered"),
    [
        ([[100, 100, 40, 100, 0.9]], [False]),
        # Someone farther away whose legs end inside the nearer person's box.
        ([[100, 100, 40, 100, 0.9], [105, 60, 40, 110, 0.8]], [False, True]),
        ([[105, 60, 40, 110, 0.8], [100, 100, 40, 100, 0.9]], [True, False]),
        # Side by side: the boxes do not share columns.
        ([[100, 100, 40, 100, 0.9], [150, 60, 40, 110, 0.8]], [False, False]),
        # Barely touching columns (a quarter of the width): a neighbour, not someone in front.
        ([[100, 100, 40, 100, 0.9], [130, 60, 40, 110, 0.8]], [False, False]),
        # Both end on the same row: nobody stands in front of anybody.
        ([[100, 100, 40, 100, 0.9], [110, 90, 40, 110, 0.8]], [False, False]),
        # The farther box ends above the nearer one's top: its feet show.
        ([[100, 100, 40, 100, 0.9], [105, 20, 40, 70, 0.8]], [False, False]),
    ],
)
def test_legs_ending_inside_a_nearer_persons_box_count_as_covered(boxes, covered):
    assert covered_feet(np.array(boxes, dtype=np.float64)).tolist() == covered


def test_a_shopper_whose_legs_another_shopper_hides_is_placed_from_the_head(camera):
    """Regression: in a crowd, the box of someone standing behind another shopper ends where the
    nearer one hides them; projecting that bottom edge put them half a metre too far away, among
    the people behind, and the tracker averaged them into the wrong person."""
    view = CameraView("cam1", camera.size, camera.image_to_floor(), Pinhole.from_homography(
        camera.image_to_floor(), camera.size))
    front_xy, back_xy = (4.0, 2.5), (4.05, 3.1)

    def whole(xy: tuple[float, float]) -> list[float]:
        (feet, head), _ = camera.project(np.array([[*xy, 0.0], [*xy, 1.7]]))
        h = feet[1] - head[1]
        return [feet[0] - 0.2 * h, head[1], 0.4 * h, h, 0.9]

    front, back = whole(front_xy), whole(back_xy)
    cut = front[1] + 0.6 * front[3] - back[1]  # the back shopper's box ends on the front one's body
    placed = view.positions(np.array([front, [back[0], back[1], back[2], cut, 0.6]]))
    assert placed.hidden is not None and placed.hidden.tolist() == [False, True]
    assert placed.xy[0] == pytest.approx(np.array(front_xy), abs=1e-6)
    assert np.hypot(*(placed.xy[1] - back_xy)) < 0.1
    bottom_edge = CameraView("cam1", camera.size, camera.image_to_floor()).positions(
        np.array([[back[0], back[1], back[2], cut, 0.6]])).xy[0]
    assert np.hypot(*(bottom_edge - back_xy)) > 0.4  # where the bottom edge alone would have put them
    assert np.isnan(placed.stature[1])  # no height from a box without feet
