"""Store recordings (shared/spec/recording.md): a strict reader and an atomic writer.

The reader accepts exactly what the format allows and rejects anything else with the file, the
line and the field named. Large `weights.csv` files take a fast columnar path (pandas' C parser
plus whole-array checks); whenever that path sees anything unusual, the slow row-by-row reader
runs instead and names the first problems precisely, so speed never costs a vague error.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import tempfile
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tomli_w

from appliance.config import ConfigError, StoreConfig, parse_config
from appliance.events import Detections, FloatArray, GateEvent, IntArray, SampleBlock, TrackPoint
from appliance.gate.passes import PassError, parse_pass_unchecked, verify_signature

LEVELS = ("video", "detections", "tracks")
MAX_PROBLEMS = 20


class RecordingError(ValueError):
    """A recording that does not follow the format; `problems` names each file, line and field."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        more = "" if len(problems) <= MAX_PROBLEMS else f"\n  ... and {len(problems) - MAX_PROBLEMS} more"
        super().__init__("\n  ".join(["malformed recording:", *self.problems[:MAX_PROBLEMS]]) + more)


@dataclass(frozen=True, slots=True)
class Weights:
    """All readings of `weights.csv` as columns; `sensor` indexes the store's sensor list."""

    t: FloatArray
    sensor: IntArray
    grams: FloatArray

    def block(self, start: int = 0, stop: int | None = None) -> SampleBlock:
        return SampleBlock(self.t[start:stop], self.sensor[start:stop], self.grams[start:stop])

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True, slots=True)
class VideoFile:
    """One camera's video and the time of each of its frames."""

    camera: str
    path: Path
    frame_times: FloatArray


@dataclass(slots=True)
class Recording:
    """A loaded recording: configuration, streams, and the truth when present."""

    path: Path
    config: StoreConfig
    config_raw: dict[str, Any]
    weights: Weights
    gate: list[GateEvent]
    tracks: list[TrackPoint] | None = None
    detections: list[Detections] | None = None
    video: list[VideoFile] | None = None
    truth: dict[str, Any] | None = None
    nonces: list[str] = field(default_factory=list)

    @property
    def levels(self) -> list[str]:
        """The input levels present, lowest (most raw) first."""
        have = {"tracks": self.tracks is not None, "detections": self.detections is not None,
                "video": self.video is not None}
        return [lv for lv in LEVELS if have[lv]]

    @property
    def start(self) -> float:
        times = [float(self.weights.t[0])] if len(self.weights) else []
        times += [self.gate[0].t] if self.gate else []
        times += [self.tracks[0].t] if self.tracks else []
        return min(times) if times else 0.0

    @property
    def end(self) -> float:
        times = [float(self.weights.t[-1])] if len(self.weights) else []
        times += [self.gate[-1].t] if self.gate else []
        times += [self.tracks[-1].t] if self.tracks else []
        return max(times) if times else 0.0


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.items.append(f"{where}: {message}")

    def full(self) -> bool:
        return len(self.items) > MAX_PROBLEMS

    def raise_if_any(self) -> None:
        if self.items:
            raise RecordingError(self.items)


def _number(text: str, where: str, probs: _Problems) -> float | None:
    try:
        value = float(text)
    except ValueError:
        probs.add(where, f"not a number: {text!r}")
        return None
    if not math.isfinite(value):
        probs.add(where, f"not finite: {text!r}")
        return None
    return value


def _csv_rows(path: Path, header: list[str], probs: _Problems) -> Iterator[tuple[int, float, dict[str, str]]]:
    """Rows of a small CSV file, checked for header, field count, numeric sorted `t`."""
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as err:
        probs.add(str(path), f"cannot read: {err.strerror or err}")
        return
    with f:
        reader = csv.reader(f)
        try:
            head = next(reader, None)
            if head is None or head[: len(header)] != header:
                probs.add(f"{path}:1", f"header must start with {','.join(header)}, got {head}")
                return
            last = -math.inf
            for n, row in enumerate(reader, start=2):
                if probs.full():
                    return
                if len(row) != len(head):
                    probs.add(f"{path}:{n}", f"{len(row)} fields, header has {len(head)}")
                    continue
                t = _number(row[0], f"{path}:{n} t", probs)
                if t is None:
                    continue
                if t < last:
                    probs.add(f"{path}:{n} t", f"rows are not sorted by t ({t} comes after {last})")
                last = t
                yield n, t, dict(zip(head, row))
        except UnicodeDecodeError as err:
            probs.add(str(path), f"not UTF-8 text ({err.reason} at byte {err.start})")
        except csv.Error as err:
            probs.add(f"{path}:{reader.line_num}", f"not valid CSV: {err}")


