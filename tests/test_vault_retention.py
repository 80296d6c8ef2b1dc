"""The retention engine and the auditor's report: records go when the policy says, and every lapse is reported."""

from __future__ import annotations

import secrets
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.events import CartChange, Evidence, ReceiptLine, ReviewItem
from appliance.vault import ManualClock, RetentionPolicy, Vault
from appliance.vault.periods import period_of
from appliance.vault.report import build_report, render_text
from appliance.vault.schedule import RetentionSchedule

T0 = datetime(2024, 5, 17, 10, 30, tzinfo=UTC).timestamp()
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
GRACE = 2 * HOUR


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def ev(t: float) -> Evidence:
    return Evidence(t, ("g1.s1.p1",), -330.0, 0.95, 0.9, "")


def line(amount: int = 1500) -> ReceiptLine:
    return ReceiptLine("cola", "Cola", 1, 0.0, amount)


def make_vault(tmp_path: Path, clock: ManualClock, choices: dict[str, int] | None = None, **kw: int) -> Vault:
    policy = RetentionPolicy.load().choose(choices or {})
    return Vault.open(tmp_path / "v", secrets.token_bytes(32), policy, clock, **kw)  # type: ignore[arg-type]


def full_visit(vault: Vault, t: float, *, paid: bool = True) -> tuple[str, str]:
    visit = vault.open_visit(entered_at=t, party=1, token="cus_1/pm_1", receipt_key=None)
    vault.add_cart_line(visit, CartChange(visit, "cola", 1, 0.0, ev(t)))
    vault.add_review_item(visit, ReviewItem(visit, "low_confidence", (("cola", 1),), ev(t)))
    charge = vault.close_visit(visit, left_at=t, lines=[line()], amount=1500, currency="KRW")
    if paid:
        vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_1")
        vault.destroy_token(charge.order_ref)
        vault.record_refund(charge.order_ref, amount=100)
    return visit, charge.order_ref


def counts(vault: Vault) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in vault.files.period_classes():
        for t in c.tables:
            out[t.name] = 0
            for period in vault.files.live_periods(c.name):
                conn = vault.files.connection(period)
                if conn is not None:
                    out[t.name] += conn.execute(f"SELECT count(*) FROM {t.name}").fetchone()[0]
    return out


@pytest.mark.parametrize(
    ("tables", "kept_until"),
    [
        (("cart_lines", "review_items"), ts(2024, 6, 16, 10, 30)),  # 30 days
        (("visits", "charges", "charge_lines", "refunds"), ts(2029, 5, 17, 10, 30)),  # 5 calendar years
    ],
)
def test_records_are_kept_until_their_declared_time_and_gone_right_after(
    tmp_path: Path, tables: tuple[str, ...], kept_until: float
) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    full_visit(vault, T0)
    clock.set(kept_until - MINUTE)
    vault.run_retention()
    assert all(counts(vault)[t] == 1 for t in tables), counts(vault)
    clock.set(kept_until + MINUTE)
    run = vault.run_retention()
    after = counts(vault)
    assert all(after[t] == 0 for t in tables), after
    assert all(run.deleted.get(t) == 1 for t in tables), run.deleted
    vault.close()


