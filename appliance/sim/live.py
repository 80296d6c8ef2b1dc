"""Simulated recordings held in memory: for the demo and the benchmarks, no files in between."""

from __future__ import annotations

from pathlib import Path

from appliance.config import parse_config
from appliance.gate.passes import parse_pass_unchecked
from appliance.sim.recording import Recording, Weights
from appliance.sim.simulator import SimOutput, simulate


def as_recording(out: SimOutput) -> Recording:
    """The Recording a reader would get from the files write_recording(out) makes."""
    config = parse_config(out.config_raw, f"simulated {out.scenario}")
    nonces = [parse_pass_unchecked(e.pass_text).nonce for e in out.gate if e.kind == "entry"]
    weights = Weights(out.weights.t, out.weights.sensor, out.weights.grams)
    return Recording(Path(f"<simulated {out.scenario} seed {out.seed}>"), config, out.config_raw, weights,
                     list(out.gate), list(out.tracks), None, None, out.truth, nonces)


def simulated_recording(scenario: str, seed: int) -> Recording:
    """Simulate a scenario and return it as an in-memory recording."""
    return as_recording(simulate(scenario, seed))
