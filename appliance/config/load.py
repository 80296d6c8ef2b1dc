"""Reading and checking store.toml: schema, then the cross-references between sections."""

from __future__ import annotations

import base64
import binascii
import math
import re
import tomllib
import zoneinfo
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config.model import GateSettings, Sensor, StoreConfig, VisionSettings
from appliance.config.schema import ConfigError, ConfigIssue, build


def _ids_hint(ids: list[str]) -> str:
    if not ids:
        return "none are declared"
    if len(ids) <= 6:
        return "known: " + ", ".join(ids)
    return f"known: {ids[0]} ... {ids[-1]} ({len(ids)} in all)"


def decode_b64url(text: str) -> bytes:
    """Decode base64url with or without padding; raises ValueError on anything else."""
    if not re.fullmatch(r"[A-Za-z0-9_-]*={0,2}", text):
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as err:
        raise ValueError("not base64url") from err


def _list(raw: Any, key: str) -> list[Any]:
    value = raw.get(key, []) if isinstance(raw, dict) else []
    return value if isinstance(value, list) else []


def _table(raw: Any, key: str) -> dict[str, Any]:
    value = raw.get(key, {}) if isinstance(raw, dict) else {}
    return value if isinstance(value, dict) else {}


def _numbers(value: Any, n: int) -> list[float] | None:
    if isinstance(value, list) and len(value) == n and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in value
    ):
        return [float(v) for v in value]
    return None


STOCK_PLACE_SLACK_M = 0.5
PLATE_WIDTH_M = Sensor.__dataclass_fields__["width"].default  # the schema's default, for raw tables


def _check_stock_place(raw: Any, stock: dict[str, Any], plates: list[Any], sensor_ids: dict[str, int], path: str,
                       bad: Any) -> None:
    """A product's `at` must lie by one of its own plates (a typo would send hands to the wrong product)."""
    at = _numbers(stock.get("at"), 2)
    if at is None:
        return
    sensors = _list(raw, "sensors")
    near: list[tuple[float, str]] = []
    for sid in plates:
        if not isinstance(sid, str) or sid not in sensor_ids:
            continue
        sensor = sensors[sensor_ids[sid]]
        pos = _numbers(sensor.get("pos"), 3)
        width = sensor.get("width", PLATE_WIDTH_M)
        if pos is None or not isinstance(width, (int, float)):
            return
        near.append((math.dist(at, pos[:2]) - width / 2, sid))
    if near and min(near)[0] > STOCK_PLACE_SLACK_M:
        gap, sid = min(near)
        bad(path, f"{at} is {gap:.2f} m beyond the edge of the nearest of its plates ({sid}); give the floor "
                  f"position of the middle of the product's facings, by its plates")


