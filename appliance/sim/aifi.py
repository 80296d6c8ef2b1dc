"""Importer for AiFi AutoCheckout test cases (CPS-IoT Week 2020) into store recordings.

A test case is a folder of JSON Lines files (MongoDB extended JSON): plate_data.json (gondola
batches of 12 samples x shelf x plate, 60 Hz), planogram.json, products.json, full_targets.json
(the store's own shopper tracker, in inches) and store_layout.json (plate geometry in metres, in
our floor frame). Plates become sensors where the layout puts them, the store's shopper targets
become tracks (converted to metres, hand nearest the shelves kept), and each target becomes a visit
entering on a locally issued pass that names its track.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.events import GateEvent, TrackPoint
from appliance.gate.passes import b64url_encode, issue_pass, public_key_b64
from appliance.sim.recording import RecordingWriter

logger = logging.getLogger(__name__)

INCH_M = 0.0254
ISSUER = "aifi-import"
REQUIRED = ("plate_data.json", "planogram.json", "products.json", "full_targets.json", "store_layout.json")


class AifiImportError(ValueError):
    """The source folder is not a usable AiFi test case; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class ImportSummary:
    sensors: int
    products: int
    readings: int
    shoppers: int
    seconds: float


def _json_lines(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise AifiImportError(f"{path}: cannot read: {err.strerror or err}") from err
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            doc = json.loads(line)
        except json.JSONDecodeError as err:
            raise AifiImportError(f"{path}:{n}: not JSON: {err.msg}") from err
        if not isinstance(doc, dict):
            raise AifiImportError(f"{path}:{n}: expected a JSON object")
        yield n, doc


def _get(doc: dict[str, Any], dotted: str, where: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise AifiImportError(f"{where}: missing field {dotted}")
        node = node[part]
    return node


def _aifi_to_floor(x_in: float, y_in: float, offset: tuple[float, float]) -> tuple[float, float]:
    return x_in * INCH_M + offset[0], y_in * INCH_M + offset[1]


def _layout_offset(layout: dict[str, Any]) -> tuple[float, float]:
    """The inches -> metres offsets the layout documents ("x_m = x_in * 0.0254 + 0.60, y_m = ...")."""
    about = str(layout.get("about", ""))
    num = r"([-+]?\d+(?:\.\d+)?)"
    mx = re.search(r"x_m = x_in \* 0\.0254 \+ " + num, about)
    my = re.search(r"y_m = y_in \* 0\.0254 \+ " + num, about)
    if not (mx and my):
        raise AifiImportError("store_layout.json: its 'about' text does not give the tracker's inch offsets")
    return float(mx.group(1)), float(my.group(1))


def _products(src: Path) -> list[dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for n, doc in _json_lines(src / "products.json"):
        where = f"{src / 'products.json'}:{n}"
        sku = str(_get(doc, "product_id.id", where))
        meta = _get(doc, "metadata", where)
        weight = meta.get("weight")
        if not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight <= 0:
            logger.debug("%s: product %s has no usable weight; skipped", where, sku)
            continue
        out[sku] = {"sku": sku, "name": str(meta.get("name", ""))[:80], "price": 1,
                    "unit_g": round(float(weight), 2)}
    return [out[k] for k in sorted(out)]


def _stock(src: Path, skus: set[str], plates: set[str]) -> list[dict[str, Any]]:
    stock: dict[str, list[str]] = {}
    for n, doc in _json_lines(src / "planogram.json"):
        where = f"{src / 'planogram.json'}:{n}"
        product = doc.get("planogram_product_id") or {}
        if not product.get("id"):
            continue  # plates the planogram leaves empty
        sku = str(product["id"])
        ids = []
        for plate in _get(doc, "plate_ids", where):
            g = _get(plate, "shelf_id.gondola_id.id", where)
            s = _get(plate, "shelf_id.shelf_index", where)
            p = _get(plate, "plate_index", where)
            ids.append(f"g{g}.s{s}.p{p}")
        ids = [i for i in ids if i in plates]
        if sku not in skus or not ids:
            continue
        for i in ids:
            if i not in stock.setdefault(sku, []):
                stock[sku].append(i)
    return [{"sku": sku, "sensors": sorted(ids)} for sku, ids in sorted(stock.items())]


def _readings(src: Path, plates: set[str]) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    ts: list[np.ndarray] = []
    names: list[str] = []
    index: dict[str, int] = {}
    ss: list[np.ndarray] = []
    gs: list[np.ndarray] = []
    for n, doc in _json_lines(src / "plate_data.json"):
        where = f"{src / 'plate_data.json'}:{n}"
        end = float(_get(doc, "timestamp", where))
        pd_ = _get(doc, "document.plate_data", where)
        gondola = _get(pd_, "plate_id.shelf_id.gondola_id.id", where)
        rate = float(pd_.get("freq_samp", 60.0))
        values = _get(pd_, "values", where)
        try:
            arr = np.frombuffer(base64.b64decode(values["data"]), "<f4").reshape(values["shape"])
        except (KeyError, ValueError, TypeError) as err:
            raise AifiImportError(f"{where}: plate values do not decode to their shape: {err}") from err
        k = arr.shape[0]
        times = end - (k - 1 - np.arange(k)) / rate
        for shelf in range(1, arr.shape[1]):
            for plate in range(1, arr.shape[2]):
                sid = f"g{gondola}.s{shelf}.p{plate}"
                if sid not in plates:
                    continue
                col = arr[:, shelf, plate].astype(np.float64)
                if sid not in index:
                    index[sid] = len(names)
                    names.append(sid)
                ts.append(times)
                ss.append(np.full(k, index[sid], dtype=np.int64))
                gs.append(col)
    if not ts:
        raise AifiImportError(f"{src / 'plate_data.json'}: no readings for any plate of the layout")
    return np.concatenate(ts), names, np.concatenate(ss), np.concatenate(gs)


def _point(joint: Any) -> tuple[float, float, float] | None:
    """A joint's point; protobuf JSON leaves out zero coordinates, and an empty point means none."""
    if not isinstance(joint, dict) or not isinstance(joint.get("point"), dict) or not joint["point"]:
        return None
    p = joint["point"]
    try:
        xyz = (float(p.get("x", 0.0)), float(p.get("y", 0.0)), float(p.get("z", 0.0)))
    except (TypeError, ValueError):
        return None
    return xyz if all(math.isfinite(v) for v in xyz) else None


def _tracks(src: Path, offset: tuple[float, float], plate_xyz: np.ndarray) -> list[TrackPoint]:
    points: list[TrackPoint] = []
    for n, doc in _json_lines(src / "full_targets.json"):
        where = f"{src / 'full_targets.json'}:{n}"
        t = float(_get(doc, "timestamp", where))
        for target in doc.get("document", {}).get("targets", {}).get("targets", []):
            tid = str(_get(target, "target_id.id", where))
            body = _point(target.get("neck")) or _point(target.get("head"))
            if body is None:
                continue
            x, y = _aifi_to_floor(body[0], body[1], offset)
            hand = None
            best = math.inf
            for h in target.get("hands", []):
                p = _point(h)
                if p is None or h.get("score", 0.0) < 0.3:
                    continue
                hx, hy = _aifi_to_floor(p[0], p[1], offset)
                hz = p[2] * INCH_M
                d = float(np.min(np.linalg.norm(plate_xyz - np.array([hx, hy, hz]), axis=1)))
                if d < best:
                    best, hand = d, (round(hx, 3), round(hy, 3), round(hz, 3))
            points.append(TrackPoint(t, f"aifi-{tid[-6:]}", round(x, 3), round(y, 3), hand))
    points.sort(key=lambda p: p.t)
    return points


def import_aifi(src: str | Path, out: str | Path) -> ImportSummary:
    """Convert one AiFi test-case folder into a recording folder (written atomically)."""
    src = Path(src)
    missing = [name for name in REQUIRED if not (src / name).exists()]
    if missing:
        raise AifiImportError(f"{src}: not an AiFi test case (missing {', '.join(missing)})")
    try:
        layout = json.loads((src / "store_layout.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise AifiImportError(f"{src / 'store_layout.json'}: unreadable: {err}") from err
    offset = _layout_offset(layout)
    sensors = [{"id": p["id"], "pos": [float(v) for v in p["pos"]], "facing": [float(v) for v in p["facing"]],
                "width": float(p.get("width", 0.1016))} for p in _get(layout, "plates", "store_layout.json")]
    plate_ids = {s["id"] for s in sensors}
    products = _products(src)
    stock = _stock(src, {p["sku"] for p in products}, plate_ids)
    stocked = {s["sku"] for s in stock}
    products = [p for p in products if p["sku"] in stocked]
    t, names, sens, grams = _readings(src, plate_ids)
    order = np.argsort(t, kind="stable")
    id_index = {s["id"]: i for i, s in enumerate(sensors)}
    sensor_idx = np.array([id_index[names[i]] for i in range(len(names))], dtype=np.int64)[sens]
    plate_xyz = np.array([s["pos"] for s in sensors], dtype=np.float64)
    tracks = _tracks(src, offset, plate_xyz)

    seed = hashlib.sha256((src / "plate_data.json").read_bytes()).digest()
    key = Ed25519PrivateKey.from_private_bytes(seed)
    first_seen: dict[str, float] = {}
    for p in tracks:
        first_seen.setdefault(p.track, p.t)
    gate = []
    for track, t0 in sorted(first_seen.items(), key=lambda kv: kv[1]):
        nonce = b64url_encode(hashlib.sha256(seed + track.encode()).digest()[:16])
        iat = math.floor(t0)
        text = issue_pass(key, {"iss": ISSUER, "tok": f"local-import/{track}", "iat": iat, "exp": iat + 300,
                                "nonce": nonce, "party": 1})
        gate.append(GateEvent(t0, "entry", text, track))
    floor = layout.get("floor", {})
    raw = {
        "version": 1,
        "store": {"name": f"AiFi NanoStore ({src.name})", "currency": "USD", "timezone": "America/Los_Angeles",
                  "id": "aifi"},
        "floor": {"size": floor.get("size"), "entry": floor.get("entry"), "exit": floor.get("exit")},
        "products": products,
        "sensors": sensors,
        "stock": stock,
        "issuers": {ISSUER: {"public_key": public_key_b64(key)}},
    }
    with RecordingWriter(Path(out)) as w:
        w.store(raw)
        w.weights(t[order], [s["id"] for s in sensors], sensor_idx[order], grams[order])
        w.gate(gate)
        w.tracks(tracks)
    return ImportSummary(len(sensors), len(products), int(t.size), len(gate), float(t.max() - t.min()))
