"""Simulated ceiling cameras: a camera rig for a store, and footage in which the real detector finds people.

`camera_rig` places angled ceiling cameras around a floor (a pinhole model: position, aim, field
of view) and returns their `[[cameras]]` tables with the `image_to_floor` homography that model
implies. `render` films a simulated shop with them: a rendered room (tiled floor, walls, door,
shelving units from the store's sensors) in which real pedestrians cut out of the PETS 2009
video walk the simulated people's paths, placed and scaled by each camera's geometry and hidden
behind shelves and each other in depth order. It writes `video/<camera>.avi`, the frame times,
and the real detector's boxes (`detections.csv`) into a recording.
"""

from __future__ import annotations

import csv
import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import tomli_w

from appliance.config import ConfigError, StoreConfig, load_config
from appliance.events import FloatArray
from appliance.sim.world import PersonPath
from appliance.vision.boxes import iou_matrix
from appliance.vision.calibration import NEAR_M, Pinhole
from appliance.vision.detector import Detector, OnnxDetector
from appliance.vision.tracker import ImageRules, ImageTracker

logger = logging.getLogger(__name__)

Image = npt.NDArray[Any]

CEILING_M = 2.9
IMAGE_SIZE = (640, 384)
HFOV_DEG = 100.0
NEAREST_FLOOR_M = 0.3
WALL_INSET_M = 0.25
PETS_VIDEO = Path(__file__).resolve().parents[3] / "shared" / "data" / "pets09-s2l1" / "vtest.avi"


class RenderError(RuntimeError):
    """The footage cannot be rendered (missing recording, config or pedestrian source)."""


# --- the camera model --------------------------------------------------------------------------------


def camera_table(camera: Pinhole, camera_id: str) -> dict[str, Any]:
    """The camera's `[[cameras]]` table for store.toml."""
    return {
        "id": camera_id,
        "size": list(camera.size),
        "image_to_floor": [[float(f"{v:.10g}") for v in row] for row in camera.image_to_floor()],
    }


def camera_rig(floor_size: tuple[float, float], n: int = 2) -> list[dict[str, Any]]:
    """`[[cameras]]` tables for `n` angled ceiling cameras covering a floor of `floor_size` metres.

    Cameras hang just under a 2.9 m ceiling, just inside the walls, spread around the room
    starting at the middle of the front wall (y = 0, where shops put their door), each facing the
    middle of the room and tilted so that the bottom of its picture meets the floor 0.3 m in front
    of it: together they see the whole floor, the door included, from two sides. Lenses are 100
    degrees wide, pictures 640x384.
    """
    sx, sy = floor_size
    if sx <= 0 or sy <= 0:
        raise ValueError(f"floor size must be positive, got {floor_size}")
    if not 1 <= n <= 16:
        raise ValueError(f"n must be 1-16 cameras, got {n}")
    return [camera_table(rig_camera(floor_size, i, n), f"cam{i + 1}") for i in range(n)]


def rig_camera(floor_size: tuple[float, float], index: int, n: int) -> Pinhole:
    """The pinhole model of camera `index` of `camera_rig(floor_size, n)`."""
    sx, sy = floor_size
    perimeter = 2 * (sx + sy)
    s = (sx / 2 + index * perimeter / n) % perimeter  # walk the walls from the front wall's middle
    i = WALL_INSET_M
    if s < sx:
        pos = (s, i)
    elif s < sx + sy:
        pos = (sx - i, s - sx)
    elif s < 2 * sx + sy:
        pos = (sx - (s - sx - sy), sy - i)
    else:
        pos = (i, sy - (s - 2 * sx - sy))
    px = min(max(pos[0], i), sx - i)
    py = min(max(pos[1], i), sy - i)
    height = CEILING_M - 0.1
    heading = np.array([sx / 2 - px, sy / 2 - py])
    heading /= np.linalg.norm(heading)
    # Tilt down until the bottom of the picture meets the floor just in front of the wall, so the
    # camera over the door sees people come in; the top of the picture then reaches across the room.
    w, h = IMAGE_SIZE
    half_vfov = math.atan((h / 2) / ((w / 2) / math.tan(math.radians(HFOV_DEG) / 2)))
    tilt = math.atan2(height, NEAREST_FLOOR_M) - half_vfov
    ahead = np.array([*(heading * math.cos(tilt)), -math.sin(tilt)])
    return Pinhole.looking_at((px, py, height), np.array([px, py, height]) + ahead, IMAGE_SIZE, HFOV_DEG)


