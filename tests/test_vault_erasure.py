"""On disk: every file encrypted under the right key, and expired records gone from pages, WAL and backups.

The page decryption below reads SQLCipher 4's format directly (AES-256-CBC per page, IV in the
page's reserved tail) so the tests can look at every page of a file, free pages included, the
way an attacker holding the key would.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlcipher3
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from appliance.events import CartChange, Evidence, ReceiptLine, ReviewItem
from appliance.vault import ManualClock, RetentionPolicy, Vault, VaultError, VaultKeyError
from appliance.vault.database import SQLITE_HEADER, open_database
from appliance.vault.keyring import keyring_files
from appliance.vault.keys import MasterKey
from appliance.vault.periods import period_of

T0 = datetime(2024, 5, 17, 10, 30, tzinfo=UTC).timestamp()
DAY = 86400.0
PAGE = 4096
RESERVE = 80  # 16-byte IV + 64-byte HMAC-SHA512 at the end of every page

MARK_SKU = "MARKER-SKU-7f3a"
MARK_NAME = "MARKER-NAME-c41e"
MARK_TOKEN = "cus_MARKER/pm_TOKEN_91b2"
MARK_SENSOR = "MARKER-SENSOR-55d0"
MARK_NOTE = "MARKER-NOTE-0a9c"
MARKERS = (MARK_SKU, MARK_NAME, MARK_TOKEN, MARK_SENSOR, MARK_NOTE)


def decrypt_pages(path: Path, key: bytes) -> bytes:
    """Every page of a SQLCipher database file, or of its WAL's frames, decrypted and concatenated."""
    data = path.read_bytes()
    pages: list[tuple[int, bytes]] = []
    if path.name.endswith("-wal"):
        offset = 32
        while offset + 24 + PAGE <= len(data):
            number = int.from_bytes(data[offset : offset + 4], "big")
            pages.append((number, data[offset + 24 : offset + 24 + PAGE]))
            offset += 24 + PAGE
    else:
        pages = [(i // PAGE + 1, data[i : i + PAGE]) for i in range(0, len(data), PAGE)]
    out = []
    for number, page in pages:
        start = 16 if number == 1 else 0
        iv = page[PAGE - RESERVE : PAGE - RESERVE + 16]
        d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        out.append(d.update(page[start : PAGE - RESERVE]) + d.finalize())
    return b"".join(out)


def plaintext_of(path: Path, key: bytes) -> bytes:
    """The decrypted pages of a database and of its WAL (if any)."""
    wal = path.with_name(path.name + "-wal")
    return decrypt_pages(path, key) + (decrypt_pages(wal, key) if wal.exists() and wal.stat().st_size else b"")


def evidence(t: float, sensor: str = "g1.s1.p1", note: str = "") -> Evidence:
    return Evidence(t, (sensor,), -330.0, 0.95, 0.9, note)


def open_vault(folder: Path, clock: ManualClock, key: bytes, **kw: object) -> Vault:
    return Vault.open(folder, key, RetentionPolicy.load(), clock, **kw)  # type: ignore[arg-type]


def shop_with_markers(vault: Vault, t: float) -> str:
    """A visit whose every field that can hold text carries a marker; returns the visit id."""
    visit = vault.open_visit(entered_at=t, party=1, token=MARK_TOKEN, receipt_key=secrets.token_bytes(32))
    vault.add_cart_line(visit, CartChange(visit, MARK_SKU, 1, 0.0, evidence(t, MARK_SENSOR, MARK_NOTE)))
    vault.add_review_item(visit, ReviewItem(visit, "low_confidence", ((MARK_SKU, 1),), evidence(t, MARK_SENSOR)))
    vault.close_visit(
        visit, left_at=t + 120, lines=[ReceiptLine(MARK_SKU, MARK_NAME, 1, 0.0, 1200)], amount=1200, currency="KRW"
    )
    return visit


def all_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "vault.lock")


def test_no_vault_file_wal_or_backup_has_a_sqlite_header_or_any_marker(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = open_vault(tmp_path / "v", clock, secrets.token_bytes(32))
    shop_with_markers(vault, T0)
    files = all_files(tmp_path / "v")
    assert any(p.name.endswith("-wal") and p.stat().st_size for p in files), "want a live WAL in the check"
    backup = tmp_path / "backup"
    shutil.copytree(tmp_path / "v", backup, ignore=shutil.ignore_patterns("vault.lock"))
    vault.close()
    checked = 0
    for p in all_files(tmp_path / "v") + all_files(backup) + files:
        if not p.exists():
            continue
        data = p.read_bytes()
        assert not data.startswith(SQLITE_HEADER), f"{p} starts with a plain SQLite header"
        for marker in MARKERS:
            assert marker.encode() not in data, f"{marker} readable in {p}"
        checked += 1
    assert checked >= 8


def test_the_markers_are_really_in_the_files_so_the_check_above_means_something(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = open_vault(tmp_path / "v", clock, secrets.token_bytes(32))
    shop_with_markers(vault, T0)
    evidence_period = period_of("event_evidence", "day", T0)
    sales_period = period_of("sales_record", "month", T0)
    ev_key, sales_key = vault.files.key(evidence_period), vault.files.key(sales_period)
    assert ev_key and sales_key
    ev_plain = plaintext_of(vault.files.path(evidence_period), ev_key)
    sales_plain = plaintext_of(vault.files.path(sales_period), sales_key)
    assert MARK_SKU.encode() in ev_plain and MARK_SENSOR.encode() in ev_plain and MARK_NOTE.encode() in ev_plain
    assert MARK_NAME.encode() in sales_plain
    token_period = period_of("payment_token", "day", T0)
    token_key = vault.files.key(token_period)
    assert token_key
    # The token is sealed once more inside its encrypted file: not even the file's key shows it.
    assert MARK_TOKEN.encode() not in plaintext_of(vault.files.path(token_period), token_key)
    vault.close()


def test_plain_sqlite_cannot_read_a_vault_file(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = open_vault(tmp_path / "v", clock, secrets.token_bytes(32))
    shop_with_markers(vault, T0)
    vault.close()
    for p in all_files(tmp_path / "v"):
        if p.suffix == ".db":
            with pytest.raises(sqlite3.DatabaseError, match="not a database"):
                sqlite3.connect(p).execute("SELECT * FROM sqlite_master").fetchall()


def test_the_vault_refuses_a_sqlite_library_that_does_not_encrypt(tmp_path: Path) -> None:
    with pytest.raises(VaultError, match="not SQLCipher; refusing to store data unencrypted"):
        open_database(tmp_path / "x.db", secrets.token_bytes(32), create=True, driver=sqlite3)
    assert not (tmp_path / "x.db").exists() or (tmp_path / "x.db").stat().st_size == 0


def test_a_wrong_key_is_refused_at_the_first_read(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    conn = open_database(path, secrets.token_bytes(32), create=True)
    conn.execute("CREATE TABLE t(a)")
    conn.close()
    with pytest.raises(VaultKeyError, match="cannot be read with this key"):
        open_database(path, secrets.token_bytes(32), create=False)


def test_a_plain_sqlite_file_in_the_vault_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    sqlite3.connect(path).execute("CREATE TABLE t(a)").connection.commit()
    with pytest.raises(VaultError, match="plain \\(unencrypted\\) SQLite file"):
        open_database(path, secrets.token_bytes(32), create=False)


def test_files_are_opened_with_wal_full_sync_memory_temp_and_secure_delete(tmp_path: Path) -> None:
    conn = open_database(tmp_path / "x.db", secrets.token_bytes(32), create=True)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert conn.execute("PRAGMA cipher_version").fetchone()[0]
    conn.close()


def test_a_different_master_key_does_not_open_the_vault(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    key = secrets.token_bytes(32)
    open_vault(tmp_path / "v", clock, key).close()
    other = secrets.token_bytes(32)
    with pytest.raises(VaultKeyError, match=f"wrapped under master key {MasterKey(key).id}"):
        open_vault(tmp_path / "v", clock, other)


@pytest.mark.parametrize("key", [bytes(32), b"\x01" * 32, bytes(range(8)) * 4, b"short"])
def test_a_placeholder_or_short_master_key_is_refused(tmp_path: Path, key: bytes) -> None:
    with pytest.raises(VaultKeyError):
        open_vault(tmp_path / "v", ManualClock(T0), key)
    assert not any((tmp_path / "v").glob("keyring-*")) if (tmp_path / "v").exists() else True


def test_data_without_its_keyring_is_never_silently_replaced_by_a_new_vault(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = open_vault(tmp_path / "v", clock, secrets.token_bytes(32))
    shop_with_markers(vault, T0)
    vault.close()
    for p in (tmp_path / "v").glob("keyring-*"):
        p.unlink()
    with pytest.raises(VaultError, match="no keyring"):
        open_vault(tmp_path / "v", clock, secrets.token_bytes(32))


def test_a_second_writer_is_refused_but_a_reader_may_look(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    key = secrets.token_bytes(32)
    vault = open_vault(tmp_path / "v", clock, key)
    visit = shop_with_markers(vault, T0)
    with pytest.raises(VaultError, match="open in another process"):
        open_vault(tmp_path / "v", clock, key)
    reader = open_vault(tmp_path / "v", clock, key, read_only=True)
    assert reader.visit(visit) is not None and reader.verify_audit().ok
    with pytest.raises(VaultError, match="read-only"):
        reader.open_visit(entered_at=T0, party=1, token=None, receipt_key=None)
    reader.close()
    vault.close()
    open_vault(tmp_path / "v", clock, key).close()


def test_rotating_the_master_key_rewraps_every_key_and_retires_the_old_one(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    vault = open_vault(tmp_path / "v", clock, old)
    visit = shop_with_markers(vault, T0)
    charge = vault.charge_for_visit(visit)
    assert charge is not None
    old_keyring = keyring_files(tmp_path / "v")[0][2]
    vault.rotate_master_key(new)
    assert not old_keyring.exists()
    assert vault.payment_token(charge.order_ref) == MARK_TOKEN
    vault.close()
    [(generation, master_id, _)] = keyring_files(tmp_path / "v")
    assert (generation, master_id) == (2, MasterKey(new).id)
    with pytest.raises(VaultKeyError):
        open_vault(tmp_path / "v", clock, old)
    vault = open_vault(tmp_path / "v", clock, new)
    assert vault.payment_token(charge.order_ref) == MARK_TOKEN
    assert [c.visit for c in vault.charges()] == [visit]
    verdict = vault.verify_audit()
    assert verdict.ok, verdict.problems
    rotated = [e for e in vault.audit_log.entries(kinds=["key.master_rotated"])]
    assert rotated and rotated[0].fields["previous"] == MasterKey(old).id
    vault.close()


def test_a_visit_s_expired_evidence_is_gone_from_the_file_its_wal_and_its_free_pages(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = open_vault(tmp_path / "v", clock, secrets.token_bytes(32))
    shop_with_markers(vault, T0)
    # Later the same day: a second visit whose evidence must survive the first one's deletion.
    clock.advance(6 * 3600)
    keep = vault.open_visit(entered_at=clock.now(), party=1, token=None, receipt_key=None)
    vault.add_cart_line(keep, CartChange(keep, "KEEP-SKU-3b7e", 1, 0.0, evidence(clock.now())))
    period = period_of("event_evidence", "day", T0)
    key = vault.files.key(period)
    assert key is not None
    path = vault.files.path(period)
    assert MARK_SKU.encode() in plaintext_of(path, key)

    clock.set(T0 + 30 * DAY - 60)
    vault.run_retention()
    assert vault.cart_lines(keep) and MARK_SKU.encode() in plaintext_of(path, key), "deleted before its time"

    clock.set(T0 + 30 * DAY + 3600)  # past the first visit's 30 days, before the second's and the key's end
    run = vault.run_retention()
    assert run.deleted.get("cart_lines") == 1 and run.deleted.get("review_items") == 1
    assert vault.files.key(period) == key, "the day's key must live until its last record expires"
    plain = plaintext_of(path, key)
    for marker in (MARK_SKU, MARK_SENSOR, MARK_NOTE):
        assert marker.encode() not in plain, f"{marker} still readable in the database or its WAL"
    assert b"KEEP-SKU-3b7e" in plain, "the kept record must still be there (the decryption works)"
    wal = path.with_name(path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL must be truncated after a run"
    assert [ln.sku for ln in vault.cart_lines(keep)] == ["KEEP-SKU-3b7e"]
    vault.close()


def test_an_old_backup_of_an_expired_period_cannot_be_decrypted(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    master = secrets.token_bytes(32)
    vault = open_vault(tmp_path / "v", clock, master)
    shop_with_markers(vault, T0)
    period = period_of("event_evidence", "day", T0)
    key = vault.files.key(period)
    assert key is not None
    vault.close()  # checkpoints the WAL, so the copy is a complete backup
    backup = tmp_path / "backup-2024-05-17.db"
    shutil.copy(tmp_path / "v" / "event_evidence" / "2024-05-17.db", backup)
    keyring_before = keyring_files(tmp_path / "v")[0][2]
    wrapped = sqlcipher3.connect(keyring_before)
    wrapped.execute(f"PRAGMA key = \"x'{MasterKey(master).keyring_key().hex()}'\"")
    wrapped_bytes = bytes(
        wrapped.execute("SELECT wrapped FROM period_keys WHERE id = ?", (period.key_id,)).fetchone()[0]
    )
    wrapped.close()

    clock.set(T0 + 31 * DAY + 3600)  # past the day's end + 30 days: the key is due
    vault = open_vault(tmp_path / "v", clock, master)
    run = vault.run_retention()
    assert period.key_id in run.keys_destroyed
    assert not vault.files.path(period).exists()
    assert vault.files.key(period) is None
    entry = vault.keyring.entry(period.key_id)
    assert entry is not None and entry.destroyed_at is not None
    # Nothing left on the box opens the backup: no live key of the vault does.
    for e in vault.keyring.entries():
        k = vault.keyring.key(e.id)
        if k is not None:
            with pytest.raises(VaultKeyError):
                open_database(backup, k, create=False)
    vault.close()
    # The wrapped key is gone from the keyring's pages too (overwritten, WAL truncated).
    keyring = keyring_files(tmp_path / "v")[0][2]
    assert wrapped_bytes not in plaintext_of(keyring, MasterKey(master).keyring_key())
    # ... while the backup really was readable with the key it had (so the test means something).
    conn = open_database(backup, key, create=False)
    assert conn.execute("SELECT count(*) FROM cart_lines").fetchone()[0] == 1
    conn.close()


def test_a_destroyed_token_is_gone_from_its_file_and_wal(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = open_vault(tmp_path / "v", clock, secrets.token_bytes(32))
    visit = shop_with_markers(vault, T0)
    charge = vault.charge_for_visit(visit)
    assert charge is not None
    period = period_of("payment_token", "day", T0)
    key = vault.files.key(period)
    assert key is not None
    conn = vault.files.connection(period)
    assert conn is not None
    sealed = bytes(conn.execute("SELECT token FROM payment_tokens").fetchone()[0])
    assert sealed in plaintext_of(vault.files.path(period), key)
    vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_1")
    vault.destroy_token(charge.order_ref)
    assert vault.payment_token(charge.order_ref) is None and vault.receipt_key(charge.order_ref) is None
    assert sealed not in plaintext_of(vault.files.path(period), key)
    vault.close()


def test_nothing_secret_reaches_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="appliance")
    clock = ManualClock(T0)
    master, new = secrets.token_bytes(32), secrets.token_bytes(32)
    rk = secrets.token_bytes(32)
    vault = open_vault(tmp_path / "v", clock, master)
    visit = vault.open_visit(entered_at=T0, party=1, token=MARK_TOKEN, receipt_key=rk)
    charge = vault.close_visit(
        visit, left_at=T0, lines=[ReceiptLine("a", "A", 1, 0.0, 100)], amount=100, currency="KRW"
    )
    vault.payment_token(charge.order_ref)
    vault.rotate_master_key(new)
    clock.set(T0 + 40 * DAY)
    vault.run_retention()
    secrets_seen = [MARK_TOKEN, master.hex(), new.hex(), rk.hex(), MasterKey(master).keyring_key().hex()]
    for key_id in (e.id for e in vault.keyring.entries()):
        k = vault.keyring.key(key_id)
        if k:
            secrets_seen.append(k.hex())
    vault.close()
    text = "\n".join(r.getMessage() for r in caplog.records) + repr([r.args for r in caplog.records])
    assert caplog.records, "the scenario should have logged something"
    for s in secrets_seen:
        assert s not in text


def test_the_vault_folder_is_private(tmp_path: Path) -> None:
    vault = open_vault(tmp_path / "v", ManualClock(T0), secrets.token_bytes(32))
    shop_with_markers(vault, T0)
    vault.close()
    assert (tmp_path / "v").stat().st_mode & 0o777 == 0o700
    for sub in ("event_evidence", "sales_record", "payment_token"):
        assert (tmp_path / "v" / sub).stat().st_mode & 0o077 == 0, sub
    assert os.stat(tmp_path / "v" / "vault.lock").st_mode & 0o077 == 0