def test_an_unpaid_token_is_destroyed_after_seven_days_and_its_charge_fails(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    _, ref = full_visit(vault, T0, paid=False)
    clock.set(T0 + 7 * DAY - MINUTE)
    vault.run_retention()
    assert vault.payment_token(ref) == "cus_1/pm_1"
    clock.set(T0 + 7 * DAY + MINUTE)
    run = vault.run_retention()
    assert run.charges_failed == 1 and run.deleted["payment_tokens"] == 1
    assert vault.payment_token(ref) is None
    charge = vault.charge(ref)
    assert charge is not None and (charge.state, charge.error_code) == ("failed", "token_expired")
    vault.close()


def test_a_token_the_outbox_forgot_to_destroy_goes_at_the_next_run(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    _, ref = full_visit(vault, T0, paid=False)
    vault.set_charge_state(ref, "declined", error_code="card_declined")
    run = vault.run_retention()
    assert run.tokens_destroyed == 1 and vault.payment_token(ref) is None
    vault.close()


def test_an_owner_s_shorter_dispute_window_is_honoured(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock, {"evidence_days": 14})
    full_visit(vault, T0)
    clock.set(T0 + 14 * DAY + MINUTE)
    vault.run_retention()
    assert counts(vault)["cart_lines"] == 0 and counts(vault)["visits"] == 1
    vault.close()


@pytest.mark.parametrize(
    ("record_class", "now", "destroyed"),
    [
        ("event_evidence", ts(2024, 6, 16, 23, 59), False),  # the last record of the day is not due yet
        ("event_evidence", ts(2024, 6, 17, 0, 1), True),
        ("payment_token", ts(2024, 5, 24, 23, 59), False),
        ("payment_token", ts(2024, 5, 25, 0, 1), True),
        ("sales_record", ts(2029, 5, 31, 23, 0), False),
        ("sales_record", ts(2029, 6, 1, 0, 1), True),
    ],
)
def test_a_period_key_is_destroyed_once_everything_in_its_period_has_expired(
    tmp_path: Path, record_class: str, now: float, destroyed: bool
) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    full_visit(vault, T0, paid=False)
    unit = vault.policy.record_class(record_class).key_period
    assert unit is not None
    period = period_of(record_class, unit, T0)
    clock.set(now)
    run = vault.run_retention()
    assert (period.key_id in run.keys_destroyed) is destroyed
    assert (vault.files.key(period) is None) is destroyed
    assert vault.files.path(period).exists() is not destroyed
    assert vault.verify_audit().ok
    vault.close()


def test_a_large_deletion_goes_in_chunks_and_each_run_is_audited(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock, chunk_rows=7)
    visit = vault.open_visit(entered_at=T0, party=1, token=None, receipt_key=None)
    vault.add_cart_lines(visit, [CartChange(visit, f"sku{i}", 1, 0.0, ev(T0)) for i in range(50)])
    clock.set(T0 + 30 * DAY + HOUR)
    run = vault.run_retention()
    assert run.deleted == {"cart_lines": 50}
    deleted = [e.fields for e in vault.audit_log.entries(kinds=["retention.deleted"])]
    assert deleted == [{"run": 1, "table": "cart_lines", "count": 50}]
    finished = [e.fields for e in vault.audit_log.entries(kinds=["retention.finished"])]
    assert finished[0]["count"] == 50
    vault.close()


def test_audit_entries_expire_to_their_hashes_and_the_log_still_verifies(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock, {"audit_years": 1})
    visit, _ = full_visit(vault, T0)
    clock.set(ts(2025, 5, 17, 12, 0))
    run = vault.run_retention()
    assert run.audit_bodies_pruned >= 5
    bodies = " ".join(repr(e.fields) for e in vault.audit_log.entries())
    assert visit not in bodies
    verdict = vault.verify_audit()
    assert verdict.ok and verdict.pruned == run.audit_bodies_pruned
    vault.close()


def test_files_no_key_can_open_are_removed(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    full_visit(vault, T0)
    stray = tmp_path / "v" / "event_evidence" / "2020-01-01.db"  # e.g. an old backup restored into place
    stray.write_bytes(secrets.token_bytes(8192))
    assert stray in vault.files.orphans()
    run = vault.run_retention()
    assert run.orphan_files_removed == 1 and not stray.exists()
    vault.close()


def test_a_crashed_run_is_reported_interrupted_at_the_next_open(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    key = secrets.token_bytes(32)
    vault = Vault.open(tmp_path / "v", key, RetentionPolicy.load(), clock)
    vault.audit_connection.execute(
        "INSERT INTO retention_runs(started_at, finished_at, status, summary) VALUES (?, NULL, 'running', '{}')",
        (int(T0),),
    )
    vault.close()
    vault = Vault.open(tmp_path / "v", key, RetentionPolicy.load(), clock)
    opened = list(vault.audit_log.entries(kinds=["vault.opened"]))
    assert opened[-1].fields["interrupted"] == 1
    report = build_report(vault, grace_s=GRACE)
    assert any("interrupted" in n for n in report.notices)
    vault.close()


def test_the_retention_schedule_runs_at_start_and_stops_promptly(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    full_visit(vault, T0)
    clock.set(T0 + 31 * DAY + HOUR)
    schedule = RetentionSchedule(vault, interval_s=3600.0)
    schedule.start()
    assert schedule.wait_for_runs(1, timeout=60)
    schedule.stop()
    assert schedule.last_run is not None and schedule.last_error == ""
    assert "event_evidence/2024-05-17" in schedule.last_run.keys_destroyed
    assert schedule.runs == 1
    vault.close()


# ----------------------------------------------------------------------------------- the report


def test_a_well_kept_vault_reports_no_violation(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    full_visit(vault, T0)
    vault.run_retention()
    report = build_report(vault, grace_s=GRACE)
    assert report.ok, report.violations
    text = render_text(report)
    assert "No violations." in text and "never stored" in text and "Camera frames" in text
    tables = {t.name: t for t in report.tables}
    assert tables["cart_lines"].rows == 1 and tables["cart_lines"].by_age["under 1 day"] == 1
    assert tables["charges"].limit == "5y" and tables["charges"].oldest_stored_at == int(T0 // 60 * 60)
    assert all(c.declared for t in report.tables for c in t.columns)
    data = report.as_json()
    assert {k["id"] for k in data["keys"]} >= {"event_evidence/2024-05-17", "sales_record/2024-05"}
    assert "wrapped" not in repr(data["keys"])
    vault.close()


def _violations(vault: Vault) -> set[str]:
    return {v.code for v in build_report(vault, grace_s=GRACE).violations}


def test_records_past_their_limit_and_keys_past_their_time_are_violations(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    full_visit(vault, T0)
    vault.run_retention()
    clock.set(T0 + 30 * DAY + GRACE + HOUR)  # the engine was not run: the evidence is overdue
    assert {"kept_too_long", "retention_not_running"} <= _violations(vault)
    clock.set(T0 + 32 * DAY)
    assert "key_not_destroyed" in _violations(vault)
    vault.run_retention()
    assert _violations(vault) == set()
    vault.close()


def test_a_token_kept_after_its_charge_was_final_is_a_violation(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    _, ref = full_visit(vault, T0, paid=False)
    vault.set_charge_state(ref, "succeeded", processor_ref="pi_1")
    clock.advance(GRACE + HOUR)
    assert "token_kept" in _violations(vault)
    vault.destroy_token(ref)
    assert "token_kept" not in _violations(vault)
    vault.close()


def test_an_undeclared_column_a_stray_export_or_a_plain_database_is_a_violation(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    full_visit(vault, T0)
    vault.run_retention()
    conn = vault.files.connection(period_of("sales_record", "month", T0))
    assert conn is not None
    conn.execute("ALTER TABLE visits ADD COLUMN email TEXT")
    (tmp_path / "v" / "visits-export.csv").write_text("id,email\n")
    sqlite3.connect(tmp_path / "v" / "sales_record" / "copy.db").execute("CREATE TABLE t(a)").connection.commit()
    found = {(v.code, v.message.split(" ")[0]) for v in build_report(vault, grace_s=GRACE).violations}
    assert ("undeclared_column", "column") in found
    codes = {c for c, _ in found}
    assert {"undeclared_column", "unexpected_file", "plaintext_file"} <= codes
    vault.close()


def test_a_vault_with_more_period_files_than_it_keeps_open_still_reports_and_lists(tmp_path: Path) -> None:
    """Regression: the report held a connection per file while opening more, and the oldest got closed."""
    clock = ManualClock(T0)
    vault = make_vault(tmp_path, clock)
    for _ in range(26):  # the vault keeps 24 files open
        visit = vault.open_visit(entered_at=clock.now(), party=1, token=None, receipt_key=None)
        vault.close_visit(visit, left_at=clock.now(), lines=[line()], amount=1500, currency="KRW")
        clock.advance(31 * DAY)
    assert len(vault.files.live_periods("sales_record")) == 26
    assert len(vault.charges()) == 26
    vault.run_retention()
    report = build_report(vault, grace_s=GRACE)
    assert {t.name: t.rows for t in report.tables}["charges"] == 26
    assert {t.name: t.files for t in report.tables}["charges"] == 26
    vault.close()