# --- pedestrians cut out of real footage ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Walker:
    """One real pedestrian's cut-outs over consecutive frames: a walking cycle.

    `sprites` are (BGR image, alpha 0-1) pairs, tight around the person; `heading` is +1 when
    they walked to the right in the source video, -1 to the left.
    """

    sprites: tuple[tuple[Image, npt.NDArray[Any]], ...]
    heading: int


def _background(cap: cv2.VideoCapture, count: int) -> Image:
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for k in np.linspace(0, max(0, n - 1), count).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(k))
        ok, frame = cap.read()
        if ok:
            frames.append(frame)
    if not frames:
        raise RenderError("the pedestrian video has no readable frames")
    return np.median(np.stack(frames), axis=0).astype(np.uint8)


def _cut_out(frame: Image, background: Image, box: FloatArray) -> tuple[Image, npt.NDArray[Any]] | None:
    left, top, w, h = (round(v) for v in box[:4])
    crop = frame[top : top + h, left : left + w]
    diff = cv2.absdiff(crop, background[top : top + h, left : left + w]).max(axis=2)
    mask = (diff > 28).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((5, 3), np.uint8))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask)
    if count < 2:
        return None
    biggest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = (labels == biggest).astype(np.uint8)
    share = mask.mean()
    ys = np.flatnonzero(mask.any(axis=1))
    if not 0.25 <= share <= 0.8 or ys[-1] - ys[0] < 0.85 * h:
        return None  # a broken or partial silhouette would teach the detector nothing
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0)
    return crop.copy(), alpha


def pedestrians(video: Path, detector: Detector, frames: int = 240, step: int = 2) -> tuple[Walker, ...]:
    """Real pedestrians cut out of a fixed-camera video (the PETS 2009 S2.L1 sequence by default).

    People are found with the detector and followed with the image tracker; a cut-out is kept
    when the person stands clear of everyone else, whole, near enough (at least 60 px tall) and
    their silhouette separates cleanly from the median background. This takes a few seconds;
    pass the result to several `render` calls to do it once. Nothing is written.
    """
    if not video.is_file():
        raise RenderError(f"pedestrian source video {video} is missing: simulated cameras cut real people out of "
                          "the PETS 2009 video in the team's shared data (../shared/data/pets09-s2l1/vtest.avi)")
    cap = cv2.VideoCapture(str(video))
    if not cap.isOpened():
        raise RenderError(f"cannot open the pedestrian source video {video}")
    try:
        background = _background(cap, 40)
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        height, width = background.shape[:2]
        tracker = ImageTracker((width, height), ImageRules())
        cycles: dict[int, list[tuple[float, tuple[Image, npt.NDArray[Any]]]]] = {}
        for k in range(frames):
            ok, frame = cap.read()
            if not ok:
                break
            if k % step:
                continue
            boxes = detector.detect(frame)
            seen = tracker.update(k / 7.0, boxes)
            others = boxes[:, :4]
            for tb in seen:
                left, top, w, h = tb.box
                if tb.score < 0.6 or h < 60 or left < 4 or top < 4 or left + w > width - 4 or top + h > height - 4:
                    continue
                grown = np.array([[left - 0.15 * w, top - 0.05 * h, 1.3 * w, 1.1 * h]])
                if np.count_nonzero(iou_matrix(grown, others) > 0) > 1:
                    continue
                cut = _cut_out(frame, background, tb.box)
                if cut is not None:
                    cycles.setdefault(tb.track, []).append((left + w / 2, cut))
    finally:
        cap.release()
    walkers = []
    for track in sorted(cycles):
        seq = cycles[track]
        if len(seq) >= 6:
            heading = 1 if seq[-1][0] >= seq[0][0] else -1
            walkers.append(Walker(tuple(cut for _, cut in seq), heading))
    if not walkers:
        raise RenderError(f"found no clean pedestrian cut-outs in {video}")
    logger.info("%s pedestrians cut out of %s", len(walkers), video.name)
    return tuple(walkers)


