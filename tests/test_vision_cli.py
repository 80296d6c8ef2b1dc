"""The vision commands: track a video, score it, calibrate a camera, show the worker groups."""

from __future__ import annotations

import tomli_w

from appliance.cli import main
from appliance.sim.cameras import example_store, rig_camera
from appliance.vision.calibration import to_image
from appliance.vision.scoring import read_mot
from tests.conftest import shared_path


def test_track_writes_motchallenge_rows_and_score_reads_them(tmp_path, capsys):
    out = tmp_path / "tracks.txt"
    video = shared_path("data", "pets09-s2l1", "vtest.avi")
    assert main(["vision", "track", str(video), "--out", str(out), "--fps", "7", "--frames", "12"]) == 0
    rows = read_mot(out)
    assert len(rows) > 20 and rows[:, 0].min() == 1 and rows[:, 0].max() <= 12
    line = out.read_text().splitlines()[0].split(",")
    assert len(line) == 10 and line[7:] == ["-1", "-1", "-1"]
    assert main(["vision", "score", str(shared_path("data", "pets09-s2l1", "gt.txt")), str(out),
                 "--frames", "3-12", "--ignore", "pets"]) == 0
    printed = capsys.readouterr().out
    assert "MOTA" in printed and "IDF1" in printed and "frames 3-12" in printed


def test_track_refuses_a_file_that_is_not_a_video(tmp_path, capsys):
    bad = tmp_path / "x.avi"
    bad.write_text("no")
    assert main(["vision", "track", str(bad), "--out", str(tmp_path / "t.txt")]) == 1
    assert "cannot open the video" in capsys.readouterr().err


def test_score_names_the_bad_line(tmp_path, capsys):
    bad = tmp_path / "gt.txt"
    bad.write_text("1,1,10,10,5,5,1,-1,-1,-1\n2,1,ten,10,5,5,1,-1,-1,-1\n")
    assert main(["vision", "score", str(bad), str(bad)]) == 1
    assert f"{bad}:2" in capsys.readouterr().err


def test_calibrate_prints_the_store_toml_line(capsys):
    cam = rig_camera((8.0, 6.0), 0, 2)
    floor = [(1.0, 1.0), (6.0, 1.5), (6.5, 5.0), (1.5, 4.5)]
    pixels = to_image(cam.image_to_floor(), floor)
    args = ["vision", "calibrate", "--pixels", " ".join(f"{u:.3f},{v:.3f}" for u, v in pixels),
            "--floor", " ".join(f"{x},{y}" for x, y in floor)]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("image_to_floor = [[") and "rms" in captured.err


def test_calibrate_with_three_points_is_a_one_line_error(capsys):
    assert main(["vision", "calibrate", "--pixels", "0,0 1,0 0,1", "--floor", "0,0 1,0 0,1"]) == 1
    assert "at least 4 point pairs" in capsys.readouterr().err


def test_worker_groups_are_shown(tmp_path, capsys):
    raw = example_store(cameras=3)
    raw["vision"] = {"workers": 2}
    (tmp_path / "store.toml").write_text(tomli_w.dumps(raw))
    assert main(["vision", "worker", "--config", str(tmp_path / "store.toml"), "--passwords", str(tmp_path),
                 "--groups"]) == 0
    assert capsys.readouterr().out.splitlines() == ["worker 1: cam1, cam3", "worker 2: cam2"]
