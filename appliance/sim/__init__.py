"""The stand-in world: store simulator, recording reader and writer, importers and the scorer."""

from appliance.sim.scenarios import SCENARIOS, STANDARD_SUITE, Scenario
from appliance.sim.shop import default_shop
from appliance.sim.simulator import SimOutput, generate, simulate, write_recording

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