def cross_check(raw: Any) -> list[ConfigIssue]:
    """Checks that need more than one field: unique ids, references, geometry.

    Runs on the parsed TOML itself, so these problems are reported together with the schema's
    even when some field elsewhere has the wrong type.
    """
    issues: list[ConfigIssue] = []

    def bad(path: str, message: str) -> None:
        issues.append(ConfigIssue(path, message))

    store = _table(raw, "store")
    currency = store.get("currency")
    if isinstance(currency, str) and not re.fullmatch(r"[A-Z]{3}", currency):
        bad("store.currency", f"{currency!r} is not an ISO 4217 code; use three capitals such as KRW")
    tz = store.get("timezone")
    if isinstance(tz, str):
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            bad("store.timezone", f"{tz!r} is not a known time zone; use an IANA name like Asia/Seoul")
    shop_id = store.get("id", "shop")
    if isinstance(shop_id, str) and not re.fullmatch(r"[A-Za-z0-9_-]+", shop_id):
        bad("store.id", f"{shop_id!r} cannot be an MQTT topic level; use letters, digits, - and _")

    size = _numbers(_table(raw, "floor").get("size"), 2)
    if size is not None and (size[0] <= 0 or size[1] <= 0):
        bad("floor.size", f"both sides must be positive metres, got {size}")

    skus: dict[str, int] = {}
    products = _list(raw, "products")
    for i, p in enumerate(products):
        sku = p.get("sku") if isinstance(p, dict) else None
        if not isinstance(sku, str):
            continue
        if sku in skus:
            bad(f"products[{i}].sku", f"duplicate {sku!r} (also products[{skus[sku]}]); skus must be unique")
        else:
            skus[sku] = i
    if not products:
        bad("products", "no products; add at least one [[products]] table")

    sensor_ids: dict[str, int] = {}
    for i, sensor in enumerate(_list(raw, "sensors")):
        if not isinstance(sensor, dict):
            continue
        sid = sensor.get("id")
        if isinstance(sid, str):
            if sid in sensor_ids:
                bad(f"sensors[{i}].id", f"duplicate {sid!r} (also sensors[{sensor_ids[sid]}]); ids must be unique")
            else:
                sensor_ids[sid] = i
        facing = _numbers(sensor.get("facing"), 2)
        if facing is not None:
            norm = math.hypot(*facing)
            if abs(norm - 1.0) > 1e-3:
                fix = f"divide both by {norm:.3f}" if norm > 0 else "point it from the shelf into the aisle"
                bad(f"sensors[{i}].facing", f"must be a unit vector, length is {norm:.3f}; {fix}")

    known_sensors = list(sensor_ids)
    for i, st in enumerate(_list(raw, "stock")):
        if not isinstance(st, dict):
            continue
        sku = st.get("sku")
        if isinstance(sku, str) and sku not in skus:
            bad(f"stock[{i}].sku", f"no product {sku!r} ({_ids_hint(list(skus))})")
        plates = st.get("sensors")
        if isinstance(plates, list):
            for j, sid in enumerate(plates):
                if isinstance(sid, str) and sid not in sensor_ids:
                    bad(f"stock[{i}].sensors[{j}]", f"no sensor {sid!r} ({_ids_hint(known_sensors)})")
            _check_stock_place(raw, st, plates, sensor_ids, f"stock[{i}].at", bad)

    cams: set[str] = set()
    for i, cam in enumerate(_list(raw, "cameras")):
        if not isinstance(cam, dict):
            continue
        cid = cam.get("id")
        if isinstance(cid, str):
            if cid in cams:
                bad(f"cameras[{i}].id", f"duplicate {cid!r}; camera ids must be unique")
            cams.add(cid)
        size2 = _numbers(cam.get("size"), 2)
        if size2 is not None and min(size2) <= 0:
            bad(f"cameras[{i}].size", f"width and height must be positive, got {size2}")
        rows = cam.get("image_to_floor")
        square = isinstance(rows, list) and len(rows) == 3 and all(_numbers(r, 3) for r in rows)
        if square and abs(np.linalg.det(np.array(rows, dtype=float))) < 1e-12:
            bad(f"cameras[{i}].image_to_floor", "the matrix is singular; recompute it from four floor points")

    gone = _table(raw, "gate").get("gone_unseen_s", GateSettings().gone_unseen_s)
    hidden = _table(raw, "vision").get("keep_inside_s", VisionSettings().keep_inside_s)
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (gone, hidden))
    if numbers and gone <= hidden:
        bad("gate.gone_unseen_s", f"{gone} s is not longer than vision.keep_inside_s ({hidden} s): a shopper "
            "hidden from the cameras that long would be taken to have left while the tracker still waits for "
            "them; make it longer")

    for name, issuer in _table(raw, "issuers").items():
        key_text = issuer.get("public_key") if isinstance(issuer, dict) else None
        if not isinstance(key_text, str):
            continue
        try:
            key = decode_b64url(key_text)
        except ValueError:
            key = b""
        if len(key) != 32:
            bad(f"issuers.{name}.public_key", "expected base64url of a 32-byte Ed25519 public key")
    return issues


def parse_config(raw: Any, source: str = "") -> StoreConfig:
    """Validate parsed TOML; raises ConfigError listing every problem."""
    cfg, issues = build(StoreConfig, raw)
    issues.extend(cross_check(raw))
    if issues or cfg is None:
        raise ConfigError(issues, source)
    return cfg


def load_config(path: str | Path) -> StoreConfig:
    """Read and validate a store.toml; raises ConfigError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError([ConfigIssue(str(path), f"cannot read: {err.strerror or err}")], str(path)) from err
    except UnicodeDecodeError as err:
        raise ConfigError([ConfigIssue(str(path), "not UTF-8 text; save the file as UTF-8")], str(path)) from err
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([ConfigIssue(str(path), f"not valid TOML: {err}")], str(path)) from err
    return parse_config(raw, str(path))
