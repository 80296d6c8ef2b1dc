"""The retention policy: durations, bounds, owner choices, and the schema declared column by column."""

from __future__ import annotations

import dataclasses
import secrets
import tomllib
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.config import ConfigError, parse_config
from appliance.config.model import VaultSettings
from appliance.events import CartChange, Evidence, ReceiptLine, ReviewItem
from appliance.vault import ManualClock, PolicyError, RetentionPolicy, Vault
from appliance.vault.opening import policy_for
from appliance.vault.periods import key_destroy_time, period_from_label, period_of
from appliance.vault.policy import Duration, default_policy_path, is_expired, parse_policy
from appliance.vault.schema import table_columns

T0 = datetime(2024, 5, 17, 10, 30, tzinfo=UTC).timestamp()
FORBIDDEN = {
    "name_of_shopper",
    "customer",
    "customer_id",
    "email",
    "e_mail",
    "phone",
    "card",
    "card_number",
    "pan",
    "face",
    "image",
    "frame",
    "photo",
    "x",
    "y",
    "z",
    "position",
    "pos",
    "track",
    "track_id",
    "hand",
    "pass",
    "pass_text",
    "nonce",
    "ip",
    "address",
}


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("12h", Duration(12, "h")), ("30d", Duration(30, "d")), ("5y", Duration(5, "y")), (" 7d ", Duration(7, "d"))],
)
def test_durations_read_hours_days_and_years(text: str, expected: Duration) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize("text", ["", "0d", "7", "7w", "-1d", "1.5d", "d7", "100000d", "7 d"])
def test_a_malformed_duration_is_refused_with_the_expected_form(text: str) -> None:
    with pytest.raises(ValueError, match="12h, 30d or 5y"):
        Duration.parse(text)


@pytest.mark.parametrize(
    ("stored", "duration", "expires"),
    [
        (ts(2024, 5, 17, 10, 30), "30d", ts(2024, 6, 16, 10, 30)),
        (ts(2024, 5, 17, 10, 30), "12h", ts(2024, 5, 17, 22, 30)),
        (ts(2024, 5, 17, 10, 30), "5y", ts(2029, 5, 17, 10, 30)),
        (ts(2024, 2, 29, 8, 0), "5y", ts(2029, 3, 1, 8, 0)),  # leap day: the later day, never cut short
        (ts(2024, 2, 29, 8, 0), "4y", ts(2028, 2, 29, 8, 0)),
        (ts(2023, 12, 31, 23, 59), "1y", ts(2024, 12, 31, 23, 59)),
    ],
)
def test_a_record_expires_exactly_its_retention_after_it_was_stored(
    stored: float, duration: str, expires: float
) -> None:
    assert Duration.parse(duration).after(stored) == expires


@given(
    now=st.integers(min_value=1_000_000_000, max_value=2_500_000_000),
    duration=st.sampled_from(["1h", "7d", "30d", "1y", "5y", "10y"]),
)
def test_the_latest_expired_second_is_exactly_the_edge_of_what_is_due(now: int, duration: str) -> None:
    d = Duration.parse(duration)
    s = d.latest_expired(now)
    assert d.after(s) <= now < d.after(s + 1)


@given(
    stored=st.integers(min_value=1_000_000_000, max_value=2_000_000_000),
    now=st.integers(min_value=1_000_000_000, max_value=2_500_000_000),
    duration=st.sampled_from(["12h", "7d", "30d", "5y"]),
)
def test_the_engine_s_cutoff_deletes_exactly_the_expired_records(stored: int, now: int, duration: str) -> None:
    """The SQL cutoff (stored_at <= latest_expired) and the record-level rule agree on every record."""
    d = Duration.parse(duration)
    assert is_expired(stored, d, now) == (stored <= d.latest_expired(now))