# --- the room ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Solid:
    """A box-shaped thing in the room (a shelving unit): floor corners (4, 2) and height."""

    corners: FloatArray
    height: float
    colour: tuple[int, int, int]


def shelving(config: StoreConfig) -> list[Solid]:
    """Shelving units behind the store's load-cell plates: one box per gondola side.

    Plates facing the same way on one line (within 0.3 m) belong to one unit; it spans them
    along the shelf, stands 0.45 m deep behind their front edge and rises above the top plate.
    """
    units: dict[tuple[float, float, float], list[Any]] = {}
    for s in config.sensors:
        fx, fy = s.facing
        offset = round((s.pos[0] * fx + s.pos[1] * fy) / 0.3) * 0.3
        units.setdefault((round(fx, 2), round(fy, 2), offset), []).append(s)
    solids = []
    rng = np.random.default_rng(7)
    for (fx, fy, _), sensors in sorted(units.items()):
        facing = np.array([fx, fy]) / math.hypot(fx, fy)
        along = np.array([-facing[1], facing[0]])
        pos = np.array([s.pos[:2] for s in sensors])
        t = pos @ along
        lo = float(min(t - np.array([s.width for s in sensors]) / 2))
        hi = float(max(t + np.array([s.width for s in sensors]) / 2))
        front = float(np.mean(pos @ facing)) + 0.12
        corners = np.array([
            lo * along + front * facing, hi * along + front * facing,
            hi * along + (front - 0.45) * facing, lo * along + (front - 0.45) * facing,
        ])
        top = max(s.pos[2] for s in sensors) + 0.35
        shade = tuple(int(v) for v in rng.integers(90, 200, 3))
        solids.append(Solid(corners, top, (shade[0], shade[1], shade[2])))
    return solids


def _clip_near(points_cam: FloatArray) -> FloatArray:
    """Clip a polygon (camera coordinates) to the part ahead of the near plane."""
    out = []
    n = len(points_cam)
    for i in range(n):
        a, b = points_cam[i], points_cam[(i + 1) % n]
        a_in, b_in = a[2] >= NEAR_M, b[2] >= NEAR_M
        if a_in:
            out.append(a)
        if a_in != b_in:
            k = (NEAR_M - a[2]) / (b[2] - a[2])
            out.append(a + k * (b - a))
    return np.array(out).reshape(-1, 3)


def _fill(image: Image, cam: Pinhole, polygon_world: FloatArray, colour: tuple[int, int, int],
          mask: Image | None = None) -> None:
    pts = _clip_near(cam.to_camera(polygon_world))
    if len(pts) < 3:
        return
    uv = (pts @ cam.k.T)[:, :2] / pts[:, 2:3]
    poly = np.round(uv * 16).astype(np.int32).reshape(-1, 1, 2)
    cv2.fillPoly(image, [poly], colour, lineType=cv2.LINE_AA, shift=4)
    if mask is not None:
        cv2.fillPoly(mask, [poly], 255, shift=4)


