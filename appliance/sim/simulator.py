"""The store simulator's front door: play a named scenario and get a recording with its truth.

`simulate` plays the story in memory and renders what the shop's devices would have reported;
`write_recording` writes that as a recording folder (shared/spec/recording.md), atomically;
`generate` does both. Same scenario and seed, same bytes.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from appliance.config import StoreConfig, parse_config
from appliance.events import FloatArray, GateEvent, IntArray, TrackPoint
from appliance.sim import crowding, loadcells, tracker
from appliance.sim.acts import Press
from appliance.sim.loadcells import SensorProfile
from appliance.sim.recording import RecordingWriter, Weights
from appliance.sim.scenarios import SCENARIOS, Scenario
from appliance.sim.scene import Scene
from appliance.sim.shop import default_shop
from appliance.sim.stock import resolve
from appliance.sim.tracker import TrackerProfile
from appliance.sim.world import PersonPath

# 2024-05-14 10:00 KST; seed n plays on the n-th day after it.
BASE_START = 1715648400.0
LONG_RUN_S = 900.0

CHARGING_RULE = (
    "A unit is charged to the visit whose member lifted it from a shelf, wherever it goes afterwards: "
    "handing it to a companion or to a stranger on another pass does not move the charge. A unit set down "
    "on any shelf (its own place or another) is nobody's again. Loose goods are charged to the scooping "
    "visit by the grams that left the bin, less what they poured back. Things people brought in are never "
    "charged."
)


@dataclass(frozen=True, slots=True)
class SimOutput:
    """A simulated recording in memory: what the devices reported, what really happened, and the true paths.

    `weights.sensor` indexes `config_raw["sensors"]`; `people` are the true body paths (for
    camera rendering); `truth` has the shape of truth.json.
    """

    scenario: str
    seed: int
    config_raw: dict[str, Any]
    weights: Weights
    gate: list[GateEvent]
    tracks: list[TrackPoint]
    truth: dict[str, Any]
    people: list[PersonPath]

    @property
    def t(self) -> FloatArray:
        return self.weights.t

    @property
    def sensor(self) -> IntArray:
        return self.weights.sensor

    @property
    def grams(self) -> FloatArray:
        return self.weights.grams

    @property
    def sensor_ids(self) -> list[str]:
        return [s["id"] for s in self.config_raw["sensors"]]

    @property
    def config(self) -> StoreConfig:
        """The store configuration, parsed and validated."""
        return parse_config(self.config_raw)

    @property
    def nonces(self) -> list[str]:
        return [v["pass"] for v in self.truth["visits"]]

    @property
    def start(self) -> float:
        return float(self.truth["recording"]["start"])

    @property
    def end(self) -> float:
        return float(self.truth["recording"]["end"])


class _Progress:
    """Stage messages on stderr for long runs, with elapsed seconds."""

    def __init__(self, on: bool) -> None:
        self.on = on
        self.t0 = time.monotonic()

    def __call__(self, message: str) -> None:
        if self.on:
            print(f"[sim {time.monotonic() - self.t0:6.1f} s] {message}", file=sys.stderr, flush=True)


def _split_overrides(sc: Scenario, overrides: dict[str, Any]) -> tuple[SensorProfile, TrackerProfile,
                                                                          dict[str, Any], dict[str, Any]]:
    sensor_keys = {f.name for f in dataclasses.fields(SensorProfile)}
    tracker_keys = {f.name for f in dataclasses.fields(TrackerProfile)}
    params: dict[str, Any] = dict(sc.params)
    sensors: dict[str, Any] = {}
    tracks: dict[str, Any] = {}
    run: dict[str, Any] = {}
    defaults = {**{f.name: f.default for f in dataclasses.fields(SensorProfile)},
                **{f.name: f.default for f in dataclasses.fields(TrackerProfile)}, **params}
    for key, value in overrides.items():
        _check_kind(key, value, defaults.get(key))
        if key in sensor_keys:
            sensors[key] = value
        elif key in tracker_keys:
            tracks[key] = value
        elif key in params:
            params[key] = value
        elif key in ("start", "progress"):
            run[key] = value
        else:
            known = sorted(sensor_keys | tracker_keys | set(params) | {"start", "progress"})
            raise ValueError(f"scenario {sc.name!r} has no setting {key!r}; known: {', '.join(known)}")
    return (dataclasses.replace(sc.sensors, **sensors), dataclasses.replace(sc.tracker, **tracks), params, run)


def _check_kind(key: str, value: Any, default: Any) -> None:
    """A setting whose default is a number takes a number (a whole one for a whole default)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, bool) or default is None:
        return
    if isinstance(default, int) and not (number and float(value).is_integer()):
        raise ValueError(f"{key} must be a whole number, got {value!r}")
    if isinstance(default, float) and not (number and math.isfinite(value)):
        raise ValueError(f"{key} must be a number, got {value!r}")