@pytest.mark.parametrize(
    ("stored", "duration", "now", "expired"),
    [
        (ts(2024, 5, 17, 10, 30), "30d", ts(2024, 6, 16, 10, 29), False),
        (ts(2024, 5, 17, 10, 30), "30d", ts(2024, 6, 16, 10, 30), True),
        (ts(2024, 2, 29, 0, 0), "1y", ts(2025, 2, 28, 23, 59), False),
        (ts(2024, 2, 29, 0, 0), "1y", ts(2025, 3, 1, 0, 0), True),
        (ts(2024, 5, 17), "7d", ts(2024, 5, 17), False),
    ],
)
def test_a_record_is_expired_from_the_moment_its_retention_ends(
    stored: float, duration: str, now: float, expired: bool
) -> None:
    assert is_expired(stored, Duration.parse(duration), now) is expired


def test_the_shipped_policy_declares_every_class_with_purpose_basis_and_bounds() -> None:
    policy = RetentionPolicy.load()
    names = {c.name for c in policy.classes}
    assert {"payment_token", "event_evidence", "sales_record", "audit_log", "key_inventory"} <= names
    assert {"frames_and_tracks", "entry_passes", "shopper_identity"} <= names
    for c in policy.classes:
        assert c.purpose and c.legal_basis and c.ends, c.name
        if c.storage == "period":
            assert c.minimum and c.maximum and c.retention, c.name
            assert c.minimum.nominal_s <= c.retention.nominal_s <= c.maximum.nominal_s
    assert policy.retention("payment_token") == Duration(7, "d")
    assert policy.record_class("payment_token").maximum == Duration(7, "d")
    assert policy.retention("event_evidence") == Duration(30, "d")
    assert policy.retention("sales_record") == Duration(5, "y")
    assert not policy.record_class("frames_and_tracks").stored
    assert policy.recipients and all("processor" in r for r in policy.recipients)


def test_store_config_bounds_are_exactly_the_policy_bounds() -> None:
    """The [vault] schema's min/max must not drift from policy/retention.toml."""
    policy = RetentionPolicy.load()
    fields = {f.name: f for f in dataclasses.fields(VaultSettings)}
    for name, c in policy.settings.items():
        meta = fields[name].metadata
        assert c.minimum is not None and c.maximum is not None
        assert (meta["min"], meta["max"]) == (c.minimum.amount, c.maximum.amount), name
        assert fields[name].default == c.retention.amount if c.retention else False, name
        assert meta["unit"] == c.minimum.unit, name


@pytest.mark.parametrize(
    ("choices", "problem"),
    [
        ({"token_days": 8}, "token_days: 8 days is outside"),
        ({"token_days": 0}, "token_days: expected a positive"),
        ({"evidence_days": 13}, "evidence_days: 13 days is outside"),
        ({"evidence_days": 121}, "evidence_days: 121 days is outside"),
        ({"sales_years": 4}, "sales_years: 4 years is outside"),
        ({"audit_years": 11}, "audit_years: 11 years is outside"),
        ({"frames_days": 1}, "frames_days: not a retention setting"),
    ],
)
def test_an_owner_cannot_choose_a_retention_outside_the_policy(choices: dict[str, int], problem: str) -> None:
    with pytest.raises(PolicyError, match=problem):
        RetentionPolicy.load().choose(choices)


def test_an_owner_choice_within_bounds_changes_only_that_class() -> None:
    policy = RetentionPolicy.load().choose({"evidence_days": 60, "token_days": 1})
    assert policy.retention("event_evidence") == Duration(60, "d")
    assert policy.retention("payment_token") == Duration(1, "d")
    assert policy.retention("sales_record") == Duration(5, "y")
    assert policy_for(VaultSettings(evidence_days=45)).retention("event_evidence") == Duration(45, "d")


def _minimal_config(vault: str) -> dict[str, object]:
    text = f"""
version = 1
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
{vault}
"""
    return tomllib.loads(text)


