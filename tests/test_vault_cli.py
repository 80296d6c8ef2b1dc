"""The commands an owner and an auditor run, and where the master key may (and may not) come from."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from appliance.cli import main
from appliance.vault import ManualClock, RetentionPolicy, Vault, VaultKeyError
from appliance.vault.keys import MasterKey
from appliance.vault.keysource import (
    CREDENTIALS_ENV,
    find_key_source,
    load_master_key,
    next_key_path,
    parse_key,
    read_key_file,
    write_key_file,
)


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CREDENTIALS_ENV, raising=False)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def box(tmp_path: Path, capsys: pytest.CaptureFixture[str], no_credentials: None) -> list[str]:
    """An initialised development vault; returns the --folder/--key-file arguments."""
    where = ["--folder", str(tmp_path / "vault"), "--key-file", str(tmp_path / "keys" / "master.key")]
    code, out, _ = run(capsys, "vault", "init", *where)
    assert code == 0 and "created a new vault" in out
    return where


def test_init_makes_an_owner_only_key_file_and_a_private_vault(
    tmp_path: Path, box: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "keys" / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "vault").stat().st_mode & 0o777 == 0o700
    code, out, _ = run(capsys, "vault", "init", *box)
    assert code == 0 and "opened the existing vault" in out
    assert MasterKey(read_key_file(key_file)).id in out


def test_verify_and_report_pass_on_a_fresh_vault(box: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "audit", "verify", *box)
    assert code == 0 and out.startswith("audit log intact")
    code, out, _ = run(capsys, "audit", "report", *box)
    assert code == 0 and "No violations." in out and "DATA INVENTORY" in out
    code, out, _ = run(capsys, "audit", "report", "--json", *box)
    data = json.loads(out)
    assert code == 0 and data["ok"] is True and data["violations"] == []
    assert {c["name"] for c in data["policy"]} >= {"payment_token", "frames_and_tracks"}


def test_the_report_exits_1_on_a_violation(tmp_path: Path, box: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "vault" / "dump.sql").write_text("-- a plaintext export left on the box\n")
    code, out, _ = run(capsys, "audit", "report", "--json", *box)
    data = json.loads(out)
    assert code == 1 and data["ok"] is False
    assert [v["code"] for v in data["violations"]] == ["unexpected_file"]


def test_verify_exits_1_and_names_the_entry_when_the_log_was_altered(
    tmp_path: Path, box: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    key = read_key_file(tmp_path / "keys" / "master.key")
    vault = Vault.open(tmp_path / "vault", key, RetentionPolicy.load(), ManualClock(1.7e9))
    vault.audit("visit.flagged", visit="ab", count=1)
    vault.audit_connection.execute("UPDATE entries SET body = replace(body, '\"count\":1', '\"count\":7')")
    vault.close()
    code, _, err = run(capsys, "audit", "verify", *box)
    assert code == 1 and "FAILED" in err and "entry 2 was modified" in err


def test_exported_checkpoints_are_extended_and_must_come_from_this_box(
    tmp_path: Path, box: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "offbox" / "checkpoints.json"
    exported.parent.mkdir()
    code, out, _ = run(capsys, "audit", "export", *box, str(exported))
    assert code == 0 and "1 new checkpoint" in out
    run(capsys, "vault", "retention", *box)
    code, out, _ = run(capsys, "audit", "export", *box, str(exported))
    assert code == 0 and "in all" in out
    assert len(json.loads(exported.read_text())["checkpoints"]) >= 2
    code, out, _ = run(capsys, "audit", "verify", "--against", str(exported), *box)
    assert code == 0 and "exported)" in out
    other = ["--folder", str(tmp_path / "other"), "--key-file", str(tmp_path / "keys" / "other.key")]
    run(capsys, "vault", "init", *other)
    code, _, err = run(capsys, "audit", "verify", "--against", str(exported), *other)
    assert code == 1 and "signed by box key" in err
    code, _, err = run(capsys, "audit", "export", *other, str(exported))
    assert code == 1 and "another box" in err


def test_rotating_a_development_key_file(tmp_path: Path, box: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "keys" / "master.key"
    before = read_key_file(key_file)
    code, out, _ = run(capsys, "vault", "rotate-master-key", *box)
    after = read_key_file(key_file)
    assert code == 0 and before != after and MasterKey(after).id in out
    assert not next_key_path(key_file).exists() and key_file.stat().st_mode & 0o777 == 0o600
    code, out, _ = run(capsys, "audit", "verify", *box)
    assert code == 0
    with pytest.raises(VaultKeyError):
        Vault.open(tmp_path / "vault", before, RetentionPolicy.load(), ManualClock(1.7e9))


def test_retention_and_a_store_toml_with_relative_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_credentials: None
) -> None:
    (tmp_path / "store.toml").write_text(
        """version = 1
