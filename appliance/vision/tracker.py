"""Person trackers with the shop's priors: on the floor from all cameras, and in one camera's image.

Both run the same staged association (`association.TrackBook`); they differ in where tracks
live and in the priors. On the floor, people appear at the entry and leave at the exit, so a
track lost anywhere else is kept (the person is behind a shelf or another shopper) and found
again instead of being replaced. In an image the frame border plays the part of the doors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from appliance.config.model import StoreConfig, VisionSettings
from appliance.events import Detections, FloatArray, TrackPoint
from appliance.vision.association import Track, TrackBook, assign
from appliance.vision.boxes import check_boxes, iou_matrix
from appliance.vision.calibration import CameraView, Placement

logger = logging.getLogger(__name__)

CHI2_2D_99 = 9.21
WEAK_HOLD_S = 1.0
STATURE_SD_M = 0.06
SHOW_LOST_S = 10.0  # a hidden person is reported at their last place for this long, then not until found
ENTRY_RELINK_S = 2.0  # a track lost longer than this does not take a sighting at the entry


def segment_distance(p: FloatArray, a: Sequence[float], b: Sequence[float]) -> float:
    """Distance from point `p` to the line segment a-b (metres)."""
    pa = np.asarray(p, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    ab = np.asarray(b, dtype=np.float64) - np.asarray(a, dtype=np.float64)
    k = float(np.clip(pa @ ab / max(float(ab @ ab), 1e-12), 0.0, 1.0))
    return float(np.linalg.norm(pa - k * ab))


class _FloorSpace:
    """Floor metres; entry, exit and the floor's edge are the priors."""

    def __init__(self, config: StoreConfig, settings: VisionSettings) -> None:
        self.floor = config.floor
        self.s = settings
        self.diagonal = math.hypot(*config.floor.size)

    def costs(self, tracks: Sequence[Track], z: FloatArray, r: FloatArray, t: float, lost: bool,
              traits: FloatArray) -> FloatArray:
        pos = np.array([tr.motion.position for tr in tracks])
        dist = np.linalg.norm(pos[:, None, :] - z[None, :, :], axis=2)
        # Height difference in standard deviations, where both are known; capped so that a bad
        # height reading can tip a close call but never veto a match by itself.
        heights = np.array([tr.trait for tr in tracks])[:, None]
        unlike = np.nan_to_num(np.minimum(((heights - traits[None, :]) / STATURE_SD_M) ** 2, 9.0))
        if lost:
            away = np.array([tr.lost_for(t) for tr in tracks])[:, None]
            reach = np.minimum(self.s.gate_m + self.s.walk_speed_mps * away, self.diagonal)
            # Someone appearing at the entry has come in through the gate, unless a person was lost
            # right there a moment ago: a shopper hidden inside for longer does not walk back to
            # the one-way entry, and taking their track would give the newcomer their visit.
            at_entry = np.array([self.at_entry(p) for p in z])
            newcomer = at_entry[None, :] & (away > ENTRY_RELINK_S)
            ok = (dist <= reach) & ~newcomer
            return np.where(ok, 0.5 * dist / self.diagonal + 0.5 * unlike / 9.0, np.inf)
        # Squared Mahalanobis distance of every sighting from every track's prediction.
        cov = np.array([tr.motion.position_cov for tr in tracks])
        innovation = cov[:, None, :, :] + r[None, :, :, :]
        error = z[None, :, :] - pos[:, None, :]
        d2 = np.einsum("kni,kni->kn", error, np.linalg.solve(innovation, error[..., None])[..., 0])
        return np.where(dist <= self.s.gate_m, (d2 + unlike) / (CHI2_2D_99 + 9.0), np.inf)

    def accel_sd(self, track: Track) -> FloatArray:
        return np.array([1.0, 1.0])

    def at_entry(self, p: FloatArray) -> bool:
        """Whether floor point `p` is within `entry_m` of the entry line."""
        return segment_distance(p, *self.floor.entry) <= self.s.entry_m

    def birth(self, z: FloatArray) -> tuple[int, FloatArray]:
        hits = self.s.confirm_hits if self.at_entry(z) else 3 * self.s.confirm_hits
        return hits, np.array([1.0, 1.0])

    def held(self, track: Track, t: float) -> FloatArray:
        # Someone unseen for half a second has more likely stopped (at a shelf) than walked on.
        stop = track.lost_for(t) > 0.5
        return np.array([stop, stop])

    def leaving(self, track: Track) -> bool:
        """Lost at the exit, or off the floor: the person has left rather than hidden."""
        x, y = track.motion.position
        sx, sy = self.floor.size
        off = x < 0 or y < 0 or x > sx or y > sy
        return off or segment_distance(track.motion.position, *self.floor.exit) <= self.s.exit_m

    def forget_after(self, track: Track) -> float:
        return self.s.forget_at_exit_s if self.leaving(track) else self.s.keep_inside_s


