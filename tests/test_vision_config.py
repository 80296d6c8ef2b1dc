"""The [vision] section of store.toml: defaults, bounds and errors with their key path."""

from __future__ import annotations

import pytest

from appliance.config import ConfigError, describe, parse_config
from appliance.config.model import StoreConfig, VisionSettings
from appliance.sim.cameras import example_store


def test_a_store_without_a_vision_section_gets_the_defaults():
    config = parse_config(example_store())
    assert config.vision == VisionSettings()
    assert config.vision.input_size == (640, 384) and config.vision.threads == 1


@pytest.mark.parametrize(
    ("vision", "path", "message"),
    [
        ({"input_size": [640, 380]}, "vision", "multiples of 32"),
        ({"score_min": 0.6, "score_high": 0.5}, "vision", "score_high 0.5 is below score_min 0.6"),
        ({"threads": 0}, "vision.threads", "below the minimum"),
        ({"gate_m": 9.0}, "vision.gate_m", "above the maximum"),
        ({"motion_gate": "yes"}, "vision.motion_gate", "true or false"),
        ({"groups": "cam1"}, "vision.groups", "expected a list"),
        ({"score_hi": 0.5}, "vision.score_hi", "did you mean 'score_high'"),
    ],
)
def test_bad_vision_settings_are_reported_with_their_key_path(vision, path, message):
    raw = example_store()
    raw["vision"] = vision
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert any(issue.path == path and message in issue.message for issue in err.value.issues), str(err.value)


def test_every_vision_setting_is_documented():
    docs = [d for d in describe(StoreConfig) if d.path.startswith("vision.")]
    assert len(docs) == len(VisionSettings.__dataclass_fields__)
    assert all(d.help for d in docs)
