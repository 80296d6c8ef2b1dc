"""How simulated shelf readings compare with real ones: per-plate noise over one-second windows.

The AiFi NanoStore recording (shared/data/aifi-benchmark-1) is the real reference: the same
figure computed the same way on both sides, so a benchmark can print them side by side.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from appliance.events import FloatArray, IntArray

AIFI_RATE_HZ = 60.0


@dataclass(frozen=True, slots=True)
class NoiseFigures:
    """Spread of readings within one-second windows, over every (plate, window) with enough samples."""

    median_g: float
    p90_g: float
    max_g: float
    windows: int

    def __str__(self) -> str:
        return f"{self.median_g:.2f} / {self.p90_g:.2f} / {self.max_g:.1f} g over {self.windows:,} windows"


def window_noise(t: FloatArray, sensor: IntArray, grams: FloatArray, window_s: float = 1.0,
                 min_samples: int = 5) -> NoiseFigures:
    """Standard deviation of each plate's readings in each `window_s` window; faults are skipped."""
    ok = np.isfinite(grams)
    df = pd.DataFrame({"s": sensor[ok], "w": np.floor((t[ok] - t[ok].min()) / window_s).astype(np.int64),
                       "g": grams[ok]})
    grouped = df.groupby(["s", "w"])["g"]
    stds = grouped.std(ddof=0)[grouped.count() >= min_samples].to_numpy()
    if stds.size == 0:
        raise ValueError("no window holds enough readings")
    return NoiseFigures(float(np.median(stds)), float(np.percentile(stds, 90)), float(stds.max()), int(stds.size))


def aifi_readings(plate_data: Path) -> tuple[FloatArray, IntArray, FloatArray]:
    """Every plate reading of an AiFi `plate_data.json` (JSON lines, batches of 60 Hz samples).

    Each batch of n samples ends at its document's timestamp. Plates are numbered in order of
    first appearance; unused slots (NaN throughout) are left out.
    """
    ts: list[FloatArray] = []
    ids: list[IntArray] = []
    gs: list[FloatArray] = []
    names: dict[tuple[int, int, int], int] = {}
    with plate_data.open(encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            doc = json.loads(line)
            values = doc["document"]["plate_data"]["values"]
            arr = np.frombuffer(base64.b64decode(values["data"]), "<f4").reshape(values["shape"])
            n = arr.shape[0]
            times = float(doc["timestamp"]) - (n - 1 - np.arange(n)) / AIFI_RATE_HZ
            for shelf in range(1, arr.shape[1]):
                for plate in range(1, arr.shape[2]):
                    col = arr[:, shelf, plate].astype(np.float64)
                    if np.isnan(col).all():
                        continue
                    key = (int(doc["gondola_id"]), shelf, plate)
                    idx = names.setdefault(key, len(names))
                    ts.append(times)
                    ids.append(np.full(n, idx, dtype=np.int64))
                    gs.append(col)
    return np.concatenate(ts), np.concatenate(ids), np.concatenate(gs)