def _same_person(a: FloatArray, cov_a: FloatArray, b: FloatArray, cov_b: FloatArray, fuse_m: float) -> bool:
    """Whether two cameras' sightings are close enough, given both covariances, to be one person."""
    error = a - b
    dist = float(np.linalg.norm(error))
    return dist <= fuse_m and float(error @ np.linalg.solve(cov_a + cov_b, error)) <= CHI2_2D_99


@dataclass(frozen=True, slots=True)
class Sightings:
    """Floor positions seen in one time step, fused across cameras, with heights where measured."""

    xy: FloatArray
    cov: FloatArray
    score: FloatArray
    stature: FloatArray
    cameras: tuple[tuple[str, ...], ...]


def fuse_sightings(per_camera: Sequence[tuple[str, Placement, FloatArray]], fuse_m: float) -> Sightings:
    """Merge what several cameras saw of the same people into one sighting per person.

    `per_camera` holds (camera, placement, scores (n,)). Each camera's positions are matched
    optimally to the sightings so far (never two from one camera): closer than `fuse_m`, or up
    to twice that when their covariances say the difference is within the cameras' error (a far
    camera places people less surely along its line of sight). Matched positions are merged by
    inverse-covariance weighting, so the camera that sees a person better counts more; heights
    are averaged over the cameras that measured one.
    """
    xy: list[FloatArray] = []
    cov: list[FloatArray] = []
    score: list[float] = []
    heights: list[list[float]] = []
    cams: list[tuple[str, ...]] = []
    for camera, seen, sc in per_camera:
        if xy and len(seen.xy):
            error = np.array(xy)[:, None, :] - seen.xy[None, :, :]
            dist = np.linalg.norm(error, axis=2)
            both = np.array(cov)[:, None, :, :] + seen.cov[None, :, :, :]
            d2 = np.einsum("kni,kni->kn", error, np.linalg.solve(both, error[..., None])[..., 0])
            cost = np.where(dist <= 2 * fuse_m, np.minimum(dist / fuse_m, d2 / CHI2_2D_99), np.inf)
            result = assign(cost, 1.0)
            for a, b in result.pairs:
                info_a, info_b = np.linalg.inv(cov[a]), np.linalg.inv(seen.cov[b])
                merged = np.linalg.inv(info_a + info_b)
                xy[a] = merged @ (info_a @ xy[a] + info_b @ seen.xy[b])
                cov[a] = merged
                score[a] = max(score[a], float(sc[b]))
                heights[a].append(float(seen.stature[b]))
                cams[a] = (*cams[a], camera)
            fresh = result.cols_left
        else:
            fresh = tuple(range(len(seen.xy)))
        for b in fresh:
            xy.append(seen.xy[b])
            cov.append(seen.cov[b])
            score.append(float(sc[b]))
            heights.append([float(seen.stature[b])])
            cams.append((camera,))
    stature = [float(np.mean([h for h in hs if np.isfinite(h)])) if any(np.isfinite(hs)) else np.nan
               for hs in heights]
    return Sightings(np.array(xy).reshape(-1, 2), np.array(cov).reshape(-1, 2, 2), np.array(score),
                     np.array(stature), tuple(cams))


