"""Admitted passes and receipt seeds: what a restarted box needs to recognise a pass and re-send a charge as it was."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.events import ReceiptLine
from appliance.vault import ManualClock, RetentionPolicy, Vault
from appliance.vault.crashpoints import CRASH_AFTER_ENV, CRASH_ENV

T0 = 1_715_941_800.0  # 2024-05-17 10:30 UTC
NONCE = "bm9uY2Utb2YtYS1wYXNzLTE"
REPO = Path(__file__).resolve().parent.parent


def open_vault(folder: Path, key: bytes, t: float = T0) -> Vault:
    return Vault.open(folder, key, RetentionPolicy.load(), ManualClock(t))


def test_a_pass_seen_again_returns_its_visit_and_stores_nothing_new(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    with open_vault(tmp_path / "v", key) as vault:
        first = vault.open_visit(
            entered_at=T0, party=1, token="cus_a/pm_b", receipt_key=None, pass_nonce=NONCE, pass_expires=T0 + 290
        )
        again = vault.open_visit(
            entered_at=T0 + 5, party=1, token="cus_a/pm_b", receipt_key=None, pass_nonce=NONCE, pass_expires=T0 + 300
        )
        other = vault.open_visit(
            entered_at=T0, party=1, token="cus_c/pm_d", receipt_key=None, pass_nonce=NONCE[::-1], pass_expires=T0 + 300
        )
        assert again == first and other != first
        assert [v.id for v in vault.open_visits()] == sorted([first, other])
        known = vault.admitted_pass(NONCE)
        assert known is not None and known.visit == first and known.expires_at == T0 + 300  # rounded up to the minute
    with open_vault(tmp_path / "v", key) as vault:
        assert vault.admitted_pass(NONCE) is not None and vault.admitted_pass(NONCE).visit == first  # type: ignore[union-attr]
        assert vault.admitted_pass("bmV2ZXItc2Vlbi1iZWZvcmU") is None
        assert vault.admitted_pass("not a nonce!") is None


def test_the_nonce_itself_is_never_on_disk(tmp_path: Path) -> None:
    """The row holds an HMAC of the nonce under the day's key; the files hold neither the nonce nor its bytes."""
    with open_vault(tmp_path / "v", secrets.token_bytes(32)) as vault:
        vault.open_visit(entered_at=T0, party=1, token=None, receipt_key=None, pass_nonce=NONCE, pass_expires=T0 + 60)
        period = vault.files.live_periods("admitted_pass")[0]
        conn = vault.files.connection(period)
        assert conn is not None
        (pass_key,) = conn.execute("SELECT pass_key FROM admitted_passes").fetchone()
        assert len(pass_key) == 32 and NONCE.encode() not in pass_key
    for path in (tmp_path / "v").rglob("*"):
        if path.is_file():
            assert NONCE.encode() not in path.read_bytes(), path


def test_an_admitted_pass_is_forgotten_after_its_retention(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    with Vault.open(tmp_path / "v", secrets.token_bytes(32), RetentionPolicy.load(), clock) as vault:
        vault.open_visit(entered_at=T0, party=1, token=None, receipt_key=None, pass_nonce=NONCE, pass_expires=T0 + 60)
        clock.advance(59 * 60)
        vault.run_retention()
        assert vault.admitted_pass(NONCE) is not None
        clock.advance(3 * 60)
        run = vault.run_retention()
        assert run.deleted.get("admitted_passes") == 1 and vault.admitted_pass(NONCE) is None


def crashing_child(folder: Path, key: bytes) -> None:
    """Runs in a child process: open two visits by pass; the env var picks where it dies."""
    with open_vault(folder, key) as vault:
        for nonce in (NONCE, NONCE[::-1]):
            vault.open_visit(
                entered_at=T0, party=2, token="cus_x/pm_y", receipt_key=b"k" * 32, pass_nonce=nonce,
                pass_expires=T0 + 300,
            )


@pytest.mark.parametrize("point", ["visit.pass_stored", "visit.token_stored"])
def test_a_crash_between_the_pass_and_its_visit_is_finished_under_the_same_id(tmp_path: Path, point: str) -> None:
    key = secrets.token_bytes(32)
    env = {**os.environ, CRASH_ENV: point, CRASH_AFTER_ENV: "1"}  # the second visit dies half-made
    proc = subprocess.run([sys.executable, __file__, str(tmp_path / "v"), key.hex()], env=env, cwd=REPO, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    with open_vault(tmp_path / "v", key) as vault:
        first, second = vault.admitted_pass(NONCE), vault.admitted_pass(NONCE[::-1])
        assert first is not None and second is not None
        assert [v.id for v in vault.open_visits()] == [first.visit]  # the half-made one has no visit yet
        again = vault.open_visit(
            entered_at=T0, party=2, token="cus_x/pm_y", receipt_key=b"k" * 32, pass_nonce=NONCE[::-1],
            pass_expires=T0 + 300,
        )
        assert again == second.visit
        assert sorted(v.id for v in vault.open_visits()) == sorted([first.visit, second.visit])
        charge = vault.close_visit(again, left_at=T0 + 60, lines=[ReceiptLine("a", "A", 1, 0.0, 900)], amount=900,
                                   currency="KRW")
        assert vault.payment_token(charge.order_ref) == "cus_x/pm_y"


def test_the_receipt_seed_is_stable_secret_per_charge_and_goes_with_the_token_file(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    refs = []
    with open_vault(tmp_path / "v", key) as vault:
        for token in ("cus_a/pm_a", "cus_b/pm_b"):
            visit = vault.open_visit(entered_at=T0, party=1, token=token, receipt_key=b"r" * 32)
            refs.append(
                vault.close_visit(visit, left_at=T0, lines=[ReceiptLine("a", "A", 1, 0.0, 5)], amount=5,
                                  currency="KRW").order_ref
            )
        seeds = [vault.receipt_seed(ref) for ref in refs]
    with open_vault(tmp_path / "v", key) as vault:
        assert [vault.receipt_seed(ref) for ref in refs] == seeds
        assert seeds[0] != seeds[1] and all(s is not None and len(s) == 32 for s in seeds)
        for period in vault.files.live_periods("payment_token"):
            vault.files.destroy(period, T0)
        assert vault.receipt_seed(refs[0]) is None


if __name__ == "__main__":
    crashing_child(Path(sys.argv[1]), bytes.fromhex(sys.argv[2]))