[store]
name = "t"
currency = "KRW"
timezone = "Asia/Seoul"
[floor]
size = [4.0, 4.0]
entry = [[0.0, 0.0], [1.0, 0.0]]
exit = [[0.0, 0.0], [1.0, 0.0]]
[[products]]
sku = "a"
price = 1000
unit_g = 100.0
[vault]
folder = "data/vault"
key_file = "dev.key"
evidence_days = 20
"""
    )
    cfg = ["--config", str(tmp_path / "store.toml")]
    assert run(capsys, "vault", "init", *cfg)[0] == 0
    assert (tmp_path / "data" / "vault").is_dir() and (tmp_path / "dev.key").exists()
    code, out, _ = run(capsys, "vault", "retention", *cfg)
    assert code == 0 and "retention: deleted nothing" in out
    code, out, _ = run(capsys, "audit", "report", *cfg)
    assert code == 0 and "Event evidence [event_evidence]: kept 20 days" in out


def test_commands_on_a_missing_vault_say_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_credentials: None
) -> None:
    code, _, err = run(capsys, "audit", "report", "--folder", str(tmp_path / "none"), "--key-file", "k")
    assert code == 1 and "no vault in" in err and "appliance vault init" in err


def test_bench_vault_prints_its_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "bench", "vault", "--lines", "3000", "--durable", "20", "--chunk", "500", "--workdir", str(tmp_path)
    )
    assert code == 0
    figures = [ln for ln in out.splitlines() if ln.startswith("vault bench:")]
    assert len(figures) == 4
    assert "lines/s" in figures[0] and "lines/s" in figures[1]
    assert "retention run over 3,020 expired cart lines" in figures[2] and "3,020 rows deleted" in figures[2]
    assert list(tmp_path.iterdir()) == [], "the scratch vault must be removed"


# ----------------------------------------------------------------------------------- key sources


class RecordingEnviron(Mapping[str, str]):
    """A real environment mapping that remembers which names were read."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self._values[key]

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        self.read.add(key)
        return self._values.get(key, default)

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the key loader must not scan the environment")

    def __len__(self) -> int:
        return len(self._values)


def test_a_key_in_the_environment_is_never_used(tmp_path: Path) -> None:
    env = RecordingEnviron({"VAULT_MASTER_KEY": secrets.token_hex(32), "MASTER_KEY": secrets.token_hex(32)})
    with pytest.raises(VaultKeyError, match="no master key"):
        find_key_source("vault-master-key", "", env)
    assert env.read == {CREDENTIALS_ENV}


def test_the_systemd_credential_is_preferred_and_required_once_provided(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    write_key_file(creds / "vault-master-key", secrets.token_bytes(32))
    write_key_file(tmp_path / "dev.key", secrets.token_bytes(32))
    source = find_key_source("vault-master-key", tmp_path / "dev.key", {CREDENTIALS_ENV: str(creds)})
    assert source.kind == "credential" and source.path == creds / "vault-master-key"
    with pytest.raises(VaultKeyError, match="LoadCredentialEncrypted=other"):
        find_key_source("other", tmp_path / "dev.key", {CREDENTIALS_ENV: str(creds)})


def test_init_with_a_systemd_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    key = secrets.token_bytes(32)
    (creds / "vault-master-key").write_bytes(key)
    os.chmod(creds / "vault-master-key", 0o400)
    monkeypatch.setenv(CREDENTIALS_ENV, str(creds))
    code, out, _ = run(capsys, "vault", "init", "--folder", str(tmp_path / "v"))
    assert code == 0 and "systemd credential" in out and MasterKey(key).id in out
    code, _, err = run(capsys, "vault", "rotate-master-key", "--folder", str(tmp_path / "v"))
    assert code == 1 and "--new-key-file" in err


@pytest.mark.parametrize(
    ("content", "ok"),
    [
        (bytes(range(32)), True),
        ((secrets.token_hex(32) + "\n").encode(), True),
        (secrets.token_hex(32).upper().encode(), True),
        (secrets.token_hex(31).encode(), False),
        (b"z" * 64, False),
        (b"", False),
        (b"0" * 64, False),  # 32 zero bytes: a placeholder, not a key
    ],
)
def test_a_key_file_holds_32_random_bytes_raw_or_hex(content: bytes, ok: bool) -> None:
    if ok:
        assert len(parse_key(content, "k")) == 32
    else:
        with pytest.raises(VaultKeyError):
            parse_key(content, "k")


def test_a_key_file_others_can_read_or_a_link_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "k"
    write_key_file(path, secrets.token_bytes(32))
    os.chmod(path, 0o640)
    with pytest.raises(VaultKeyError, match="chmod 600"):
        read_key_file(path)
    os.chmod(path, 0o600)
    (tmp_path / "link").symlink_to(path)
    with pytest.raises(VaultKeyError, match="regular file"):
        read_key_file(tmp_path / "link")
    with pytest.raises(VaultKeyError, match="never overwritten"):
        write_key_file(path, secrets.token_bytes(32))
    if os.geteuid() == 0:
        os.chown(path, 4242, 4242)
        with pytest.raises(VaultKeyError, match="belongs to user id 4242"):
            read_key_file(path)


def test_a_rotation_that_committed_but_crashed_is_finished_when_the_key_is_next_loaded(tmp_path: Path) -> None:
    key_file = tmp_path / "master.key"
    old, new = secrets.token_bytes(32), secrets.token_bytes(32)
    write_key_file(key_file, old)
    vault = Vault.open(tmp_path / "v", old, RetentionPolicy.load(), ManualClock(1.7e9))
    write_key_file(next_key_path(key_file), new)
    # Not rotated yet: the staged key is left alone, the current one still opens the vault.
    assert load_master_key("vault-master-key", key_file, tmp_path / "v", {}) == old
    vault.rotate_master_key(new)
    vault.close()
    assert load_master_key("vault-master-key", key_file, tmp_path / "v", {}) == new
    assert read_key_file(key_file) == new and not next_key_path(key_file).exists()