def _read_store(path: Path, probs: _Problems) -> tuple[StoreConfig | None, dict[str, Any]]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        probs.add(str(path), f"cannot read: {err.strerror or err}")
        return None, {}
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        probs.add(str(path), f"not valid TOML: {err}")
        return None, {}
    try:
        return parse_config(raw), raw
    except ConfigError as err:
        for issue in err.issues:
            probs.add(f"{path}: {issue.path}", issue.message)
        return None, raw


def _weights_fast(path: Path, sensor_ids: list[str]) -> Weights | None:
    """Columnar parse of weights.csv; None whenever anything needs the careful reader to explain it."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    nl = data.find(b"\n")
    if nl < 0 or data[:nl].rstrip(b"\r") != b"t,sensor,grams" or b'"' in data or b"\r" in data:
        return None
    body = data[nl + 1 :]
    if not body:
        empty = np.empty(0)
        return Weights(empty, np.empty(0, dtype=np.int64), empty)
    n_lines = body.count(b"\n") + (0 if body.endswith(b"\n") else 1)
    if body.count(b",") != 2 * n_lines or b"\n\n" in body:
        return None
    try:
        df = pd.read_csv(
            io.BytesIO(data), dtype={"t": "float64", "sensor": "category", "grams": "float64"},
            keep_default_na=False, na_values={"grams": [""]}, engine="c",
        )
    except (ValueError, pd.errors.ParserError):
        return None
    if len(df) != n_lines:
        return None
    t = df["t"].to_numpy(dtype=np.float64)
    grams = df["grams"].to_numpy(dtype=np.float64)
    empties = body.count(b",\n") + (1 if body.endswith(b",") else 0)
    if not np.all(np.isfinite(t)) or int(np.isnan(grams).sum()) != empties or np.isinf(grams).any():
        return None
    if t.size > 1 and not np.all(t[1:] >= t[:-1]):
        return None
    cats = list(df["sensor"].cat.categories)
    index = {sid: i for i, sid in enumerate(sensor_ids)}
    if any(c not in index for c in cats):
        return None
    lut = np.array([index[c] for c in cats], dtype=np.int64)
    sensor = lut[df["sensor"].cat.codes.to_numpy()]
    return Weights(t, sensor, grams)


def _weights_careful(path: Path, sensor_ids: list[str], probs: _Problems) -> Weights:
    index = {sid: i for i, sid in enumerate(sensor_ids)}
    ts: list[float] = []
    ss: list[int] = []
    gs: list[float] = []
    for n, t, row in _csv_rows(path, ["t", "sensor", "grams"], probs):
        sid = index.get(row["sensor"])
        if sid is None:
            probs.add(f"{path}:{n} sensor", f"unknown sensor {row['sensor']!r} (not in store.toml)")
            continue
        grams = math.nan
        if row["grams"] != "":
            value = _number(row["grams"], f"{path}:{n} grams", probs)
            if value is None:
                continue
            grams = value
        ts.append(t)
        ss.append(sid)
        gs.append(grams)
    return Weights(np.array(ts, dtype=np.float64), np.array(ss, dtype=np.int64), np.array(gs, dtype=np.float64))


def read_weights(path: Path, config: StoreConfig) -> Weights:
    """Read weights.csv strictly; raises RecordingError naming file, line and field."""
    ids = [s.id for s in config.sensors]
    fast = _weights_fast(path, ids)
    if fast is not None:
        return fast
    probs = _Problems()
    weights = _weights_careful(path, ids, probs)
    probs.raise_if_any()
    return weights


def _read_gate(path: Path, config: StoreConfig, probs: _Problems) -> tuple[list[GateEvent], list[str]]:
    keys = {name: issuer.public_key for name, issuer in config.issuers.items()}
    events: list[GateEvent] = []
    nonces: list[str] = []
    seen: set[str] = set()
    for n, t, row in _csv_rows(path, ["t", "event", "pass"], probs):
        where = f"{path}:{n}"
        kind = row["event"]
        track = row.get("track", "")
        if kind == "entry":
            try:
                claims = parse_pass_unchecked(row["pass"])
                verify_signature(row["pass"], keys)
            except PassError as err:
                probs.add(f"{where} pass", f"{err.code}: {err}")
                continue
            if claims.nonce in seen:
                probs.add(where, f"pass used twice (nonce {claims.nonce})")
                continue
            seen.add(claims.nonce)
            nonces.append(claims.nonce)
            events.append(GateEvent(t, "entry", row["pass"], track))
        elif kind == "exit":
            events.append(GateEvent(t, "exit", "", track))
        else:
            probs.add(f"{where} event", f"must be entry or exit, got {kind!r}")
    return events, nonces


def _read_tracks(path: Path, probs: _Problems) -> list[TrackPoint]:
    points: list[TrackPoint] = []
    for n, t, row in _csv_rows(path, ["t", "track", "x", "y"], probs):
        where = f"{path}:{n}"
        x = _number(row["x"], f"{where} x", probs)
        y = _number(row["y"], f"{where} y", probs)
        if not row["track"]:
            probs.add(f"{where} track", "empty track id")
            continue
        hand_fields = [row.get(k, "") for k in ("hx", "hy", "hz")]
        hand: tuple[float, float, float] | None = None
        if any(hand_fields):
            vals = [_number(v, f"{where} {k}", probs) for v, k in zip(hand_fields, ("hx", "hy", "hz"))]
            if any(v is None for v in vals):
                continue
            hand = (vals[0], vals[1], vals[2])  # type: ignore[assignment]
        if x is None or y is None:
            continue
        points.append(TrackPoint(t, row["track"], x, y, hand))
    return points


def _read_detections(path: Path, config: StoreConfig, probs: _Problems) -> list[Detections]:
    cams = {c.id for c in config.cameras}
    frames: dict[tuple[float, str], list[list[float]]] = {}
    order: list[tuple[float, str]] = []
    for n, t, row in _csv_rows(path, ["t", "camera", "left", "top", "width", "height", "score"], probs):
        where = f"{path}:{n}"
        if row["camera"] not in cams:
            probs.add(f"{where} camera", f"unknown camera {row['camera']!r} (not in store.toml [[cameras]])")
            continue
        vals = [_number(row[k], f"{where} {k}", probs) for k in ("left", "top", "width", "height", "score")]
        if any(v is None for v in vals):
            continue
        key = (t, row["camera"])
        if key not in frames:
            frames[key] = []
            order.append(key)
        frames[key].append([float(v) for v in vals if v is not None])
    return [Detections(t, cam, np.array(frames[(t, cam)], dtype=np.float64)) for t, cam in order]


def _frame_times(path: Path, probs: _Problems) -> list[float]:
    """`video/<camera>.csv`: columns frame,t; frames counted from 0 in order, times not decreasing."""
    times: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            head = next(reader, None)
            if head != ["frame", "t"]:
                probs.add(f"{path}:1", f"header must be frame,t, got {head}")
                return times
            for n, row in enumerate(reader, start=2):
                if len(row) != 2:
                    probs.add(f"{path}:{n}", f"{len(row)} fields, header has 2")
                    continue
                if row[0] != str(len(times)):
                    probs.add(f"{path}:{n} frame", f"expected frame {len(times)}, got {row[0]!r}")
                    continue
                t = _number(row[1], f"{path}:{n} t", probs)
                if t is None:
                    continue
                if times and t < times[-1]:
                    probs.add(f"{path}:{n} t", "frame times go backwards")
                times.append(t)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        probs.add(str(path), f"cannot read: {err}")
    return times


def _read_video(folder: Path, config: StoreConfig, probs: _Problems) -> list[VideoFile]:
    out: list[VideoFile] = []
    for cam in config.cameras:
        media = [folder / f"{cam.id}{ext}" for ext in (".mp4", ".avi")]
        found = [m for m in media if m.exists()]
        times_csv = folder / f"{cam.id}.csv"
        if not found and not times_csv.exists():
            continue
        if not found:
            probs.add(str(folder), f"{times_csv.name} has no {cam.id}.mp4 or {cam.id}.avi beside it")
            continue
        if not times_csv.exists():
            probs.add(str(times_csv), "missing: every video needs its frame,t file")
            continue
        times = _frame_times(times_csv, probs)
        out.append(VideoFile(cam.id, found[0], np.array(times, dtype=np.float64)))
    if not out:
        probs.add(str(folder), "video/ holds no camera named in store.toml")
    return out


def _read_truth(path: Path, config: StoreConfig, nonces: list[str], probs: _Problems) -> dict[str, Any] | None:
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        probs.add(str(path), f"not readable JSON: {err}")
        return None
    skus = {p.sku for p in config.products}
    known = set(nonces)
    if not isinstance(truth, dict) or not isinstance(truth.get("visits"), list):
        probs.add(str(path), 'expected {"visits": [...]}')
        return None
    for i, visit in enumerate(truth["visits"]):
        where = f"{path}: visits[{i}]"
        if not isinstance(visit, dict) or not isinstance(visit.get("lines"), list):
            probs.add(where, 'expected {"pass": nonce, "lines": [...]}')
            continue
        if visit.get("pass") not in known:
            probs.add(f"{where}.pass", f"no entry with nonce {visit.get('pass')!r}")
        for j, line in enumerate(visit["lines"]):
            lw = f"{where}.lines[{j}]"
            if not isinstance(line, dict) or line.get("sku") not in skus:
                probs.add(lw, f"unknown sku {line.get('sku') if isinstance(line, dict) else line!r}")
                continue
            if ("qty" in line) == ("grams" in line):
                probs.add(lw, "needs exactly one of qty, grams")
            elif "qty" in line and (isinstance(line["qty"], bool) or not isinstance(line["qty"], int)
                                    or line["qty"] < 1):
                probs.add(f"{lw}.qty", f"must be a whole number >= 1, got {line['qty']!r}")
            elif "grams" in line and (isinstance(line["grams"], bool)
                                      or not isinstance(line["grams"], (int, float)) or line["grams"] <= 0):
                probs.add(f"{lw}.grams", f"must be a positive number, got {line['grams']!r}")
    return truth


def read_recording(path: str | Path) -> Recording:
    """Load a recording folder strictly; raises RecordingError listing each problem with its place."""
    root = Path(path)
    probs = _Problems()
    if not root.is_dir():
        raise RecordingError([f"{root}: not a folder (a recording is a folder holding store.toml, weights.csv ...)"])
    config, raw = _read_store(root / "store.toml", probs)
    if config is None:
        probs.raise_if_any()
        raise RecordingError([f"{root / 'store.toml'}: unusable"])
    weights_path = root / "weights.csv"
    weights = Weights(np.empty(0), np.empty(0, dtype=np.int64), np.empty(0))
    if not weights_path.exists():
        probs.add(str(weights_path), "missing (required)")
    else:
        fast = _weights_fast(weights_path, [s.id for s in config.sensors])
        weights = fast if fast is not None else _weights_careful(weights_path, [s.id for s in config.sensors], probs)
    gate_path = root / "gate.csv"
    gate: list[GateEvent] = []
    nonces: list[str] = []
    if not gate_path.exists():
        probs.add(str(gate_path), "missing (required)")
    else:
        gate, nonces = _read_gate(gate_path, config, probs)
    tracks = _read_tracks(root / "tracks.csv", probs) if (root / "tracks.csv").exists() else None
    detections = (_read_detections(root / "detections.csv", config, probs)
                  if (root / "detections.csv").exists() else None)
    video = _read_video(root / "video", config, probs) if (root / "video").is_dir() else None
    if tracks is None and detections is None and video is None:
        probs.add(str(root), "needs tracks.csv, detections.csv or video/")
    truth = _read_truth(root / "truth.json", config, nonces, probs) if (root / "truth.json").exists() else None
    probs.raise_if_any()
    return Recording(root, config, raw, weights, gate, tracks, detections, video, truth, nonces)


# --- writing -------------------------------------------------------------------------------------------


def _fmt(value: float, digits: int) -> str:
    text = f"{value:.{digits}f}".rstrip("0").rstrip(".")
    return text if text not in ("", "-0") else "0"


# What a recording folder may hold; anything else at a destination means it is not one of ours.
RECORDING_ENTRIES = frozenset({"store.toml", "weights.csv", "gate.csv", "tracks.csv", "detections.csv", "truth.json",
                               "video"})


class DestinationTakenError(ValueError):
    """The place to write a recording holds something that is not a recording: it is never replaced."""


def check_destination(dest: str | Path) -> None:
    """Raise DestinationTakenError unless `dest` is free: absent, an empty folder, or an earlier recording
    (which writing replaces whole). A folder of anything else, or a file, is left alone."""
    dest = Path(dest)
    if not dest.exists() and not dest.is_symlink():
        return
    if not dest.is_dir() or dest.is_symlink():
        raise DestinationTakenError(f"{dest}: exists and is not a recording folder; choose another place or remove it")
    entries = {e.name for e in dest.iterdir()}
    foreign = sorted(entries - RECORDING_ENTRIES)
    if not foreign and (not entries or "store.toml" in entries):
        return
    named = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
    raise DestinationTakenError(f"{dest}: holds things that are not a recording ({named or 'no store.toml'}); "
                                "it is not replaced: choose another place or remove it")


@dataclass(slots=True)
class RecordingWriter:
    """Writes a recording into a temporary folder and moves it into place only when complete.

    Use as a context manager: on an exception nothing is left at the destination. An earlier
    recording at the destination is replaced whole; anything else there is refused up front
    (`DestinationTakenError`), so a mistyped folder never loses what it holds.
    """

    dest: Path
    _tmp: Path | None = None

    def __enter__(self) -> RecordingWriter:
        self.dest = Path(self.dest)
        check_destination(self.dest)
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = Path(tempfile.mkdtemp(prefix=f".{self.dest.name}.", dir=self.dest.parent))
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        assert self._tmp is not None
        if exc_type is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            return
        if self.dest.exists():
            old = self.dest.with_name(f".{self.dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.dest, old)
            os.replace(self._tmp, self.dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self._tmp, self.dest)

    @property
    def folder(self) -> Path:
        assert self._tmp is not None, "use RecordingWriter as a context manager"
        return self._tmp

    def store(self, raw: dict[str, Any]) -> None:
        (self.folder / "store.toml").write_text(tomli_w.dumps(raw), encoding="utf-8")

    def weights(self, t: FloatArray, sensor_ids: Sequence[str], sensor: IntArray, grams: FloatArray) -> None:
        """Write readings (already sorted by t); NaN grams are written as empty (a sensor fault)."""
        order = np.argsort(t, kind="stable")
        ids = np.asarray(sensor_ids, dtype=object)
        df = pd.DataFrame({
            "t": np.round(t[order], 4),
            "sensor": ids[sensor[order]],
            "grams": np.round(grams[order], 2),
        })
        df.to_csv(self.folder / "weights.csv", index=False, na_rep="", lineterminator="\n")

    def gate(self, events: Sequence[GateEvent]) -> None:
        with (self.folder / "gate.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["t", "event", "pass", "track"])
            for e in sorted(events, key=lambda e: e.t):
                w.writerow([_fmt(e.t, 4), e.kind, e.pass_text, e.track])

    def tracks(self, points: Sequence[TrackPoint]) -> None:
        with (self.folder / "tracks.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["t", "track", "x", "y", "hx", "hy", "hz"])
            for p in sorted(points, key=lambda p: p.t):
                hand = [_fmt(v, 3) for v in p.hand] if p.hand else ["", "", ""]
                w.writerow([_fmt(p.t, 4), p.track, _fmt(p.x, 3), _fmt(p.y, 3), *hand])

    def detections(self, frames: Sequence[Detections]) -> None:
        with (self.folder / "detections.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["t", "camera", "left", "top", "width", "height", "score"])
            for d in sorted(frames, key=lambda d: d.t):
                for box in d.boxes:
                    w.writerow([_fmt(d.t, 4), d.camera, *(_fmt(v, 1) for v in box[:4]), _fmt(box[4], 3)])

    def truth(self, truth: dict[str, Any]) -> None:
        (self.folder / "truth.json").write_text(json.dumps(truth, indent=1, sort_keys=True) + "\n", encoding="utf-8")

    def file(self, name: str) -> Path:
        """A path inside the recording for other content (video/...)."""
        target = self.folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target