@pytest.mark.parametrize(
    ("vault", "problem"),
    [
        (
            'master_key = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"',
            "vault.master_key: unknown",
        ),
        ('key = "secret"', "vault.key: unknown key"),
        ("evidence_days = 365", "vault.evidence_days: 365"),
        ("token_days = 30", "vault.token_days: 30"),
        ("sales_years = 1", "vault.sales_years: 1"),
    ],
)
def test_the_store_configuration_holds_no_key_and_no_retention_outside_the_bounds(vault: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_minimal_config(vault))
    assert problem in str(err.value)


def test_a_configuration_within_the_bounds_is_accepted() -> None:
    cfg = parse_config(_minimal_config('evidence_days = 60\nkey_file = "dev.key"'))
    assert cfg.vault.evidence_days == 60 and cfg.vault.key_file == "dev.key"


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        (lambda r: r["classes"]["event_evidence"].update(retention="200d"), "outside its own bounds"),
        (lambda r: r["classes"]["event_evidence"].update(retention="30x"), "12h, 30d or 5y"),
        (lambda r: r["classes"]["event_evidence"].update(key_period="week"), "must be day or month"),
        (lambda r: r["classes"]["event_evidence"]["tables"]["cart_lines"]["columns"].pop("stored_at"), "stored_at"),
        (lambda r: r["classes"]["event_evidence"].update(colour="red"), "colour: unknown key"),
        (lambda r: r["classes"]["frames_and_tracks"].update(stored=True), "storage = none"),
        (lambda r: r["classes"]["sales_record"].update(setting="sales_days"), "counts in d"),
        (lambda r: r["classes"]["payment_token"].update(purpose=""), "purpose: required"),
        (lambda r: r.update(version=2), "version: must be 1"),
    ],
)
def test_a_broken_policy_file_is_refused_with_every_problem_named(patch, problem: str) -> None:  # type: ignore[no-untyped-def]
    raw = tomllib.loads(default_policy_path().read_text())
    patch(raw)
    with pytest.raises(PolicyError, match=problem):
        parse_policy(raw, "test")


@pytest.mark.parametrize(
    ("unit", "t", "label", "start", "end"),
    [
        ("day", ts(2024, 5, 17, 10, 30), "2024-05-17", ts(2024, 5, 17), ts(2024, 5, 18)),
        ("day", ts(2024, 12, 31, 23, 59, 59), "2024-12-31", ts(2024, 12, 31), ts(2025, 1, 1)),
        ("month", ts(2024, 2, 29, 12), "2024-02", ts(2024, 2, 1), ts(2024, 3, 1)),
        ("month", ts(2024, 12, 15), "2024-12", ts(2024, 12, 1), ts(2025, 1, 1)),
    ],
)
def test_a_record_goes_into_the_utc_day_or_month_it_was_stored_in(
    unit: str, t: float, label: str, start: float, end: float
) -> None:
    p = period_of("c", unit, t)  # type: ignore[arg-type]
    assert (p.label, p.start, p.end) == (label, start, end)
    assert period_from_label("c", unit, label) == p  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("unit", "label"), [("day", "2024-02-30"), ("day", "2024-05"), ("month", "2024-13"), ("month", "x")]
)
def test_a_file_name_that_is_not_a_period_is_refused(unit: str, label: str) -> None:
    with pytest.raises(ValueError, match="does not name"):
        period_from_label("c", unit, label)  # type: ignore[arg-type]


def test_a_period_key_dies_one_retention_after_the_period_ends() -> None:
    p = period_of("event_evidence", "day", ts(2024, 5, 17, 10))
    assert key_destroy_time(p, Duration(30, "d")) == ts(2024, 6, 17)
    m = period_of("sales_record", "month", ts(2024, 2, 10))
    assert key_destroy_time(m, Duration(5, "y")) == ts(2029, 3, 1)