class FloorTracker:
    """Follows every person on the shop floor (metres) from the boxes of all cameras.

    Each step projects every camera's boxes to the floor (bottom centre = feet; the top edge
    when a shelf or a nearer shopper hides the legs, see `CameraView`) and runs the staged
    association for each camera against a constant-velocity Kalman filter per person, so that
    a track takes at most one sighting per camera and two people are never averaged into one
    place; sure sightings no track took are fused across cameras to start new tracks. Weak
    boxes bridge at most `WEAK_HOLD_S` without a sure one (a false box at a shelf must not hold
    a track). Each track also learns its person's height, which breaks ties when shoppers
    stand close together. A person appearing
    at the entry is confirmed after `confirm_hits` sightings, anywhere else after three times as
    many (a false box on a shelf display should not become a shopper); a sighting at the entry
    never continues a person hidden inside for longer than `ENTRY_RELINK_S` (nobody walks back in
    through the one-way entry: it is the next shopper). A person lost inside the shop is reported
    at their last place for `SHOW_LOST_S` and found again when they reappear within walking
    distance, for up to `keep_inside_s`; one lost at the exit has left. Each point carries the
    height measured at that moment (`TrackPoint.stature`, for the VisitBook's identity checks).
    Heights and positions stay in memory; nothing here logs or stores them.

    Args:
        config: the store: floor, entry, exit and the cameras' calibrations.
        settings: the `[vision]` settings; defaults to the config's own.
    """

    def __init__(self, config: StoreConfig, settings: VisionSettings | None = None) -> None:
        self.settings = settings or config.vision
        self.views = {c.id: CameraView.of(c) for c in config.cameras}
        self._space = _FloorSpace(config, self.settings)
        self._book = TrackBook(self._space, recent_s=0.5, weak_hold_s=WEAK_HOLD_S)
        self._unknown: set[str] = set()
        sx, sy = config.floor.size
        self._margin = 0.5
        self._size = (sx, sy)

    def placements(self, frames: Sequence[Detections]) -> list[tuple[str, Placement, FloatArray]]:
        """Each camera's boxes of one step on the floor: (camera, placement, scores); boxes below
        `score_min` or whose feet fall off the floor are dropped."""
        return [(camera, seen, boxes[:, 4]) for camera, seen, boxes in self._placed(frames)]

    def _placed(self, frames: Sequence[Detections]) -> list[tuple[str, Placement, FloatArray]]:
        per_camera = []
        for frame in frames:
            view = self.views.get(frame.camera)
            if view is None:
                if frame.camera not in self._unknown:
                    logger.warning("detections from camera %s, which store.toml does not list; ignored", frame.camera)
                    self._unknown.add(frame.camera)
                continue
            boxes = check_boxes(frame.boxes)
            boxes = boxes[boxes[:, 4] >= self.settings.score_min]
            seen = view.positions(boxes)
            xy, m = seen.xy, self._margin
            keep = (np.isfinite(xy).all(axis=1) & (xy[:, 0] >= -m) & (xy[:, 1] >= -m)
                    & (xy[:, 0] <= self._size[0] + m) & (xy[:, 1] <= self._size[1] + m))
            per_camera.append((frame.camera, seen.take(keep), boxes[keep]))
        return per_camera

    def sightings(self, frames: Sequence[Detections]) -> Sightings:
        """Project and fuse one step's frames into one sighting per person (see `fuse_sightings`)."""
        return fuse_sightings(self.placements(frames), self.settings.fuse_m)

    def update(self, t: float, frames: Sequence[Detections]) -> list[TrackPoint]:
        """Advance to time `t` with the frames of this step (at most one per camera).

        Each camera's sightings are matched to the tracks on their own (a track takes at most
        one sighting from each camera), so two people whom one camera sees close together are
        never averaged into one place by another camera's view; a track seen by several cameras
        takes all their measurements, each weighted by its covariance. Sure sightings that
        continued no track are fused across cameras and start new tracks, unless another camera
        has already placed a followed person there.

        Returns where each confirmed person is at `t`: those seen now at their filtered
        position, those hidden inside the shop for at most `SHOW_LOST_S` at the place they were
        last seen.
        """
        book = self._book
        book.predict(t)
        continued = []
        taken: list[tuple[str, FloatArray, FloatArray]] = []
        leftovers = []
        for camera, seen, boxes in self._placed(frames):
            score = boxes[:, 4]
            matches, fresh = book.associate(t, seen.xy, seen.cov, score, self.settings.score_high, seen.stature)
            for m in matches:
                i = m.index
                xy, cov = seen.xy[i], seen.cov[i]
                continued.append((m.track, xy, cov, float(score[i]), float(seen.stature[i])))
                taken.append((camera, xy, cov))
            leftovers.append((camera, seen.take(fresh), score[fresh]))
        book.correct(t, continued, self.settings.score_high)
        measured: dict[int, list[float]] = {}
        for tr, _xy, _cov, _score, height in continued:
            if math.isfinite(height):
                measured.setdefault(id(tr), []).append(height)
        new = fuse_sightings(leftovers, self.settings.fuse_m)
        for i in range(len(new.xy)):
            if not any(c not in new.cameras[i] and _same_person(new.xy[i], new.cov[i], xy, cov, self.settings.fuse_m)
                       for c, xy, cov in taken):
                book.start(t, new.xy[i], new.cov[i], float(new.score[i]), float(new.stature[i]))
        book.finish(t)
        out = []
        for tr in book.tracks:
            if not tr.confirmed or (tr.seen != t and (self._space.leaving(tr) or tr.lost_for(t) > SHOW_LOST_S)):
                continue
            x, y = tr.motion.position
            heights = measured.get(id(tr)) if tr.seen == t else None
            out.append(TrackPoint(t, f"t{tr.number}", float(x), float(y),
                                  stature=float(np.mean(heights)) if heights else None))
        return out

    @property
    def tracks(self) -> list[Track]:
        """The live tracks, confirmed or not (for views and diagnostics)."""
        return list(self._book.tracks)


