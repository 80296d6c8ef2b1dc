"""The appliance process: the parts wired in order (vault, retention, outbox, shop floor, source) and run."""

from appliance.app.appliance import Appliance, Part, VaultAdmissions
from appliance.app.core import CoreLoop, LoopObserver
from appliance.app.recorder import FloorRecorder, review_code
from appliance.app.sources import LiveSource, RecordingSource, RestartSafeReplayCache, Source

__all__ = [
    "Appliance",
    "CoreLoop",
    "FloorRecorder",
    "LiveSource",
    "LoopObserver",
    "Part",
    "RecordingSource",
    "RestartSafeReplayCache",
    "Source",
    "VaultAdmissions",
    "review_code",
]
