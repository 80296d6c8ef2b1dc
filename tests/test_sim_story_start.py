"""Stories play inside the recording: nothing happens before the first reading (a take no sensor
could see is no test of the box)."""

from __future__ import annotations

from appliance.sim.simulator import simulate


def test_the_strangers_of_the_handoff_story_enter_after_the_recording_starts():
    out = simulate("handoff", 2)  # the seed whose strangers once came in before the recording began
    entered = [v["entered"] for v in out.truth["visits"]]
    events = [e["t"] for v in out.truth["visits"] for e in v["events"]]
    assert min(entered) >= out.start
    assert min(events) >= out.start
