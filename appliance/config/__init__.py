"""Store configuration: the typed schema of store.toml, its validation and its documentation."""

from appliance.config.load import decode_b64url, load_config, parse_config
from appliance.config.model import (
    Camera,
    Floor,
    FusionSettings,
    GateSettings,
    Issuer,
    MqttSettings,
    Product,
    Sensor,
    ShelfSettings,
    Stock,
    StoreConfig,
    StoreInfo,
)
from appliance.config.schema import ConfigError, ConfigIssue, describe

__all__ = [
    "Camera",
    "ConfigError",
    "ConfigIssue",
    "Floor",
    "FusionSettings",
    "GateSettings",
    "Issuer",
    "MqttSettings",
    "Product",
    "Sensor",
    "ShelfSettings",
    "Stock",
    "StoreConfig",
    "StoreInfo",
    "decode_b64url",
    "describe",
    "load_config",
    "parse_config",
]
