"""Frames, positions and tracks never reach the disk or the logs."""

from __future__ import annotations

import logging
import re
import subprocess

from appliance.sim.recording import read_recording
from appliance.vision.pipeline import detections_from_video, tracks_from_detections
from appliance.vision.workers import DetectionFeed
from tests.conftest import REPO


def test_no_code_outside_the_simulator_writes_images_or_video():
    hits = subprocess.run(["git", "grep", "-n", "-E", "imwrite|VideoWriter|imencode", "--", "appliance",
                           ":!appliance/sim"], cwd=REPO, capture_output=True, text=True)
    assert hits.stdout == ""


def test_running_the_pixel_pipeline_writes_nothing_and_logs_no_positions(rendered_shop, person_detector,
                                                                          tmp_path, monkeypatch, caplog):
    folder, _, _ = rendered_shop
    recording = read_recording(folder)
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.DEBUG):
        run = detections_from_video(recording.config, (recording.video or [])[:1], person_detector)
        points = list(tracks_from_detections(recording.config, run))
        feed = DetectionFeed(recording.config, lambda d: None)
        feed.handle("shop/shop/vision/cam1/detections", b'{"ts": 1, "seq": 0, "size": [640, 384], "boxes": []}')
    assert points
    assert list(tmp_path.iterdir()) == []
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    text = "\n".join(r.getMessage() for r in caplog.records)
    for p in points[:: max(1, len(points) // 50)]:
        for value in (p.x, p.y):
            assert not re.search(rf"\b{value:.2f}", text), f"a position ({value:.2f}) appears in the log"
