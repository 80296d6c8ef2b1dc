"""Video -> detections -> floor tracks on simulated footage: the real detector and tracker, in time order."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from appliance.events import Detections
from appliance.sim.recording import read_recording
from appliance.vision.pipeline import VisionError, detections_from_video, time_steps, tracks_from_detections


@pytest.fixture(scope="module")
def replayed(rendered_shop, person_detector):  # type: ignore[no-untyped-def]
    folder, walks, _ = rendered_shop
    recording = read_recording(folder)
    run = detections_from_video(recording.config, recording.video or [], person_detector)
    frames = list(run)
    points = list(tracks_from_detections(recording.config, frames))
    return recording, walks, run, frames, points


def test_detections_come_in_time_order_across_cameras(replayed):
    recording, _, run, frames, _ = replayed
    times = [d.t for d in frames]
    assert times == sorted(times)
    assert Counter(d.camera for d in frames) == {v.camera: len(v.frame_times) for v in recording.video}
    assert run.frames == len(frames) == run.detector_calls + run.skipped


def test_motion_gating_skips_frames_of_the_empty_shop_and_saves_detector_calls(replayed):
    _, walks, run, frames, _ = replayed
    assert run.skipped > 0
    first_in = min(float(w.t[0]) for w in walks)
    empty = [d for d in frames if d.t < first_in - 0.3]
    assert empty and all(len(d.boxes) == 0 for d in empty)


def assert_followed(points, walks) -> None:  # type: ignore[no-untyped-def]
    """Each shopper is followed by one track for 80% of their time inside, within 0.3 m (median)."""
    assert [p.t for p in points] == sorted(p.t for p in points)
    for walk in walks:
        owners: Counter[str] = Counter()
        errors = []
        for p in points:
            truth = walk.at(p.t)
            if truth is None:
                continue
            d = float(np.hypot(p.x - truth[0], p.y - truth[1]))
            if d < 1.0:
                owners[p.track] += 1
                errors.append(d)
        track, count = owners.most_common(1)[0]
        inside = sum(1 for t in sorted({p.t for p in points}) if walk.at(t) is not None)
        assert count >= 0.8 * inside, f"{walk.person} followed by {track} in {count} of {inside} steps"
        assert np.median(errors) < 0.3
    assert len({p.track for p in points}) <= len(walks) + 1


def test_every_shopper_is_followed_by_one_track_close_to_where_they_really_are(replayed):
    _, walks, _, _, points = replayed
    assert_followed(points, walks)
    assert len({p.track for p in points}) == len(walks)


def test_tracks_from_the_recorded_detections_follow_the_shoppers_too(replayed):
    """detections.csv holds the boxes found while rendering, before video compression; replaying
    them must follow the same shoppers (the boxes differ slightly from the decoded video's)."""
    recording, walks, _, _, _ = replayed
    assert recording.detections is not None
    assert_followed(list(tracks_from_detections(recording.config, recording.detections)), walks)


def test_detections_out_of_time_order_are_refused(replayed):
    recording = replayed[0]
    empty = np.zeros((0, 5))
    with pytest.raises(VisionError, match="back in time"):
        list(tracks_from_detections(recording.config, [Detections(5.0, "cam1", empty),
                                                        Detections(4.0, "cam1", empty)]))


def test_a_step_holds_one_frame_per_camera_within_a_tenth_of_a_second():
    empty = np.zeros((0, 5))
    frames = [Detections(t, cam, empty) for t, cam in
              [(0.0, "a"), (0.02, "b"), (0.05, "a"), (0.2, "b"), (0.21, "a"), (0.35, "a")]]
    steps = [[(d.t, d.camera) for d in s] for s in time_steps(frames)]
    assert steps == [[(0.0, "a"), (0.02, "b")], [(0.05, "a")], [(0.2, "b"), (0.21, "a")], [(0.35, "a")]]


def test_a_video_of_a_camera_the_store_does_not_have_is_refused(replayed, person_detector, tmp_path):
    recording = replayed[0]
    video = recording.video[0]

    class Stranger:
        camera = "cam9"
        path = video.path
        frame_times = video.frame_times

    with pytest.raises(VisionError, match="cam9"):
        detections_from_video(recording.config, [Stranger()], person_detector)


def test_an_unreadable_video_is_a_clear_error(replayed, person_detector, tmp_path):
    recording = replayed[0]
    broken = tmp_path / "cam1.avi"
    broken.write_bytes(b"not a video")

    class Broken:
        camera = "cam1"
        path = broken
        frame_times = np.array([0.0, 0.2])

    with pytest.raises(VisionError, match="cannot open"):
        list(detections_from_video(recording.config, [Broken()], person_detector))
