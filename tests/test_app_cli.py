"""`appliance run` and `appliance payments status` as the owner meets them: clear one-line errors, the unpaid visits."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from appliance.cli import main
from appliance.events import ReceiptLine
from appliance.vault import RetentionPolicy, SystemClock, Vault
from appliance.vault.keysource import read_key_file, write_key_file


def a_store(tmp_path: Path, seed: int = 1, **sections: dict[str, Any]) -> Path:
    from appliance.sim.shop import default_shop

    raw = dict(default_shop(seed).config_raw)
    raw["vault"] = {"folder": str(tmp_path / "vault"), "key_file": str(tmp_path / "master.key")}
    raw.update(sections)
    if not (tmp_path / "master.key").exists():
        write_key_file(tmp_path / "master.key", os.urandom(32))
    path = tmp_path / "store.toml"
    path.write_text(tomli_w.dumps(raw), encoding="utf-8")
    return path


def test_live_operation_without_the_broker_password_file_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--config", str(a_store(tmp_path))]) == 1
    assert "[mqtt] password_file" in capsys.readouterr().err


def test_a_recording_from_another_store_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from appliance.sim import generate

    recording = generate("single-pick", 2, tmp_path / "rec")
    store = a_store(tmp_path, seed=2)
    with pytest.raises(SystemExit) as stop:
        main(["run", "--config", str(store), "--recording", str(recording), "--speed", "-1"])
    assert stop.value.code == 2 and "argument --speed: must be at least 0" in capsys.readouterr().err
    raw = store.read_text(encoding="utf-8").replace("price = ", "price = 1", 1)
    store.write_text(raw, encoding="utf-8")
    assert main(["run", "--config", str(store), "--recording", str(recording)]) == 1
    assert "another store" in capsys.readouterr().err


def test_a_recording_that_is_not_one_is_refused_with_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["run", "--config", str(a_store(tmp_path)), "--recording", str(tmp_path / "empty")]) == 1
    assert "store.toml" in capsys.readouterr().err


def test_payments_status_lists_the_visits_awaiting_the_shopper_or_declined(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = a_store(tmp_path)
    outcomes = {"succeeded": "", "declined": "card_declined", "requires_action": "authentication_required",
                "pending": ""}  # fmt: skip
    visits = {}
    with Vault.open(tmp_path / "vault", read_key_file(tmp_path / "master.key"), RetentionPolicy.load(),
                    SystemClock()) as vault:  # fmt: skip
        for state, code in outcomes.items():
            visit = vault.open_visit(entered_at=1.7e9, party=1, token="cus_a/pm_b", receipt_key=None)
            charge = vault.close_visit(visit, left_at=1.7e9 + 60, lines=[ReceiptLine("a", "A", 1, 0.0, 1500)],
                                       amount=1500, currency="KRW")  # fmt: skip
            if state != "pending":
                vault.set_charge_state(charge.order_ref, state, processor_ref="pi_1", error_code=code)
            visits[state] = visit
    assert main(["payments", "status", "--config", str(store), "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    listed = {v["visit"]: (v["state"], v["label"], v["error_code"]) for v in status["needs_owner"]}
    assert listed == {
        visits["declined"]: ("declined", "declined", "card_declined"),
        visits["requires_action"]: ("requires_action", "awaiting shopper", "authentication_required"),
    }
    assert status["counts"]["pending"] == 1 and status["oldest_pending_s"] >= 0
    assert main(["payments", "status", "--config", str(store)]) == 0
    text = capsys.readouterr().out
    assert "2 visit(s) not paid" in text and "awaiting shopper (authentication_required)" in text
    assert "cus_a" not in text


def test_payments_status_of_a_missing_vault_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["payments", "status", "--config", str(a_store(tmp_path))]) == 1
    assert "cannot read the vault" in capsys.readouterr().err
