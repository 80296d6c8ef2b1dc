"""Simulated ceiling cameras: a consistent rig, and footage in which the real detector finds the people."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
import tomli_w

from appliance.config import parse_config
from appliance.sim.cameras import (
    RenderError,
    camera_rig,
    example_store,
    render,
    rig_camera,
    shelving,
)
from appliance.sim.recording import read_recording
from appliance.sim.world import PersonPath
from appliance.vision.calibration import Pinhole, to_floor


@pytest.mark.parametrize(("size", "n"), [((8.0, 6.0), 2), ((12.0, 5.0), 3), ((4.0, 4.0), 1), ((20.0, 10.0), 6)])
def test_the_rig_tables_are_valid_store_cameras_and_recover_their_pinhole(size, n):
    tables = camera_rig(size, n)
    raw = example_store(size, n)
    config = parse_config(raw)
    assert [c.id for c in config.cameras] == [f"cam{i + 1}" for i in range(n)] == [t["id"] for t in tables]
    for i, table in enumerate(tables):
        truth = rig_camera(size, i, n)
        back = Pinhole.from_homography(np.array(table["image_to_floor"]), tuple(table["size"]))
        assert back.c == pytest.approx(truth.c, abs=1e-4)
        assert back.k == pytest.approx(truth.k, abs=1e-3)
        assert back.r == pytest.approx(truth.r, abs=1e-5)
        assert 0.0 < truth.c[2] < 3.0  # under the ceiling


def test_two_cameras_see_the_whole_floor_of_a_small_shop():
    size = (8.0, 6.0)
    cams = [rig_camera(size, i, 2) for i in range(2)]
    xs, ys = np.meshgrid(np.linspace(0.3, 7.7, 15), np.linspace(0.3, 5.7, 11))
    floor = np.c_[xs.ravel(), ys.ravel(), np.zeros(xs.size)]
    seen = np.zeros(len(floor), dtype=bool)
    for cam in cams:
        uv, _ = cam.project(floor)
        seen |= (uv[:, 0] >= 0) & (uv[:, 0] < 640) & (uv[:, 1] >= 0) & (uv[:, 1] < 384)
    assert seen.all()


def test_the_homography_puts_a_projected_floor_point_back_where_it_was():
    cam = rig_camera((8.0, 6.0), 1, 2)
    uv, _ = cam.project(np.array([[2.0, 3.0, 0.0]]))
    assert to_floor(cam.image_to_floor(), uv) == pytest.approx(np.array([[2.0, 3.0]]), abs=1e-9)


def test_shelving_units_stand_behind_the_stores_plates():
    config = parse_config(example_store())
    units = shelving(config)
    assert len(units) == 2
    for unit in units:
        assert unit.height > 1.0
        assert np.all(unit.corners >= 0) and np.all(unit.corners[:, 0] <= 8.0) and np.all(unit.corners[:, 1] <= 6.0)


def test_rendered_footage_is_a_valid_recording_and_the_real_detector_finds_the_people(rendered_shop):
    folder, _, stats = rendered_shop
    assert stats.cameras == 2 and stats.frames > 70
    assert stats.people_in_view > 80
    assert stats.recall >= 0.9
    recording = read_recording(folder)
    assert recording.video is not None and [v.camera for v in recording.video] == ["cam1", "cam2"]
    assert recording.detections is not None and len(recording.detections) > 50
    for video in recording.video:
        cap = cv2.VideoCapture(str(video.path))
        assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == len(video.frame_times) == stats.frames
        ok, frame = cap.read()
        cap.release()
        assert ok and frame.shape == (384, 640, 3)
    with (folder / "detections.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {r["camera"] for r in rows} == {"cam1", "cam2"}
    times = [float(r["t"]) for r in rows]
    assert times == sorted(times)


def test_a_missing_pedestrian_video_is_a_clear_error(tmp_path, person_detector):
    (tmp_path / "store.toml").write_text(tomli_w.dumps(example_store()), encoding="utf-8")
    walk = PersonPath("p1", np.array([0.0, 1.0]), np.array([[1.0, 0.5], [1.5, 1.0]]))
    with pytest.raises(RenderError, match=r"pedestrian source video .* is missing"):
        render(tmp_path, camera_rig((8.0, 6.0)), [walk], 5.0, seed=1, detector=person_detector,
               source_video=tmp_path / "nowhere.avi")


def test_rendering_into_a_folder_without_a_store_is_a_clear_error(tmp_path, person_detector):
    with pytest.raises(RenderError, match=r"store\.toml"):
        render(tmp_path, camera_rig((8.0, 6.0)), [], 5.0, seed=1, detector=person_detector)
