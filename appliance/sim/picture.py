"""A picture of a recording: the floor with every track, and the plates around each thing that happened.

Made for people checking a recording by eye (is this pick visible? where was everyone?), not
for the appliance: it needs matplotlib, which the dev install brings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from appliance.sim.recording import Recording

_BEFORE_S = 3.0
_AFTER_S = 4.0


def _moments(rec: Recording, limit: int) -> list[tuple[float, str, list[str]]]:
    """What to zoom in on: truth events with plates, or else the plates whose readings moved most."""
    out: list[tuple[float, str, list[str]]] = []
    if rec.truth is not None:
        names = {p.sku: p.name for p in rec.config.products}
        for visit in rec.truth.get("visits", []):
            for e in visit.get("events", []):
                if e.get("sensors"):
                    what = names.get(e.get("sku") or "", e.get("key", ""))
                    grams = f" {e['grams']:.0f} g" if "grams" in e else ""
                    out.append((float(e["t"]), f"{e.get('person', '')} {e['act']} {what}{grams}", list(e["sensors"])))
    if not out:
        w = rec.weights
        spans = []
        for i, sensor in enumerate(rec.config.sensors):
            m = (w.sensor == i) & np.isfinite(w.grams)
            if m.sum() < 10:
                continue
            g, t = w.grams[m], w.t[m]
            dev = np.abs(g - np.median(g))
            k = int(np.argmax(dev))
            spans.append((float(dev[k]), float(t[k]), sensor.id))
        out = [(t, f"{sid} moved {span:.0f} g", [sid]) for span, t, sid in sorted(spans, reverse=True)]
    out.sort(key=lambda m: m[0])
    return out[:limit]


def draw(rec: Recording, dest: Path, limit: int = 8) -> Path:
    """Draw the recording into a PNG at `dest`; returns it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    moments = _moments(rec, limit)
    cols = 2
    rows = max(1, (len(moments) + cols - 1) // cols)
    fig = plt.figure(figsize=(15, 4.5 + 2.2 * rows))
    grid = fig.add_gridspec(rows + 2, cols + 2)
    floor = fig.add_subplot(grid[:2, :])
    _draw_floor(floor, rec)
    ids = [s.id for s in rec.config.sensors]
    for k, (t, title, sensors) in enumerate(moments):
        ax = fig.add_subplot(grid[2 + k // cols, (k % cols) * 2:(k % cols) * 2 + 2])
        for sid in sensors:
            m = (rec.weights.sensor == ids.index(sid)) & (np.abs(rec.weights.t - t - 0.5) < (_BEFORE_S + _AFTER_S) / 2)
            ax.plot(rec.weights.t[m] - t, rec.weights.grams[m], ".-", ms=2, lw=0.8, label=sid)
        ax.axvline(0.0, color="k", lw=0.6, ls=":")
        ax.set_title(title, fontsize=9)
        ax.set_xlim(-_BEFORE_S, _AFTER_S)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="best")
        ax.set_ylabel("grams", fontsize=7)
    fig.suptitle(f"{rec.path.name}: {len(rec.weights):,} readings, {len(rec.nonces)} entries, "
                 f"{(rec.end - rec.start) / 60:.1f} min", fontsize=11)
    fig.tight_layout()
    dest.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(dest, dpi=90)
    plt.close(fig)
    return dest


def _draw_floor(ax: Any, rec: Recording) -> None:
    from matplotlib.patches import Rectangle

    cfg = rec.config
    w, h = cfg.floor.size
    ax.add_patch(Rectangle((0, 0), w, h, fill=False, lw=1))
    for name, seg, colour in (("entry", cfg.floor.entry, "tab:green"), ("exit", cfg.floor.exit, "tab:red")):
        ax.plot([seg[0][0], seg[1][0]], [seg[0][1], seg[1][1]], color=colour, lw=4, label=name)
    xs = [s.pos[0] for s in cfg.sensors]
    ys = [s.pos[1] for s in cfg.sensors]
    ax.scatter(xs, ys, s=6, c=[s.pos[2] for s in cfg.sensors], cmap="Greys", marker="s", label="plates")
    if rec.tracks:
        by_track: dict[str, list[tuple[float, float]]] = {}
        hands = []
        for p in rec.tracks:
            by_track.setdefault(p.track, []).append((p.x, p.y))
            if p.hand is not None:
                hands.append(p.hand[:2])
        for tid, pts in by_track.items():
            arr = np.array(pts)
            ax.plot(arr[:, 0], arr[:, 1], lw=0.8, alpha=0.8)
            ax.annotate(tid, arr[0], fontsize=6)
        if hands:
            hx, hy = zip(*hands)
            ax.scatter(hx, hy, s=4, c="tab:orange", marker="x", label="hand points")
    ax.set_aspect("equal")
    ax.set_xlim(-0.2, w + 0.2)
    ax.set_ylim(-0.2, h + 0.2)
    ax.legend(fontsize=7, loc="upper right")
    ax.set_title("floor: plates, entry and exit, tracks (one colour per track id)", fontsize=9)