@dataclass(frozen=True, slots=True)
class ImageRules:
    """Settings of the image-plane tracker; sizes are in box heights, so they hold near and far.

    Attributes:
        score_high: boxes at least this sure are matched first and may start a track.
        min_iou: least overlap between a predicted and a detected box that continues a track.
        confirm_hits: sightings before a new track counts.
        recent_s: a track unseen this long is searched for as lost, by distance instead of overlap.
        keep_s: how long a track lost inside the picture waits to be found again.
        border_keep_s: how long a track lost at the picture's edge (walked out) waits.
        border_px: a box this close to the edge counts as leaving.
        reach_h: how far (box heights) from its last place a lost track is looked for at once ...
        walk_h_per_s: ... plus this far per second it stays lost ...
        max_reach_h: ... but never farther than this.
        coast_s: after this long unseen, a track stops moving on its last velocity.
        accel_h: how sharply people change speed, box heights per second squared.
        place_sd_h: how far off a box's centre may be, in box heights.
        size_sd_h: how far off a box's size may be; larger keeps half-hidden boxes from
            shrinking a track.
        size_ratio: a lost track is found again only by a box within this factor of its height.
    """

    score_high: float = 0.5
    min_iou: float = 0.3
    confirm_hits: int = 3
    recent_s: float = 0.5
    keep_s: float = 10.0
    border_keep_s: float = 0.5
    border_px: float = 12.0
    reach_h: float = 0.6
    walk_h_per_s: float = 0.6
    max_reach_h: float = 3.0
    coast_s: float = 0.6
    accel_h: float = 0.5
    place_sd_h: float = 0.1
    size_sd_h: float = 0.2
    size_ratio: float = 1.4


@dataclass(frozen=True, slots=True)
class TrackedBox:
    """One confirmed track's box in one frame."""

    track: int
    box: FloatArray
    score: float


def _as_measure(boxes: FloatArray) -> FloatArray:
    """(left, top, w, h) rows to (centre x, centre y, w, h)."""
    return np.stack([boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2, boxes[:, 2], boxes[:, 3]], axis=1)


