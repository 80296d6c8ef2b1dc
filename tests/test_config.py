"""store.toml validation: every problem at once, each with its key path and a fix."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from shopkit import store_raw

from appliance.config import ConfigError, StoreConfig, describe, load_config, parse_config


def _with(change: Any) -> dict[str, Any]:
    raw = copy.deepcopy(store_raw())
    change(raw)
    return raw


@pytest.mark.parametrize(
    ("change", "path", "words"),
    [
        (lambda r: r.update(version=2), "version", "maximum"),
        (lambda r: r["store"].pop("currency"), "store.currency", "missing"),
        (lambda r: r["store"].update(currency="won"), "store.currency", "ISO 4217"),
        (lambda r: r["store"].update(timezone="Mars/Olympus"), "store.timezone", "time zone"),
        (lambda r: r.update(stok=[]), "stok", "did you mean 'stock'"),
        (lambda r: r["floor"].update(size=[6.0, "x"]), "floor.size[1]", "finite number"),
        (lambda r: r["products"][0].update(price=-5), "products[0].price", ">= 0"),
        (lambda r: r["products"][0].update(price=1.5), "products[0].price", "whole number"),
        (lambda r: r["products"][1].update(sku="cola"), "products[1].sku", "duplicate"),
        (lambda r: r["products"][0].pop("unit_g"), "products[0]", "unit_g is required"),
        (lambda r: r["sensors"][0].update(facing=[1.0, 1.0]), "sensors[0].facing", "unit vector"),
        (lambda r: r["stock"][0]["sensors"].append("g1.s1.p99"), "stock[0].sensors[2]", 'no sensor "g1.s1.p99"'
         .replace('"', "'")),
        (lambda r: r["stock"][0].update(sku="fanta"), "stock[0].sku", "no product 'fanta'"),
        (lambda r: r["issuers"]["demo-pay"].update(public_key="abc"), "issuers.demo-pay.public_key", "32-byte"),
        (lambda r: r["shelves"] if False else r.update(shelves={"settle_s": 0.01}), "shelves.settle_s", ">= 0.1"),
        (lambda r: r.update(vision={"keep_inside_s": 1200.0}), "gate.gone_unseen_s", "not longer than vision"),
        (lambda r: r.update(gate={"gone_unseen_s": 300.0}), "gate.gone_unseen_s", "not longer than vision"),
    ],
)
def test_a_bad_setting_is_named_with_its_path_and_fix(change: Any, path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_with(change))
    issues = {i.path: i.message for i in err.value.issues}
    assert path in issues, issues
    assert words in issues[path]


def test_all_problems_are_reported_together() -> None:
    def many(r: dict[str, Any]) -> None:
        r.update(version=3, colour="red")
        r["products"][0]["price"] = -1
        r["floor"]["size"] = "big"

    with pytest.raises(ConfigError) as err:
        parse_config(_with(many))
    assert {i.path for i in err.value.issues} >= {"version", "colour", "products[0].price", "floor.size"}


def test_a_valid_store_loads_with_defaults_for_every_appliance_setting() -> None:
    cfg = parse_config(store_raw())
    assert cfg.shelves.settle_s == 1.0 and cfg.store.id == "shop"
    assert [p.sku for p in cfg.products][:2] == ["cola", "cider"]


def test_every_setting_is_documented() -> None:
    docs = list(describe(StoreConfig))
    assert all(d.help for d in docs), [d.path for d in docs if not d.help]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True, timeout=60)


def test_check_config_prints_every_error_and_exits_1(tmp_path: Path) -> None:
    raw = store_raw()
    raw["products"][0]["price"] = -1
    raw["stock"][0]["sensors"] = ["g1.s1.p42"]
    bad = tmp_path / "store.toml"
    bad.write_text(tomli_w.dumps(raw))
    out = _cli("check-config", str(bad))
    assert out.returncode == 1
    assert "products[0].price" in out.stderr and "stock[0].sensors[0]" in out.stderr


def test_check_config_accepts_a_good_file(tmp_path: Path) -> None:
    good = tmp_path / "store.toml"
    good.write_text(tomli_w.dumps(store_raw()))
    out = _cli("check-config", str(good))
    assert out.returncode == 0, out.stderr
    assert "ok: 4 products, 8 sensors" in out.stdout
    assert load_config(good).store.name == "Test shop"


def test_an_unreadable_or_broken_file_is_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "store.toml"
    broken.write_text("version = 1\n[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