def _vault_with_every_table(tmp_path: Path) -> Vault:
    clock = ManualClock(T0)
    vault = Vault.open(tmp_path / "v", secrets.token_bytes(32), RetentionPolicy.load(), clock)
    visit = vault.open_visit(
        entered_at=T0, party=2, token="tok_x", receipt_key=secrets.token_bytes(32),
        pass_nonce="AAAAAAAAAAAAAAAAAAAAAA", pass_expires=T0 + 300,
    )
    ev = Evidence(T0, ("s1",), -300.0, 0.9, 0.9, "")
    vault.add_cart_line(visit, CartChange(visit, "a", 1, 0.0, ev))
    vault.add_review_item(visit, ReviewItem(visit, "low_confidence", (("a", 1),), ev))
    charge = vault.close_visit(
        visit, left_at=T0 + 60, lines=[ReceiptLine("a", "A", 1, 0.0, 500)], amount=500, currency="KRW"
    )
    vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_1")
    vault.record_refund(charge.order_ref, amount=100, reason="goodwill")
    vault.run_retention()
    return vault


def _files_schema(vault: Vault) -> dict[str, dict[str, tuple[str, ...]]]:
    out: dict[str, dict[str, tuple[str, ...]]] = {
        "audit_log": table_columns(vault.audit_connection),
        "key_inventory": table_columns(vault.keyring.connection),
    }
    for c in vault.files.period_classes():
        for period in vault.files.live_periods(c.name):
            conn = vault.files.connection(period)
            assert conn is not None
            for table, cols in table_columns(conn).items():
                out.setdefault(c.name, {})[table] = cols
    return out


def test_every_column_on_disk_is_declared_in_the_policy_and_every_declared_column_exists(tmp_path: Path) -> None:
    """The schema, enumerated from the files themselves, must match policy/retention.toml exactly."""
    vault = _vault_with_every_table(tmp_path)
    try:
        found = _files_schema(vault)
        policy = vault.policy
        for record_class, tables in found.items():
            declared = {t.name: set(t.column_names) for t in policy.record_class(record_class).tables}
            for table, columns in tables.items():
                assert table in declared, f"table {table} in {record_class} files is not declared in policy/"
                undeclared = set(columns) - declared[table]
                assert not undeclared, f"{record_class}.{table}: columns {undeclared} are not declared in policy/"
                assert declared[table] - set(columns) == set(), f"{record_class}.{table}: declared but absent"
            assert set(declared) == set(tables), f"{record_class}: declared tables absent from its files"
        stored = {c.name for c in policy.classes if c.stored}
        assert set(found) == stored
    finally:
        vault.close()


def test_the_schema_test_would_catch_an_undeclared_column(tmp_path: Path) -> None:
    """Pins the guard itself: a column added behind the policy's back is found."""
    vault = _vault_with_every_table(tmp_path)
    try:
        period = vault.files.live_periods("event_evidence")[0]
        conn = vault.files.connection(period)
        assert conn is not None
        conn.execute("ALTER TABLE cart_lines ADD COLUMN shopper_face BLOB")
        declared = set(vault.policy.record_class("event_evidence").table("cart_lines").column_names)
        assert "shopper_face" in set(_files_schema(vault)["event_evidence"]["cart_lines"]) - declared
    finally:
        vault.close()


def test_no_stored_table_can_hold_names_cards_faces_images_positions_tracks_or_passes(tmp_path: Path) -> None:
    vault = _vault_with_every_table(tmp_path)
    try:
        for tables in _files_schema(vault).values():
            for table, cols in tables.items():
                assert not FORBIDDEN & set(cols), f"{table} has a column for data the box must never store"
        for c in vault.policy.classes:
            for t in c.tables:
                assert not FORBIDDEN & set(t.column_names), t.name
        for field in vault.policy.audit_fields:
            assert field.name not in FORBIDDEN | {"token", "order_ref", "key", "secret"}, field.name
    finally:
        vault.close()