def _as_box(m: FloatArray) -> FloatArray:
    return np.array([m[0] - m[2] / 2, m[1] - m[3] / 2, m[2], m[3]])


class _ImageSpace:
    """Image pixels; the picture's border is where people come and go."""

    def __init__(self, size: tuple[int, int], rules: ImageRules) -> None:
        self.width, self.height = size
        self.rules = rules

    def costs(self, tracks: Sequence[Track], z: FloatArray, r: FloatArray, t: float, lost: bool,
              traits: FloatArray) -> FloatArray:
        pred = np.array([tr.motion.position for tr in tracks])
        if not lost:
            iou = iou_matrix(np.array([_as_box(p) for p in pred]), np.array([_as_box(m) for m in z]))
            return (1.0 - iou) / (1.0 - self.rules.min_iou)
        h = np.maximum(pred[:, 3:4], z[None, :, 3])
        dist = np.hypot(pred[:, None, 0] - z[None, :, 0], pred[:, None, 1] - z[None, :, 1]) / h
        away = np.array([tr.lost_for(t) for tr in tracks])[:, None]
        reach = np.minimum(self.rules.reach_h + self.rules.walk_h_per_s * away, self.rules.max_reach_h)
        ratio = z[None, :, 3] / pred[:, 3:4]
        ok = (ratio > 1 / self.rules.size_ratio) & (ratio < self.rules.size_ratio) & (dist <= reach)
        return np.where(ok, dist / self.rules.max_reach_h, np.inf)

    def accel_sd(self, track: Track) -> FloatArray:
        h = float(track.motion.position[3])
        a = self.rules.accel_h * h
        return np.array([a, a, 0.2 * h, 0.2 * h])

    def birth(self, z: FloatArray) -> tuple[int, FloatArray]:
        h = float(z[3])
        return self.rules.confirm_hits, np.array([1.0 * h, 1.0 * h, 0.1 * h, 0.1 * h])

    def held(self, track: Track, t: float) -> FloatArray:
        # Box size has no velocity at all, it only follows the boxes (a run of half-hidden boxes
        # must not shrink a track away); the position stops once the track is unseen for coast_s.
        stop = track.lost_for(t) > self.rules.coast_s
        return np.array([stop, stop, True, True])

    def forget_after(self, track: Track) -> float:
        left, top, w, h = _as_box(track.last)
        m = self.rules.border_px
        at_edge = left < m or top < m or left + w > self.width - m or top + h > self.height - m
        return self.rules.border_keep_s if at_edge else self.rules.keep_s


class ImageTracker:
    """Tracks people in one camera's picture, for `appliance vision track` and accuracy checks.

    Boxes are followed with a constant-velocity Kalman filter on (centre, width, height); a person
    lost in the middle of the picture (behind a post, or another person) is kept for `keep_s`
    and found again by distance, while one lost at the edge has walked out and is dropped soon.
    Reports only boxes seen in the frame (the MOTChallenge convention).
    """

    def __init__(self, size: tuple[int, int], rules: ImageRules | None = None) -> None:
        self.rules = rules or ImageRules()
        self._book = TrackBook(_ImageSpace(size, self.rules), self.rules.recent_s)

    def update(self, t: float, boxes: FloatArray) -> list[TrackedBox]:
        """Advance to time `t` (seconds) with one frame's boxes; returns the confirmed tracks seen in it."""
        boxes = check_boxes(boxes)
        z = _as_measure(boxes) if len(boxes) else np.zeros((0, 4))
        rule = self.rules
        sd = z[:, 3:4] * np.array([[rule.place_sd_h, rule.place_sd_h, rule.size_sd_h, rule.size_sd_h]])
        r = np.stack([np.diag(row) for row in np.square(sd)]) if len(z) else np.zeros((0, 4, 4))
        matches = self._book.step(t, z, r, boxes[:, 4], rule.score_high)
        out = [TrackedBox(m.track.number, boxes[m.index, :4], float(boxes[m.index, 4]))
               for m in matches if m.track.confirmed]
        return sorted(out, key=lambda tb: tb.track)
