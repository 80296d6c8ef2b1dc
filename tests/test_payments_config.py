"""The [payments] section of store.toml: safe defaults, and every mistake reported with its key path."""

from __future__ import annotations

from typing import Any

import pytest

from appliance.config import ConfigError, describe, parse_config
from appliance.config.model import PaymentSettings, StoreConfig


def store(payments: dict[str, Any] | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "version": 1,
        "store": {"name": "Corner Shop", "currency": "KRW", "timezone": "Asia/Seoul"},
        "floor": {"size": [6.0, 4.0], "entry": [[0.0, 0.5], [0.0, 1.5]], "exit": [[0.0, 2.5], [0.0, 3.5]]},
        "products": [{"sku": "1", "name": "Water", "price": 1000, "unit_g": 520.0}],
    }
    if payments is not None:
        raw["payments"] = payments
    return raw


def test_without_a_payments_section_the_box_charges_its_own_sandbox() -> None:
    settings = parse_config(store()).payments
    assert settings == PaymentSettings()
    assert (settings.processor, settings.api_base, settings.secret_key_file) == (
        "sandbox",
        "http://127.0.0.1:12111",
        "",
    )


def test_a_production_section_is_accepted() -> None:
    settings = parse_config(
        store({"processor": "stripe", "api_base": "https://api.stripe.com", "secret_key_file": "/etc/box/stripe.key"})
    ).payments
    assert settings.processor == "stripe" and settings.read_timeout_s == 10.0


@pytest.mark.parametrize(
    ("payments", "path", "message"),
    [
        ({"processor": "paypal"}, "payments.processor", "one of stripe, sandbox"),
        ({"secret_key": "sk_live_x"}, "payments.secret_key", "did you mean 'secret_key_file'"),
        ({"read_timeout_s": 0.1}, "payments.read_timeout_s", "below the minimum"),
        ({"lookup_after_h": 30}, "payments.lookup_after_h", "above the maximum"),
        ({"api_base": "http://pay.example.com"}, "payments", "plain http is allowed only on loopback"),
        ({"api_base": "ftp://127.0.0.1"}, "payments", "base URL"),
        ({"api_base": "https://api.stripe.com/v1"}, "payments", "base URL"),
        ({"processor": "sandbox", "api_base": "https://api.stripe.com"}, "payments", "loopback"),
        ({"processor": "stripe", "api_base": "https://api.stripe.com"}, "payments", "secret_key_file is required"),
        ({"retry_first_s": 30.0, "retry_max_s": 10.0}, "payments", "retry_max_s must be at least"),
    ],
)
def test_each_mistake_is_reported_at_its_key_path(payments: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(store(payments))
    assert any(issue.path == path and message in issue.message for issue in caught.value.issues), caught.value


def test_every_payment_setting_is_documented() -> None:
    docs = [d for d in describe(StoreConfig) if d.path.startswith("payments.")]
    assert {d.path for d in docs} == {
        "payments.processor",
        "payments.api_base",
        "payments.secret_key_file",
        "payments.connect_timeout_s",
        "payments.read_timeout_s",
        "payments.retry_first_s",
        "payments.retry_max_s",
        "payments.lookup_after_h",
    }
    assert all(d.help for d in docs)
