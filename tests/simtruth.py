"""Who truly carried which tracker id when: the simulator's own record, for diagnosis scripts only
(tests/swap_diagnosis.py, tests/entry_diagnosis.py); the box never sees it."""

from __future__ import annotations

import bisect
from collections import defaultdict
from typing import Any

from appliance.sim import simulator, tracker


def simulate_seen(scenario: str, seed: int) -> tuple[simulator.SimOutput, tracker.TrackerOutput]:
    """Simulate a scenario and keep the simulated tracker's output, whose `ids` say per person
    which id they carried when."""
    captured: list[tracker.TrackerOutput] = []
    real_render = tracker.render

    def render(*args: Any, **kwargs: Any) -> tracker.TrackerOutput:
        out = real_render(*args, **kwargs)
        captured.append(out)
        return out

    simulator.tracker.render = render  # type: ignore[assignment]
    try:
        out = simulator.simulate(scenario, seed)
    finally:
        simulator.tracker.render = real_render  # type: ignore[assignment]
    return out, captured[-1]


class Carriers:
    """Which person carried each tracker id when, from `TrackerOutput.ids`."""

    def __init__(self, seen: tracker.TrackerOutput) -> None:
        self.by_ext: dict[str, list[tuple[float, str]]] = defaultdict(list)
        for person, rows in seen.ids.items():
            for t, tid in rows:
                self.by_ext[tid].append((t, person))
        for rows in self.by_ext.values():
            rows.sort()

    def at(self, ext: str, t: float) -> str | None:
        """The person the tracker gave id `ext` in the frame at `t`, None if nobody had it then."""
        rows = self.by_ext.get(ext, [])
        k = bisect.bisect_left(rows, (t - 0.01, ""))
        if k < len(rows) and abs(rows[k][0] - t) < 0.01:
            return rows[k][1]
        return None

    def before(self, ext: str, t: float) -> str | None:
        """The last person to carry `ext` up to 0.2 s before `t`."""
        rows = self.by_ext.get(ext, [])
        k = bisect.bisect_left(rows, (t - 0.2, ""))
        return rows[k - 1][1] if k > 0 else None