def check_overrides(scenario: str, overrides: dict[str, Any]) -> None:
    """Raise ValueError naming what is wrong when `overrides` are not settings of `scenario` or
    out of their range; nothing is simulated."""
    if scenario not in SCENARIOS:
        raise ValueError(f"no scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    _split_overrides(SCENARIOS[scenario], overrides)


def simulate(scenario: str, seed: int, **overrides: Any) -> SimOutput:
    """Play a named scenario (see SCENARIOS) with a seed; returns the recording in memory.

    Overrides change the scenario's sensor behaviour (any SensorProfile field, e.g.
    `noise_median_g=2.0`, `dead_silent=1`), its tracker (any TrackerProfile field, e.g.
    `hand_share=0.0`), its story numbers (`shoppers`, `duration_s` where the story has them),
    `start` (unix seconds of the first reading) and `progress` (stage messages on stderr; on by
    default for runs longer than 15 minutes). Unknown names raise ValueError.
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"no scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
    sc = SCENARIOS[scenario]
    sensors, tracker_profile, params, run = _split_overrides(sc, overrides)
    start = float(run.get("start", BASE_START + 86400.0 * (seed % 1000)))
    long_run = float(params.get("duration_s", 0.0)) > LONG_RUN_S
    progress = _Progress(bool(run.get("progress", long_run)))

    shop = default_shop(seed)
    scene = Scene(shop, seed, start, params)
    progress(f"{scenario} seed {seed}: playing the story")
    sc.story(scene)
    end = max(scene.end, start + float(params.get("duration_s", 0.0))) + 4.0
    progress(f"{len(scene.visits)} visits, {len(scene.people)} people, {end - start:.0f} s; moving the stock")
    outcome = resolve(shop, scene.people)

    presses: list[Press] = [a for p in scene.people for a in p.acts if isinstance(a, Press)]
    dead = loadcells.choose_dead(shop, sensors, np.random.default_rng(np.random.SeedSequence([seed, 0xDEAD])),
                                 start, end)
    readings = loadcells.render(shop, outcome.opening_g, outcome.steps, presses, sensors, seed, start, end, dead,
                                progress)
    progress(f"{readings.t.shape[0]} load-cell readings; tracking people")
    paths = crowding.separate([p.true_path() for p in scene.people], scene.plan)
    reaches = {p.person: p.reaches for p in scene.people}
    seen = tracker.render(shop, paths, reaches, tracker_profile, seed, start, end)
    gate = _gate_rows(scene, seen, tracker_profile, seed)
    truth = _truth(sc, seed, scene, outcome, readings, seen, shop.config_raw, start, end)
    progress("done")
    return SimOutput(scenario, seed, shop.config_raw, Weights(readings.t, readings.sensor, readings.grams), gate,
                     seen.points, truth, paths)


def _gate_rows(scene: Scene, seen: tracker.TrackerOutput, profile: TrackerProfile, seed: int) -> list[GateEvent]:
    """The gate's log; now and then the gate names the track it saw (usually it does not)."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x6A7E]))
    rows: list[GateEvent] = []
    for v in scene.visits:
        track = ""
        if rng.random() < profile.gate_track_share:
            first = v.members[0]
            track = seen.id_at(first.person, (first.entry_t or v.scan_t) + 0.3, within=0.6)
        rows.append(GateEvent(v.scan_t, "entry", v.pass_text, track))
    for p in scene.people:
        if p.exit_t is None:
            continue
        track = seen.id_at(p.person, p.exit_t - 0.2, within=0.6) if rng.random() < profile.gate_track_share else ""
        rows.append(GateEvent(p.exit_t, "exit", "", track))
    return sorted(rows, key=lambda e: (e.t, e.kind))


def _truth(sc: Scenario, seed: int, scene: Scene, outcome: Any, readings: loadcells.Readings,
           seen: tracker.TrackerOutput, config_raw: dict[str, Any], start: float, end: float) -> dict[str, Any]:
    sensor_ids = [s["id"] for s in config_raw["sensors"]]
    visits = []
    for v in sorted(scene.visits, key=lambda v: v.scan_t):
        lines: list[dict[str, Any]] = []
        for sku, qty in sorted(outcome.units.get(v.nonce, {}).items()):
            lines.append({"sku": sku, "qty": int(qty)})
        for sku, grams in sorted(outcome.grams.get(v.nonce, {}).items()):
            lines.append({"sku": sku, "grams": round(float(grams), 1)})
        lines.sort(key=lambda line: line["sku"])
        visits.append({
            "pass": v.nonce,
            "lines": lines,
            "party": v.party,
            "people": [p.person for p in v.members],
            "entered": round(v.scan_t, 3),
            "left": round(max((p.exit_t or p.t) for p in v.members), 3),
            "events": outcome.events.get(v.nonce, []),
        })
    return {
        "visits": visits,
        "scenario": sc.name,
        "description": sc.description,
        "single_shopper": sc.single_shopper,
        "difficulty": sc.difficulty,
        "seed": seed,
        "charging_rule": CHARGING_RULE,
        "recording": {"start": round(start, 4), "end": round(end, 4)},
        "sensors": {
            "noise_g": dict(zip(sensor_ids, readings.noise_g)),
            "dead": [{"sensor": sensor_ids[d.plate], "from": round(d.t, 3), "mode": d.mode} for d in readings.dead],
        },
        "tracker": {"fragments": seen.fragments, "id_switches": seen.switches, "ghosts": seen.ghosts},
        "misplaced": outcome.misplaced,
        "left_behind": outcome.left_behind,
    }


def write_recording(out: SimOutput, path: str | Path, *, cameras: int = 0, fps: float = 8.0,
                    walkers: Sequence[Any] | None = None) -> Path:
    """Write a simulated recording folder atomically (nothing at `path` until it is complete).

    With `cameras` > 0 the shop is also filmed: that many ceiling cameras go into store.toml, and
    `video/` plus `detections.csv` (the real detector's boxes) are rendered from the true paths
    (appliance/sim/cameras.py; pass `walkers` from `cameras.pedestrians` to reuse cut-outs).
    """
    dest = Path(path)
    raw = out.config_raw
    if cameras:
        from appliance.sim.cameras import camera_rig

        size = raw["floor"]["size"]
        raw = {**raw, "cameras": camera_rig((float(size[0]), float(size[1])), cameras)}
    with RecordingWriter(dest) as w:
        w.store(raw)
        w.weights(out.t, out.sensor_ids, out.sensor, out.grams)
        w.gate(out.gate)
        w.tracks(out.tracks)
        w.truth(out.truth)
        if cameras:
            from appliance.sim.cameras import render

            render(w.folder, raw["cameras"], out.people, fps, out.seed, start=out.start, end=out.end,
                   walkers=walkers)
    return dest


def generate(scenario: str, seed: int, path: str | Path, *, cameras: int = 0, fps: float = 8.0,
             **overrides: Any) -> Path:
    """Simulate a scenario and write it as a recording; returns the recording's folder."""
    out = simulate(scenario, seed, **overrides)
    progress = _Progress(bool(overrides.get("progress", out.end - out.start > LONG_RUN_S)))
    progress(f"writing {path}" + (f" and filming it with {cameras} cameras" if cameras else ""))
    dest = write_recording(out, path, cameras=cameras, fps=fps)
    progress(f"wrote {path}")
    return dest
