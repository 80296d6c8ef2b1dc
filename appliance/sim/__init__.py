"""The stand-in world: store simulator, recording reader and writer, importers and the scorer."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from appliance.sim.scenarios import SCENARIOS, STANDARD_SUITE, Scenario
    from appliance.sim.shop import default_shop
    from appliance.sim.simulator import SimOutput, generate, simulate, write_recording

# Imported on first use: the simulator pulls in scipy (seconds of start-up), which a process that
# only reads a recording (the appliance replaying one, a crash-harness child) should not pay for.
_EXPORTS = {
    "SCENARIOS": "appliance.sim.scenarios",
    "STANDARD_SUITE": "appliance.sim.scenarios",
    "Scenario": "appliance.sim.scenarios",
    "default_shop": "appliance.sim.shop",
    "SimOutput": "appliance.sim.simulator",
    "generate": "appliance.sim.simulator",
    "simulate": "appliance.sim.simulator",
    "write_recording": "appliance.sim.simulator",
}

__all__ = [
    "SCENARIOS",
    "STANDARD_SUITE",
    "Scenario",
    "SimOutput",
    "default_shop",
    "generate",
    "simulate",
    "write_recording",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'appliance.sim' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