def _floor_texture(size: tuple[float, float], px_per_m: int = 80) -> Image:
    w, h = int(size[0] * px_per_m), int(size[1] * px_per_m)
    tile = px_per_m // 2
    yy, xx = np.mgrid[0:h, 0:w]
    checker = ((xx // tile + yy // tile) % 2).astype(np.uint8)
    tex = np.where(checker[..., None] == 1, np.array([178, 190, 200], np.uint8), np.array([160, 172, 184], np.uint8))
    tex[(xx % tile) < 2] = (120, 128, 135)
    tex[(yy % tile) < 2] = (120, 128, 135)
    return tex.astype(np.uint8)


def room_background(cam: Pinhole, config: StoreConfig) -> Image:
    """The empty room as the camera sees it: ceiling, walls with the door, the tiled floor."""
    w, h = cam.size
    sx, sy = config.floor.size
    image = np.full((h, w, 3), (215, 218, 220), np.uint8)
    walls = [((0, 0), (sx, 0)), ((sx, 0), (sx, sy)), ((sx, sy), (0, sy)), ((0, sy), (0, 0))]
    for i, (a, b) in enumerate(walls):
        quad = np.array([[*a, 0.0], [*b, 0.0], [*b, CEILING_M], [*a, CEILING_M]])
        _fill(image, cam, quad, (196 - 12 * i, 206 - 8 * i, 212 - 6 * i))
    for (p, q), colour in ((config.floor.entry, (120, 90, 60)), (config.floor.exit, (90, 110, 60))):
        door = np.array([[*p, 0.0], [*q, 0.0], [*q, 2.1], [*p, 2.1]])
        _fill(image, cam, door, colour)
    px_per_m = 80
    tex = _floor_texture((sx, sy), px_per_m)
    tex_to_floor = np.diag([1.0 / px_per_m, 1.0 / px_per_m, 1.0])
    m = cam.floor_to_image() @ tex_to_floor
    floor = cv2.warpPerspective(tex, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=(0, 0, 0))
    covered = cv2.warpPerspective(np.full(tex.shape[:2], 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST)
    # Pixels above the horizon map to "floor points" behind the camera; only rays going down count.
    vv, uu = np.mgrid[0:h, 0:w]
    rays = np.stack([uu, vv, np.ones_like(uu)], axis=-1).astype(np.float64) @ np.linalg.inv(cam.k).T @ cam.r
    down = rays[..., 2] < 0
    use = (covered > 0) & down
    image[use] = floor[use]
    return image


# --- rendering ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RenderStats:
    """What `render` produced, and how well the real detector found the people in it.

    `people_in_view` counts person-frames where someone stood wholly inside a camera's picture
    with at least 60% of them visible (not behind a shelf or another person); `found` counts
    those that a detected box (score >= 0.3) matched at IoU >= 0.5.
    """

    cameras: int
    frames: int
    seconds: float
    people_in_view: int
    found: int
    boxes: int

    @property
    def recall(self) -> float:
        return self.found / self.people_in_view if self.people_in_view else 0.0


@dataclass(slots=True)
class _Placed:
    """Something drawn into a frame: its pixels, coverage, position and per-pixel distance (metres)."""

    depth: FloatArray
    image: Image
    alpha: npt.NDArray[Any]
    left: int
    top: int
    person: int


def _sprite_for(walker: Walker, walked_m: float, stride_m: float, flip: bool, height_px: float,
                ) -> tuple[Image, npt.NDArray[Any]]:
    image, alpha = walker.sprites[int(walked_m / stride_m) % len(walker.sprites)]
    scale = height_px / image.shape[0]
    size = (max(2, round(image.shape[1] * scale)), max(2, round(image.shape[0] * scale)))
    image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
    alpha = cv2.resize(alpha, size, interpolation=cv2.INTER_LINEAR)
    if flip:
        image, alpha = image[:, ::-1], alpha[:, ::-1]
    return image, alpha


def _composite(frame: Image, nearest: FloatArray, owner: npt.NDArray[np.int32], item: _Placed, index: int) -> None:
    """Draw `item` where it is nearer than what is drawn already (a depth buffer in metres)."""
    h, w = item.alpha.shape
    fh, fw = frame.shape[:2]
    x0, y0 = max(0, item.left), max(0, item.top)
    x1, y1 = min(fw, item.left + w), min(fh, item.top + h)
    if x1 <= x0 or y1 <= y0:
        return
    part = (slice(y0 - item.top, y1 - item.top), slice(x0 - item.left, x1 - item.left))
    front = item.depth[part] < nearest[y0:y1, x0:x1]
    a = np.where(front, item.alpha[part], 0.0)[..., None]
    src = item.image[part].astype(np.float32)
    dst = frame[y0:y1, x0:x1].astype(np.float32)
    frame[y0:y1, x0:x1] = (a * src + (1.0 - a) * dst).astype(np.uint8)
    solid = a[..., 0] > 0.5
    nearest[y0:y1, x0:x1][solid] = item.depth[part][solid]
    owner[y0:y1, x0:x1][solid] = index


def _shelf_layer(cam: Pinhole, solid: Solid) -> _Placed | None:
    w, h = cam.size
    layer = np.zeros((h, w, 3), np.uint8)
    mask = np.zeros((h, w), np.uint8)
    c = solid.corners
    faces = [np.array([[*c[i], 0.0], [*c[(i + 1) % 4], 0.0], [*c[(i + 1) % 4], solid.height],
                       [*c[i], solid.height]]) for i in range(4)]
    faces.append(np.array([[*p, solid.height] for p in c]))
    order = sorted(range(len(faces)), key=lambda i: -float(np.linalg.norm(faces[i].mean(axis=0) - cam.c)))
    for rank, i in enumerate(order):
        shade = 0.75 + 0.25 * rank / len(faces)
        colour = (int(solid.colour[0] * shade), int(solid.colour[1] * shade), int(solid.colour[2] * shade))
        _fill(layer, cam, faces[i], colour, mask)
    front = faces[0]
    rng = np.random.default_rng(int(solid.corners.sum() * 1000) % (2**32))
    along = c[1] - c[0]
    for level in np.arange(0.4, solid.height, 0.45):
        band = front.copy()
        band[:, 2] = [level, level, level + 0.05, level + 0.05]
        _fill(layer, cam, band, (60, 60, 70), mask)
        # Goods on the shelf: packs of a few colours standing on it, just in front of the face.
        packs = max(2, int(np.linalg.norm(along) / 0.12))
        for j in range(packs):
            if rng.random() < 0.2:
                continue
            a = c[0] + along * (j + 0.1) / packs
            b = c[0] + along * (j + 0.9) / packs
            top = level + 0.05 + rng.uniform(0.12, 0.3)
            pack = np.array([[*a, level + 0.05], [*b, level + 0.05], [*b, top], [*a, top]])
            r, g, b_ = (int(v) for v in rng.integers(30, 240, 3))
            _fill(layer, cam, pack, (r, g, b_), mask)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    alpha = (mask[y0:y1, x0:x1] > 0).astype(np.float32)
    vv, uu = np.mgrid[y0:y1, x0:x1]
    depth = _box_distance(cam, solid, np.stack([uu.ravel(), vv.ravel()], axis=1)).reshape(alpha.shape)
    return _Placed(depth, layer[y0:y1, x0:x1].copy(), alpha, int(x0), int(y0), -1)


def _box_distance(cam: Pinhole, solid: Solid, pixels: FloatArray) -> FloatArray:
    """Distance from the camera to where each pixel's ray first meets the box (inf where it misses)."""
    c = solid.corners
    axes = [c[1] - c[0], c[3] - c[0]]
    lengths = [float(np.linalg.norm(a)) for a in axes]
    units = [np.append(a / n, 0.0) for a, n in zip(axes, lengths)] + [np.array([0.0, 0.0, 1.0])]
    rays = np.c_[pixels, np.ones(len(pixels))] @ np.linalg.inv(cam.k).T @ cam.r  # world directions
    start = cam.c - np.append(c[0], 0.0)
    near = np.zeros(len(pixels))
    far = np.full(len(pixels), np.inf)
    for unit, size in zip(units, [*lengths, solid.height]):
        o = float(start @ unit)
        d = rays @ unit
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (0.0 - o) / d, (size - o) / d
        parallel = np.abs(d) < 1e-12
        inside = (o >= 0) & (o <= size)
        t1 = np.where(parallel, np.where(inside, -np.inf, np.inf), t1)
        t2 = np.where(parallel, np.where(inside, np.inf, -np.inf), t2)
        near = np.maximum(near, np.minimum(t1, t2))
        far = np.minimum(far, np.maximum(t1, t2))
    hit = far >= near
    return np.where(hit, near * np.linalg.norm(rays, axis=1), np.inf)


def _write_detections(path: Path, rows: list[tuple[float, str, FloatArray]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["t", "camera", "left", "top", "width", "height", "score"])
        for t, camera, boxes in sorted(rows, key=lambda r: (r[0], r[1])):
            for b in boxes:
                w.writerow([f"{t:.4f}", camera, f"{b[0]:.1f}", f"{b[1]:.1f}", f"{b[2]:.1f}", f"{b[3]:.1f}",
                            f"{b[4]:.3f}"])


def render(
    recording_dir: Path, cameras: list[dict[str, Any]], people: Sequence[PersonPath], fps: float, seed: int,
    detector: Detector | None = None, *, start: float | None = None, end: float | None = None,
    source_video: Path | None = None, walkers: Sequence[Walker] | None = None, noise_sd: float = 2.0,
) -> RenderStats:
    """Film the simulated people with the simulated cameras into an existing recording folder.

    Writes `video/<camera>.avi` (Motion-JPEG) and `video/<camera>.csv` (frame,t) for each
    camera, and `detections.csv` with the boxes the real detector finds in every rendered frame
    (in memory; frames are only ever written as the video files themselves).

    Args:
        recording_dir: a recording folder holding at least `store.toml` (floor, door, sensors).
        cameras: `[[cameras]]` tables (id, size, image_to_floor), e.g. from `camera_rig`.
        people: the true paths; each person is drawn while their path covers the frame's time.
        fps: frames per second of every camera (all cameras are synchronised).
        seed: seeds which pedestrian plays whom and the sensor noise.
        detector: the detector for `detections.csv`; default the store's configured ONNX model.
        start, end: the filmed span (unix seconds); default the span of the people's paths.
        source_video: where to cut pedestrians from; default the PETS 2009 video in ../shared.
        walkers: pedestrians already cut out (`pedestrians(...)`), to skip cutting them again.
        noise_sd: grey levels of camera sensor noise added to every frame.
    """
    recording_dir = Path(recording_dir)
    if not recording_dir.is_dir():
        raise RenderError(f"{recording_dir}: not a recording folder")
    try:
        config = load_config(recording_dir / "store.toml")
    except ConfigError as err:
        raise RenderError(f"{recording_dir / 'store.toml'}: {err}") from err
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    det = detector if detector is not None else OnnxDetector.from_settings(config.vision)
    if walkers is None:
        walkers = pedestrians(source_video or PETS_VIDEO, det)
    if not walkers:
        raise RenderError("no pedestrians to cast")
    spans = [(float(p.t[0]), float(p.t[-1])) for p in people if len(p.t)]
    t0 = start if start is not None else min((a for a, _ in spans), default=0.0)
    t1 = end if end is not None else max((b for _, b in spans), default=t0)
    times = t0 + np.arange(math.floor((t1 - t0) * fps + 1e-9) + 1) / fps
    rng = np.random.default_rng(seed)
    cast = [walkers[int(i)] for i in rng.integers(0, len(walkers), len(people))]

    video_dir = recording_dir / "video"
    video_dir.mkdir(exist_ok=True)
    rows: list[tuple[float, str, FloatArray]] = []
    in_view = found = 0
    for index, table in enumerate(cameras):
        camera_id = str(table["id"])
        size = (int(table["size"][0]), int(table["size"][1]))
        cam = Pinhole.from_homography(np.array(table["image_to_floor"], dtype=np.float64), size)
        film = _Film(cam, config, people, cast, noise_sd, seed * 1000 + index)
        writer = cv2.VideoWriter(str(video_dir / f"{camera_id}.avi"), cv2.VideoWriter.fourcc(*"MJPG"), fps, size)
        if not writer.isOpened():
            raise RenderError(f"cannot write {video_dir / (camera_id + '.avi')} (no Motion-JPEG encoder)")
        try:
            with (video_dir / f"{camera_id}.csv").open("w", newline="", encoding="utf-8") as times_file:
                times_file.write("frame,t\n")
                for k, t in enumerate(times):
                    frame, people_in_view = film.shoot(float(t))
                    boxes = np.asarray(det.detect(frame), dtype=np.float64).reshape(-1, 5)
                    writer.write(frame)
                    times_file.write(f"{k},{t:.4f}\n")
                    rows.append((float(t), camera_id, boxes))
                    sure = boxes[boxes[:, 4] >= 0.3]
                    in_view += len(people_in_view)
                    if len(sure) and len(people_in_view):
                        found += int(np.count_nonzero(iou_matrix(people_in_view, sure).max(axis=1) >= 0.5))
        finally:
            writer.release()
    _write_detections(recording_dir / "detections.csv", rows)
    stats = RenderStats(len(cameras), len(times), float(t1 - t0), in_view, found, sum(len(r[2]) for r in rows))
    logger.info("rendered %s camera(s) x %s frames; detector found %s of %s people in view", stats.cameras,
                stats.frames, stats.found, stats.people_in_view)
    return stats


class _Film:
    """One camera filming the scene: the empty room once, then each frame's people in depth order."""

    STRIDE_M = 0.35  # walking distance per cut-out of a walker's cycle

    def __init__(self, cam: Pinhole, config: StoreConfig, people: Sequence[PersonPath], cast: Sequence[Walker],
                 noise_sd: float, seed: int) -> None:
        self.cam = cam
        self.people = people
        self.cast = cast
        self.noise_sd = noise_sd
        self.background = room_background(cam, config)
        self.shelves = [p for p in (_shelf_layer(cam, s) for s in shelving(config)) if p is not None]
        self.noise = np.zeros((cam.size[1], cam.size[0], 3), np.int16)
        cv2.setRNGSeed(seed)
        self.walked = [0.0] * len(people)
        self.last: list[tuple[float, float] | None] = [None] * len(people)
        self.facing_right = [True] * len(people)

    def _place(self, i: int, t: float) -> _Placed | None:
        """Person i's cut-out at time t, placed by the camera geometry; None when not in the picture."""
        xy = self.people[i].at(t)
        prev = self.last[i]
        self.last[i] = xy
        if xy is None:
            return None
        self.walked[i] += math.dist(xy, prev) if prev is not None else 0.0
        (feet, head), _ = self.cam.project(np.array([[*xy, 0.0], [*xy, self.people[i].height_m]]))
        if not (np.all(np.isfinite(feet)) and np.all(np.isfinite(head))) or feet[1] - head[1] < 8:
            return None
        if prev is not None and prev != xy:
            before = self.cam.project(np.array([[*prev, 0.0]]))[0][0]
            if np.isfinite(before[0]) and abs(feet[0] - before[0]) > 0.5:
                self.facing_right[i] = bool(feet[0] > before[0])
        walker = self.cast[i]
        image, alpha = _sprite_for(walker, self.walked[i], self.STRIDE_M,
                                   self.facing_right[i] != (walker.heading > 0), float(feet[1] - head[1]))
        # Each row of the cut-out is as far away as the point of the person's axis it shows.
        to_feet = float(np.linalg.norm(np.array([*xy, 0.0]) - self.cam.c))
        to_head = float(np.linalg.norm(np.array([*xy, self.people[i].height_m]) - self.cam.c))
        rows = np.linspace(to_head, to_feet, image.shape[0])[:, None]
        return _Placed(np.repeat(rows, image.shape[1], axis=1), image, alpha, round(feet[0] - image.shape[1] / 2),
                       round(feet[1] - image.shape[0]), i)

    def shoot(self, t: float) -> tuple[Image, FloatArray]:
        """The frame at time t, and the boxes (n, 4) of the people fully in the picture and at least
        60% visible (not behind a shelf or someone else)."""
        w, h = self.cam.size
        frame = self.background.copy()
        owner = np.full((h, w), -1, np.int32)
        nearest = np.full((h, w), np.inf)
        placed = [p for p in (self._place(i, t) for i in range(len(self.people))) if p is not None]
        items = [*self.shelves, *placed]
        for index, item in enumerate(items):
            _composite(frame, nearest, owner, item, index)
        if self.noise_sd > 0:
            cv2.randn(self.noise, 0.0, self.noise_sd)  # type: ignore[call-overload]
            frame = cv2.add(frame, self.noise, dtype=cv2.CV_8U)
        seen = []
        for index, item in enumerate(items):
            if item.person < 0:
                continue
            ih, iw = item.alpha.shape
            whole = item.left >= 0 and item.top >= 0 and item.left + iw <= w and item.top + ih <= h
            drawn = np.count_nonzero(item.alpha > 0.5)
            if whole and drawn and np.count_nonzero(owner == index) >= 0.6 * drawn:
                seen.append([item.left, item.top, iw, ih])
        return frame, np.array(seen, dtype=np.float64).reshape(-1, 4)


# --- a small scene for camera tests and benchmarks ---------------------------------------------------


def example_store(floor_size: tuple[float, float] = (8.0, 6.0), cameras: int = 2) -> dict[str, Any]:
    """A small store.toml (as a dict) with two shelving units, a door and a camera rig.

    For camera tests, demos and benchmarks; the simulator proper builds its own stores.
    """
    sx, sy = floor_size
    sensors = []
    for i in range(4):
        sensors.append({"id": f"g1.s1.p{i + 1}", "pos": [sx * 0.35 + 0.5 * i, sy * 0.5, 1.2 - 0.3 * (i % 2)],
                        "facing": [0.0, -1.0], "width": 0.5})
    for i in range(3):
        sensors.append({"id": f"g2.s1.p{i + 1}", "pos": [sx * 0.8, sy * 0.55 + 0.5 * i, 1.0],
                        "facing": [-1.0, 0.0], "width": 0.5})
    return {
        "version": 1,
        "store": {"name": "Camera test shop", "currency": "KRW", "timezone": "Asia/Seoul"},
        "floor": {"size": [sx, sy], "entry": [[0.5, 0.0], [1.5, 0.0]], "exit": [[2.0, 0.0], [3.0, 0.0]]},
        "products": [{"sku": "880001", "name": "Water 500 ml", "price": 900, "unit_g": 521.0}],
        "sensors": sensors,
        "stock": [{"sku": "880001", "sensors": [s["id"] for s in sensors]}],
        "cameras": camera_rig(floor_size, cameras),
    }


def example_recording(folder: Path, cameras: int = 2) -> tuple[StoreConfig, list[dict[str, Any]]]:
    """Start a recording folder for camera footage: `example_store`'s store.toml and empty
    weights.csv and gate.csv (nobody touches a shelf or the gate). Returns the loaded config
    and the `[[cameras]]` tables to film with."""
    raw = example_store(cameras=cameras)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "store.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")
    (folder / "weights.csv").write_text("t,sensor,grams\n", encoding="utf-8")
    (folder / "gate.csv").write_text("t,event,pass,track\n", encoding="utf-8")
    return load_config(folder / "store.toml"), raw["cameras"]


def example_walks(
    config: StoreConfig, people: int, start: float, seed: int, speed_mps: float = 1.1, pause_s: float = 3.0,
    gap_s: float = 6.0,
) -> list[PersonPath]:
    """Shoppers who come in at the entry one after another, stop at two or three shelves (standing
    still for about `pause_s`, each somewhere along the shelf, so two shoppers at one shelf
    rarely stand on the very same spot), and leave by the exit; sampled at 10 Hz."""
    rng = np.random.default_rng(seed)
    sx, sy = config.floor.size
    inside = np.array([0.0, 0.3])
    entry = np.mean(np.asarray(config.floor.entry, dtype=np.float64), axis=0) + inside
    leave = np.mean(np.asarray(config.floor.exit, dtype=np.float64), axis=0) + inside
    spots = [np.asarray(s.pos[:2]) + 0.6 * np.asarray(s.facing) for s in config.sensors]
    spots = spots or [np.array([sx / 2, sy / 2])]
    sideways = [np.array([-s.facing[1], s.facing[0]]) for s in config.sensors] or [np.array([1.0, 0.0])]
    walks = []
    for p in range(people):
        chosen = rng.choice(len(spots), size=min(len(spots), int(rng.integers(2, 4))), replace=False)
        stops = [spots[int(i)] + sideways[int(i)] * rng.uniform(-0.5, 0.5) for i in chosen]
        waypoints = [entry, *stops, leave]
        t = start + p * gap_s
        times, points = [t], [waypoints[0]]
        for leg, (a, b) in enumerate(itertools.pairwise(waypoints)):
            steps = max(1, int(math.dist(a, b) / speed_mps * 10))
            for k in range(1, steps + 1):
                t += 0.1
                times.append(t)
                points.append(a + (b - a) * k / steps)
            if leg < len(waypoints) - 2:
                for _ in range(int(pause_s * 10 * rng.uniform(0.7, 1.3))):
                    t += 0.1
                    times.append(t)
                    points.append(b + rng.normal(0.0, 0.01, 2))
        walks.append(PersonPath(f"p{p + 1}", np.array(times), np.array(points),
                                float(rng.uniform(1.55, 1.85))))
    return walks
