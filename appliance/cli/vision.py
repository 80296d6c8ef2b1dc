"""Vision commands: track a video, score tracks, calibrate a camera, run a camera worker; vision benchmarks."""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from appliance.cli import CliError, number, whole
from appliance.config import ConfigError, load_config
from appliance.config.model import VisionSettings
from appliance.vision.calibration import CalibrationError, fit_homography
from appliance.vision.gaps import DEFAULT_MAX_GAP_S, fill_gaps
from appliance.vision.scoring import PETS_UNANNOTATED, MotFileError, format_mot, read_mot, score_tracks
from appliance.vision.tracker import ImageTracker

if TYPE_CHECKING:
    from appliance.vision.detector import OnnxDetector

REPO = Path(__file__).resolve().parents[2]
PETS = REPO.parent / "shared" / "data" / "pets09-s2l1"
PETS_FRAMES = 169
PETS_FPS = 7.0


def register(commands: Any, bench: Any) -> None:
    vision = commands.add_parser("vision", help="person detection and tracking tools")
    sub = vision.add_subparsers(dest="vision_command", metavar="ACTION", required=True)

    p = sub.add_parser("track", help="track the people in a video; writes MOTChallenge rows")
    p.add_argument("video", type=Path, help="a video file")
    p.add_argument("--out", type=Path, required=True, help="where to write frame,id,left,top,width,height,score,...")
    p.add_argument("--fps", type=number(0), default=0.0,
                   help="frame rate for the tracker's clock (default: the file's)")
    p.add_argument("--input", default="640x384", help="detector input WxH, multiples of 32 (default 640x384)")
    p.add_argument("--frames", type=whole(0), default=0, help="stop after this many frames (default: all)")
    p.add_argument("--fill-gaps", type=number(0), default=DEFAULT_MAX_GAP_S, metavar="SECONDS",
                   help="give a followed person hidden for at most this long an interpolated box in the frames "
                        f"they were hidden (default {DEFAULT_MAX_GAP_S:g}; 0 writes only the frames they were seen)")
    p.set_defaults(func=cmd_track)

    p = sub.add_parser("score", help="MOTA, IDF1, ID switches, precision and recall of tracks against ground truth")
    p.add_argument("truth", type=Path, help="ground truth (MOTChallenge gt.txt)")
    p.add_argument("tracks", type=Path, help="tracker output (MOTChallenge rows)")
    p.add_argument("--frames", default="", help="frame range such as 1-169 (default: the frames of the truth)")
    p.add_argument("--ignore", default="", help="unannotated area as 'x,y x,y x,y ...' pixels, or 'pets' for "
                   "PETS09-S2L1's far path; boxes standing there that match nobody are not false positives")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("calibrate", help="image -> floor homography from 4+ floor points; prints the TOML line")
    p.add_argument("--pixels", required=True, help="pixel positions 'u,v u,v ...' of marks on the floor")
    p.add_argument("--floor", required=True, help="the same marks' floor positions 'x,y x,y ...' in metres")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("worker", help="run one camera worker: read cameras, detect, publish boxes over MQTT")
    p.add_argument("--config", type=Path, required=True, help="the store.toml")
    p.add_argument("--cameras", default="", help="comma-separated camera ids (default: all)")
    p.add_argument("--passwords", type=Path, required=True,
                   help="folder with one file per camera, named by camera id, holding its broker password")
    p.add_argument("--host", default="", help="broker address (default: [mqtt] host)")
    p.add_argument("--port", type=whole(0, 65535), default=0, help="broker port (default: [mqtt] port)")
    p.add_argument("--groups", action="store_true", help="only print how the cameras are split over worker processes")
    p.set_defaults(func=cmd_worker)

    b = bench.add_parser("vision", help="detector and pipeline frames/s per core, int8, motion gating savings")
    b.add_argument("--seconds", type=number(0, above=True), default=24.0, help="length of the simulated footage")
    b.add_argument("--fps", type=number(0, above=True), default=8.0, help="frame rate of the simulated footage")
    b.add_argument("--no-int8", action="store_true", help="skip the int8 comparison")
    b.set_defaults(func=bench_vision)

    b = bench.add_parser("tracking", help="PETS09-S2L1 frames 1-169: our tracker vs Roboflow trackers, same boxes")
    b.add_argument("--pets", type=Path, default=PETS, help="folder with vtest.avi and gt.txt")
    b.set_defaults(func=bench_tracking)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise CliError(f"--input must look like 640x384, got {text!r}") from err
    if w <= 0 or h <= 0 or w % 32 or h % 32:
        raise CliError(f"--input must be positive multiples of 32, got {text!r}")
    return w, h


