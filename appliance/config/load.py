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

from appliance.config.model import StoreConfig
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


def cross_check(cfg: StoreConfig) -> list[ConfigIssue]:
    """Checks that need more than one field: unique ids, references, geometry."""
    issues: list[ConfigIssue] = []

    def bad(path: str, message: str) -> None:
        issues.append(ConfigIssue(path, message))

    if not re.fullmatch(r"[A-Z]{3}", cfg.store.currency):
        bad("store.currency", f"{cfg.store.currency!r} is not an ISO 4217 code; use three capitals such as KRW")
    try:
        zoneinfo.ZoneInfo(cfg.store.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        bad("store.timezone", f"{cfg.store.timezone!r} is not a known time zone; use an IANA name like Asia/Seoul")
    if not re.fullmatch(r"[A-Za-z0-9_-]+", cfg.store.id):
        bad("store.id", f"{cfg.store.id!r} cannot be an MQTT topic level; use letters, digits, - and _")

    sx, sy = cfg.floor.size
    if sx <= 0 or sy <= 0:
        bad("floor.size", f"both sides must be positive metres, got {list(cfg.floor.size)}")
    for name in ("entry", "exit"):
        seg = getattr(cfg.floor, name)
        if math.dist(seg[0], seg[1]) < 0.1:
            bad(f"floor.{name}", "the two points are less than 0.1 m apart; give the two ends of the line")

    skus: dict[str, int] = {}
    for i, p in enumerate(cfg.products):
        if p.sku in skus:
            bad(f"products[{i}].sku", f"duplicate {p.sku!r} (also products[{skus[p.sku]}]); skus must be unique")
        else:
            skus[p.sku] = i
    if not cfg.products:
        bad("products", "no products; add at least one [[products]] table")

    sensor_ids: dict[str, int] = {}
    for i, s in enumerate(cfg.sensors):
        if s.id in sensor_ids:
            bad(f"sensors[{i}].id", f"duplicate {s.id!r} (also sensors[{sensor_ids[s.id]}]); ids must be unique")
        else:
            sensor_ids[s.id] = i
        norm = math.hypot(*s.facing)
        if abs(norm - 1.0) > 1e-3:
            bad(f"sensors[{i}].facing", f"must be a unit vector, length is {norm:.3f}; divide both by {norm:.3f}")

    known_sensors = list(sensor_ids)
    for i, st in enumerate(cfg.stock):
        if st.sku not in skus:
            bad(f"stock[{i}].sku", f"no product {st.sku!r} ({_ids_hint(list(skus))})")
        if not st.sensors:
            bad(f"stock[{i}].sensors", "empty; list the plates the product stands on")
        for j, sid in enumerate(st.sensors):
            if sid not in sensor_ids:
                bad(f"stock[{i}].sensors[{j}]", f"no sensor {sid!r} ({_ids_hint(known_sensors)})")

    cams: set[str] = set()
    for i, c in enumerate(cfg.cameras):
        if c.id in cams:
            bad(f"cameras[{i}].id", f"duplicate {c.id!r}; camera ids must be unique")
        cams.add(c.id)
        if c.size[0] <= 0 or c.size[1] <= 0:
            bad(f"cameras[{i}].size", f"width and height must be positive, got {list(c.size)}")
        h = np.array(c.image_to_floor, dtype=float)
        if abs(np.linalg.det(h)) < 1e-12:
            bad(f"cameras[{i}].image_to_floor", "the matrix is singular; recompute it from four floor points")

    for name, issuer in cfg.issuers.items():
        try:
            key = decode_b64url(issuer.public_key)
        except ValueError:
            key = b""
        if len(key) != 32:
            bad(f"issuers.{name}.public_key", "expected base64url of a 32-byte Ed25519 public key")
    return issues


def parse_config(raw: Any, source: str = "") -> StoreConfig:
    """Validate parsed TOML; raises ConfigError listing every problem."""
    cfg, issues = build(StoreConfig, raw)
    if cfg is not None:
        issues.extend(cross_check(cfg))
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