def _detector(input_size: tuple[int, int] | None = None) -> OnnxDetector:
    from appliance.vision.detector import DetectorError, OnnxDetector  # onnx loads only when needed
    from appliance.vision.models import ModelError

    settings = VisionSettings() if input_size is None else VisionSettings(input_size=input_size)
    try:
        return OnnxDetector.from_settings(settings)
    except (ModelError, DetectorError) as err:
        raise CliError(str(err)) from err


def _points(text: str, what: str) -> list[tuple[float, float]]:
    try:
        pts = [tuple(float(v) for v in pair.split(",")) for pair in text.replace(";", " ").split()]
    except ValueError as err:
        raise CliError(f"{what}: expected 'a,b a,b ...', got {text!r}") from err
    if any(len(p) != 2 for p in pts):
        raise CliError(f"{what}: every point needs exactly two numbers, got {text!r}")
    return [(p[0], p[1]) for p in pts]


def cmd_track(args: argparse.Namespace) -> int:
    cap = cv2.VideoCapture(str(args.video))
    if not args.video.is_file() or not cap.isOpened():
        raise CliError(f"{args.video}: cannot open the video")
    fps = args.fps or cap.get(cv2.CAP_PROP_FPS) or 25.0
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    detector = _detector(_size(args.input))
    tracker = ImageTracker(size)
    rows: list[list[float]] = []
    k = 0
    started = time.perf_counter()
    try:
        while not args.frames or k < args.frames:
            ok, frame = cap.read()
            if not ok:
                break
            k += 1
            rows.extend([k, tb.track, *tb.box, tb.score] for tb in tracker.update(k / fps, detector.detect(frame)))
            if k % 50 == 0:
                print(f"  {k} frames, {k / (time.perf_counter() - started):.1f} frames/s", file=sys.stderr)
    finally:
        cap.release()
    seen = len(rows)
    out = fill_gaps(np.array(rows, dtype=np.float64).reshape(-1, 7), fps, args.fill_gaps)
    args.out.write_text(format_mot(out.tolist()), encoding="utf-8")
    print(f"{args.video}: {k} frames at {fps:g} fps, {len(np.unique(out[:, 1]))} tracks, {seen} boxes seen, "
          f"{len(out) - seen} filled in gaps of at most {args.fill_gaps:g} s -> {args.out}")
    return 0


def _frame_range(text: str, truth: np.ndarray) -> range:
    if not text:
        return range(int(truth[:, 0].min()), int(truth[:, 0].max()) + 1)
    try:
        a, b = (int(v) for v in text.split("-"))
    except ValueError as err:
        raise CliError(f"--frames must look like 1-169, got {text!r}") from err
    return range(a, b + 1)


def cmd_score(args: argparse.Namespace) -> int:
    try:
        truth = read_mot(args.truth)
        tracks = read_mot(args.tracks)
    except MotFileError as err:
        raise CliError(str(err)) from err
    if not len(truth):
        raise CliError(f"{args.truth}: no ground-truth rows")
    ignore = PETS_UNANNOTATED if args.ignore == "pets" else (_points(args.ignore, "--ignore") if args.ignore else None)
    frames = _frame_range(args.frames, truth)
    try:
        score = score_tracks(truth, tracks, frames, ignore)
    except ImportError as err:
        raise CliError(f"scoring needs py-motmetrics, a development dependency ({err})") from err
    print(f"{args.tracks} on frames {frames.start}-{frames.stop - 1}: {score.line()}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    try:
        cal = fit_homography(_points(args.pixels, "--pixels"), _points(args.floor, "--floor"))
    except CalibrationError as err:
        raise CliError(str(err)) from err
    print(cal.as_toml())
    print(f"# fit: rms {cal.rms_m * 100:.1f} cm, worst point {cal.max_m * 100:.1f} cm", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from appliance.vision.workers import WorkerPlan, plan_groups, run_worker

    try:
        config = load_config(args.config)
        groups = plan_groups(config)
    except (ConfigError, ValueError) as err:
        raise CliError(str(err)) from err
    if args.groups:
        for i, g in enumerate(groups):
            print(f"worker {i + 1}: {', '.join(g)}")
        return 0
    known = [c.id for c in config.cameras]
    cameras = [c for c in args.cameras.split(",") if c] if args.cameras else known
    unknown = [c for c in cameras if c not in known]
    if unknown:
        raise CliError(f"unknown camera(s) {', '.join(unknown)} (store.toml has {', '.join(known)})")
    passwords = []
    for cam in cameras:
        try:
            passwords.append((cam, (args.passwords / cam).read_text(encoding="utf-8").strip()))
        except OSError as err:
            raise CliError(f"{args.passwords / cam}: cannot read camera {cam}'s broker password") from err
    plan = WorkerPlan(f"{getpass.getuser()}-{os.getpid()}", args.config, tuple(cameras),
                      args.host or config.mqtt.host, args.port or config.mqtt.port, tuple(passwords))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        run_worker(plan, stop)
    except KeyboardInterrupt:
        stop.set()
    return 0


# --- benchmarks --------------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, flush=True)


def bench_vision(args: argparse.Namespace) -> int:
    from appliance.sim.cameras import example_recording, example_walks, pedestrians, render
    from appliance.sim.recording import read_recording
    from appliance.vision.benchmark import bare_speed, detect_video, pipeline_speed, video_frames
    from appliance.vision.detector import OnnxDetector
    from appliance.vision.models import model_file
    from appliance.vision.pipeline import detections_from_video, tracks_from_detections
    from appliance.vision.quantize import quantize_detector
    from appliance.vision.scoring import score_positions
    from appliance.vision.scoring import score_tracks as score

    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="bench-vision-") as tmp:
        rec = Path(tmp) / "shop"
        config, cameras = example_recording(rec)
        t0 = 1_700_000_000.0
        walks = example_walks(config, people=3, start=t0 + 4.0, seed=3)
        detector = _detector()
        _say(f"[1/4] rendering the simulated shop: {len(cameras)} cameras x {args.seconds:g} s at "
             f"{args.fps:g} fps, {len(walks)} shoppers (walking, browsing, an empty shop at first)")
        walkers = pedestrians(PETS / "vtest.avi", detector)
        stats = render(rec, cameras, walks, args.fps, seed=3, detector=detector, walkers=walkers,
                       start=t0, end=t0 + args.seconds)
        _say(f"      {stats.frames} frames per camera; the real detector found {stats.found} of "
             f"{stats.people_in_view} people in view ({100 * stats.recall:.1f}%)")
        recording = read_recording(rec)
        videos = recording.video or []

        _say("[2/4] speed, one core (1 inference thread, 1 OpenCV thread), CPU time, best of 2 rounds")
        ratios = []
        frames = video_frames(videos)
        for size in ((640, 384), (416, 416)):
            det = _detector(size)
            bare = bare_speed(det, frames)
            whole, inside = pipeline_speed(config, videos, det)
            ratio = whole.per_core / inside.per_core
            ratios.append(ratio)
            _say(f"      {size[0]}x{size[1]}: bare session.run {bare.per_core:5.1f} frames/s per core "
                 f"({bare.ms_per_frame:.1f} ms) on its own, {inside.per_core:5.1f} ({inside.ms_per_frame:.1f} ms) "
                 f"inside the pipeline run")
            _say(f"      {' ' * len(f'{size[0]}x{size[1]}')}  whole pipeline (decode, letterbox, detect, decode boxes, "
                 f"NMS, project, fuse, track) {whole.per_core:5.1f} frames/s per core ({whole.ms_per_frame:.1f} ms): "
                 f"{100 * ratio:.1f}% of the bare model in the same run, {100 * whole.per_core / bare.per_core:.1f}% "
                 f"of the separate bare run [target >= 85%]")

        if args.no_int8:
            _say("[3/4] int8: skipped (--no-int8)")
        else:
            _say("[3/4] int8 (static QDQ, per-channel weights, calibrated on 40 simulated frames) vs float, "
                 "640x384")
            int8_path = Path(tmp) / "yolox_nano.int8.onnx"
            quantize_detector(model_file("yolox_nano"), int8_path, video_frames(videos)[::5][:40], (640, 384))
            fp32 = _detector((640, 384))
            int8 = OnnxDetector(int8_path, (640, 384))
            frames = video_frames(videos)
            speed = {name: bare_speed(d, frames) for name, d in (("float", fp32), ("int8", int8))}
            truth = read_mot(PETS / "gt.txt")
            recall = {}
            for name, d in (("float", fp32), ("int8", int8)):
                rows = detect_video(d, PETS / "vtest.avi", PETS_FRAMES)
                sure = rows[rows[:, 6] >= config.vision.score_high].copy()
                sure[:, 1] = np.arange(len(sure))
                recall[name] = score(truth, sure, range(1, PETS_FRAMES + 1), PETS_UNANNOTATED)
            drop = recall["float"].recall - recall["int8"].recall
            keep = drop <= 2.0 and speed["int8"].per_core > speed["float"].per_core
            for name in ("float", "int8"):
                _say(f"      {name:5s}: {speed[name].per_core:5.1f} frames/s per core; PETS frames 1-169 boxes with "
                     f"score >= {config.vision.score_high}: recall {recall[name].recall:.1f}, precision "
                     f"{recall[name].precision:.1f}")
            _say(f"      int8 is {100 * (speed['int8'].per_core / speed['float'].per_core - 1):+.0f}% faster and "
                 f"loses {drop:.1f} recall points: {'KEEP' if keep else 'NOT KEPT'} (rule: keep within 2 points)")

        _say("[4/4] motion gating on the simulated footage, and floor tracking accuracy against the true paths "
             "(a track point within 0.5 m of a shopper matches)")
        for gating in (False, True):
            run = detections_from_video(config, videos, detector, gating=gating)
            frames_seen = list(run)
            points = list(tracks_from_detections(config, frames_seen))
            label = "gated  " if gating else "ungated"
            _say(f"      {label}: {run.frames} frames, detector ran {run.detector_calls} times, skipped {run.skipped} "
                 f"unchanged ({100 * run.skipped / max(1, run.frames):.1f}% of calls saved); floor "
                 f"{score_positions(_truth_at(walks, {d.t for d in frames_seen}), _rows(points)).line()}")
        _say(f"      pipeline/bare ratios: {', '.join(f'{100 * r:.1f}%' for r in ratios)}")
    return 0


def _rows(points: list[Any]) -> np.ndarray:
    """Track points as (t, id, x, y) rows (ids are t1, t2, ...)."""
    return np.array([[p.t, int(p.track.lstrip("t")), p.x, p.y] for p in points], dtype=np.float64).reshape(-1, 4)


def _truth_at(walks: list[Any], times: set[float]) -> np.ndarray:
    """The shoppers' true positions at the frame times, as (t, person, x, y) rows."""
    rows = []
    for t in sorted(times):
        for i, walk in enumerate(walks):
            xy = walk.at(t)
            if xy is not None:
                rows.append([t, i, xy[0], xy[1]])
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def bench_tracking(args: argparse.Namespace) -> int:
    from appliance.vision.benchmark import PEERS, PeerUnavailableError, detect_video, track_image, track_with_peer

    video, gt = args.pets / "vtest.avi", args.pets / "gt.txt"
    if not video.is_file() or not gt.is_file():
        raise CliError(f"{args.pets}: needs vtest.avi and gt.txt (the team's shared PETS09-S2L1 data)")
    cv2.setNumThreads(1)
    truth = read_mot(gt)
    frames_range = range(1, PETS_FRAMES + 1)
    _say(f"PETS09-S2L1 frames 1-{PETS_FRAMES} ({len(truth)} annotated boxes), YOLOX-nano at 640x384, "
         f"all boxes with score >= 0.1 fed to every tracker, {PETS_FPS:g} fps")
    detector = _detector((640, 384))
    detections = detect_video(detector, video, PETS_FRAMES,
                              lambda k: _say(f"  detected {k} frames") if k % 60 == 0 else None)
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in frames_range]
    cap.release()
    size = (frames[0].shape[1], frames[0].shape[0])
    online: list[tuple[str, np.ndarray, float]] = []
    ours, speed = track_image(detections, size, PETS_FPS, PETS_FRAMES)
    online.append(("ours (staged, shop priors)", ours, speed.ms_per_frame))
    unavailable = ""
    for name in PEERS:
        try:
            rows, peer_speed = track_with_peer(name, detections, frames, PETS_FPS)
        except PeerUnavailableError as err:
            unavailable = str(err)
            break
        online.append((f"{name} (Roboflow trackers)", rows, peer_speed.ms_per_frame))
    gap = DEFAULT_MAX_GAP_S
    filled = [(name, fill_gaps(rows, PETS_FPS, gap), ms) for name, rows, ms in online]
    for title, ignore in (("no region mask", None), ("ignore rule for the unannotated far path", PETS_UNANNOTATED)):
        for output, results in (("online (boxes in the frames each person was seen)", online),
                                (f"whole video, gaps of at most {gap:g} s filled (what `vision track` writes)",
                                 filled)):
            _say(f"\n{title}, {output}:")
            for name, rows, ms in results:
                _say(f"  {name:32s} {score_tracks(truth, rows, frames_range, ignore).line()}  {ms:6.2f} ms/frame")
    if unavailable:
        _say(f"\nRoboflow trackers not run: {unavailable}")
    _say("\nThe ignore rule: a tracked box whose feet stand on the far footpath (top left, where gt.txt annotates "
         "nobody) and that matches no annotated person is not counted as a false positive; the same rule for every "
         "tracker, applied when scoring, not given to any tracker. Gap filling: where a tracker kept one id across "
         f"frames in which the person was hidden (at most {gap:g} s), those frames get a linearly interpolated box; "
         "the same post-processing for every tracker. Tracking time excludes detection and gap filling.")
    return 0
