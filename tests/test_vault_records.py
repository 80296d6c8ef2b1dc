"""Visits, carts, review items, charges, tokens and refunds as the rest of the appliance uses them."""

from __future__ import annotations

import re
import secrets
from datetime import UTC, datetime
from pathlib import Path

import pytest

from appliance.events import CartChange, Evidence, ReceiptLine, ReviewItem
from appliance.vault import (
    CHARGE_STATES,
    ChargeStateError,
    ManualClock,
    RetentionPolicy,
    UnknownRecordError,
    Vault,
    charge_move_allowed,
)
from appliance.vault.periods import period_of

T0 = datetime(2024, 5, 17, 10, 30, 42, tzinfo=UTC).timestamp()
DAY = 86400.0
NONCE = "AAAAAAAAAAAAAAAAAAAAAA"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def vault(tmp_path: Path, clock: ManualClock):  # type: ignore[no-untyped-def]
    v = Vault.open(tmp_path / "v", secrets.token_bytes(32), RetentionPolicy.load(), clock)
    yield v
    v.close()


def ev(t: float = T0, confidence: float = 0.95) -> Evidence:
    return Evidence(t, ("g1.s1.p1", "g1.s1.p2"), -331.5, confidence, 0.9, "two plates")


def line(sku: str = "cola", amount: int = 1500, qty: int = 1) -> ReceiptLine:
    return ReceiptLine(sku, sku.title(), qty, 0.0, amount)


def enter(vault: Vault, token: str | None = "cus_1/pm_1", t: float = T0) -> str:
    return vault.open_visit(entered_at=t, party=1, token=token, receipt_key=None)


def test_a_shopper_s_visit_from_gate_to_charge(vault: Vault, clock: ManualClock) -> None:
    visit = vault.open_visit(entered_at=T0, party=2, token="cus_1/pm_1", receipt_key=b"\x07" * 32)
    assert re.fullmatch(r"[0-9a-f]{32}", visit) and NONCE not in visit
    vault.add_cart_line(visit, CartChange(visit, "cola", 1, 0.0, ev()))
    vault.add_cart_line(visit, CartChange(visit, "chips", 2, 0.0, ev()))
    vault.add_cart_line(visit, CartChange(visit, "chips", -1, 0.0, ev()))
    assert [(c.sku, c.qty) for c in vault.cart_lines(visit)] == [("cola", 1), ("chips", 2), ("chips", -1)]
    assert vault.cart_lines(visit)[0].evidence == Evidence(
        round(T0), ("g1.s1.p1", "g1.s1.p2"), -331.5, 0.95, 0.9, "two plates"
    )
    clock.advance(300)
    charge = vault.close_visit(
        visit, left_at=clock.now(), lines=[line("cola"), line("chips", 800)], amount=2300, currency="KRW"
    )
    assert charge.state == "pending" and charge.amount == 2300 and charge.currency == "KRW"
    assert charge.lines == (line("cola"), line("chips", 800))
    assert re.fullmatch(r"ord_[0-9a-f]{32}", charge.order_ref)
    assert re.fullmatch(r"[0-9a-f-]{36}", charge.idempotency_key)
    assert vault.charges(["pending"]) == [charge]
    assert vault.payment_token(charge.order_ref) == "cus_1/pm_1"
    assert vault.receipt_key(charge.order_ref) == b"\x07" * 32
    stored = vault.visit(visit)
    assert stored is not None and stored.state == "closed" and stored.party == 2
    assert stored.entered_at % 60 == 0 and stored.left_at is not None and stored.left_at % 60 == 0


def test_every_visit_order_reference_and_idempotency_key_is_new_and_random(vault: Vault) -> None:
    seen: set[str] = set()
    for _ in range(20):
        visit = enter(vault)
        charge = vault.close_visit(visit, left_at=T0, lines=[line()], amount=1500, currency="KRW")
        for value in (visit, charge.order_ref, charge.idempotency_key):
            assert value not in seen
            seen.add(value)
    assert len(seen) == 60


def test_closing_twice_returns_the_same_charge_and_never_a_second_one(vault: Vault) -> None:
    visit = enter(vault)
    first = vault.close_visit(visit, left_at=T0, lines=[line()], amount=1500, currency="KRW")
    again = vault.close_visit(visit, left_at=T0 + 60, lines=[line()], amount=1500, currency="KRW")
    assert again == first
    with pytest.raises(ChargeStateError, match="already closed with a different charge"):
        vault.close_visit(visit, left_at=T0, lines=[line(amount=1)], amount=1, currency="KRW")
    assert len(vault.charges()) == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"lines": [line(amount=1000)], "amount": 1500, "currency": "KRW"}, ValueError, "add up to 1000"),
        ({"lines": [line()], "amount": 1500, "currency": "krw"}, ValueError, "ISO 4217"),
        ({"lines": [], "amount": -1, "currency": "KRW"}, ValueError, ">= 0"),
        ({"lines": [line()], "amount": 1500.0, "currency": "KRW"}, ValueError, "whole number"),
    ],
)
def test_a_malformed_charge_is_refused_and_the_visit_stays_open(vault: Vault, kwargs, error, match) -> None:  # type: ignore[no-untyped-def]
    visit = enter(vault)
    with pytest.raises(error, match=match):
        vault.close_visit(visit, left_at=T0, **kwargs)
    v = vault.visit(visit)
    assert v is not None and v.state == "open" and vault.charges() == []


def test_an_empty_cart_closes_with_nothing_due_and_its_token_destroyed(vault: Vault) -> None:
    visit = enter(vault)
    charge = vault.close_visit(visit, left_at=T0, lines=[], amount=0, currency="KRW")
    assert charge.state == "none_due" and charge.final
    assert vault.payment_token(charge.order_ref) is None
    assert vault.charges(["pending"]) == []


def test_a_closed_cart_cannot_change(vault: Vault) -> None:
    visit = enter(vault)
    vault.close_visit(visit, left_at=T0, lines=[line()], amount=1500, currency="KRW")
    with pytest.raises(ChargeStateError, match="its cart can't change"):
        vault.add_cart_line(visit, CartChange(visit, "cola", 1, 0.0, ev()))
    with pytest.raises(UnknownRecordError, match="no visit"):
        vault.add_cart_line("f" * 32, CartChange("f" * 32, "cola", 1, 0.0, ev()))
    with pytest.raises(ValueError, match="is for visit"):
        vault.add_cart_line(visit, CartChange("other", "cola", 1, 0.0, ev()))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"entered_at": float("nan"), "party": 1, "token": None, "receipt_key": None}, "finite"),
        ({"entered_at": T0, "party": 0, "token": None, "receipt_key": None}, "party"),
        ({"entered_at": T0, "party": 11, "token": None, "receipt_key": None}, "party"),
        ({"entered_at": T0, "party": 1, "token": "", "receipt_key": None}, "token"),
        ({"entered_at": T0, "party": 1, "token": "x" * 256, "receipt_key": None}, "token"),
        ({"entered_at": T0, "party": 1, "token": None, "receipt_key": b"short"}, "receipt_key"),
    ],
)
def test_a_malformed_visit_is_refused_with_what_was_wrong(vault: Vault, kwargs, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        vault.open_visit(**kwargs)


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        ("pending", "succeeded", True),
        ("pending", "declined", True),
        ("pending", "requires_action", True),
        ("pending", "failed", True),
        ("pending", "pending", True),
        ("requires_action", "succeeded", True),
        ("requires_action", "failed", True),
        ("requires_action", "pending", False),
        ("succeeded", "pending", False),
        ("succeeded", "failed", False),
        ("succeeded", "succeeded", True),
        ("declined", "pending", False),
        ("declined", "succeeded", False),
        ("failed", "pending", False),
        ("failed", "succeeded", False),
        ("none_due", "pending", False),
        ("pending", "refunded", False),
        ("bogus", "succeeded", False),
    ],
)
def test_the_charge_life_cycle(current: str, new: str, allowed: bool) -> None:
    assert charge_move_allowed(current, new) is allowed


def test_a_final_charge_never_goes_back_to_pending_and_keeps_its_key(vault: Vault) -> None:
    visit = enter(vault)
    charge = vault.close_visit(visit, left_at=T0, lines=[line()], amount=1500, currency="KRW")
    vault.set_charge_state(charge.order_ref, "requires_action", error_code="authentication_required")
    with pytest.raises(ChargeStateError, match="cannot become 'pending'"):
        vault.set_charge_state(charge.order_ref, "pending")
    vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_123")
    vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_123")  # a repeated write is harmless
    with pytest.raises(ChargeStateError):
        vault.set_charge_state(charge.order_ref, "declined")
    final = vault.charge(charge.order_ref)
    assert final is not None
    assert (final.state, final.processor_ref, final.idempotency_key) == ("succeeded", "pi_123", charge.idempotency_key)
    assert final.state_label == CHARGE_STATES["succeeded"]
    assert [e.fields["state"] for e in vault.audit_log.entries(kinds=["charge.state"])] == [
        "requires_action",
        "succeeded",
    ]
    with pytest.raises(UnknownRecordError):
        vault.set_charge_state("ord_" + "0" * 32, "succeeded")
    with pytest.raises(ValueError, match="error_code"):
        vault.set_charge_state(charge.order_ref, "succeeded", error_code="Card declined for Mr Smith")


def test_the_outbox_finds_pending_charges_and_destroys_tokens_once_final(vault: Vault) -> None:
    refs = []
    for i in range(3):
        visit = enter(vault, token=f"cus_{i}/pm_{i}")
        refs.append(vault.close_visit(visit, left_at=T0, lines=[line()], amount=1500, currency="KRW").order_ref)
    vault.set_charge_state(refs[0], "succeeded", processor_ref="pi_0")
    vault.destroy_token(refs[0])
    vault.destroy_token(refs[0])  # idempotent
    assert [c.order_ref for c in vault.charges(["pending"])] == refs[1:]
    assert vault.payment_token(refs[0]) is None
    assert vault.payment_token(refs[1]) == "cus_1/pm_1"
    assert len([e for e in vault.audit_log.entries(kinds=["token.destroyed"])]) == 1
    assert vault.final_charges_with_tokens() == []
    vault.set_charge_state(refs[1], "declined", error_code="card_declined")
    assert vault.final_charges_with_tokens() == [refs[1]]


def test_a_review_item_waits_for_a_person_and_is_decided_once(vault: Vault, clock: ManualClock) -> None:
    visit = enter(vault)
    first = vault.add_review_item(visit, ReviewItem(visit, "low_confidence", (("cola", 1), ("pepsi", 1)), ev()))
    clock.advance(DAY)  # the next day's file: ids stay unique and findable
    second = vault.add_review_item(visit, ReviewItem(visit, "two_people", (("chips", 1),), ev()))
    assert first != second
    items = vault.open_review_items()
    assert [(i.id, i.reason, i.candidates) for i in items] == [
        (first, "low_confidence", (("cola", 1), ("pepsi", 1))),
        (second, "two_people", (("chips", 1),)),
    ]
    vault.resolve_review_item(first, accepted=True, sku="cola", qty=1)
    vault.resolve_review_item(second, accepted=False, sku=None, qty=0)
    assert vault.open_review_items() == []
    with pytest.raises(ChargeStateError, match="already accepted"):
        vault.resolve_review_item(first, accepted=False, sku=None, qty=0)
    with pytest.raises(UnknownRecordError):
        vault.resolve_review_item(first + 1000, accepted=False, sku=None, qty=0)
    with pytest.raises(ValueError, match="sku and a non-zero quantity"):
        vault.resolve_review_item(first, accepted=True, sku=None, qty=1)
    with pytest.raises(ValueError, match="short code"):
        vault.add_review_item(visit, ReviewItem(visit, "the man in the red coat", (), ev()))


def test_the_box_withdraws_or_amends_an_open_review_item_whose_units_came_back(
        vault: Vault, clock: ManualClock) -> None:
    visit = enter(vault)
    first = vault.add_review_item(visit, ReviewItem(visit, "who_took_it", (("cola", 1),), ev()))
    clock.advance(DAY)  # the next day's file: a visit's items are found across files, in order
    second = vault.add_review_item(visit, ReviewItem(visit, "which_product", (("chips", 2), ("crisps", 2)), ev()))
    vault.withdraw_review_item(first)
    assert [i.id for i in vault.open_review_items()] == [second]  # the owner page no longer lists it
    vault.amend_review_item(second, (("chips", 1),))
    vault.amend_review_item(second, (("chips", 1),))  # again, as a box replaying after a restart: no change
    assert [(i.id, i.candidates) for i in vault.open_review_items()] == [(second, (("chips", 1),))]
    assert vault.review_item_ids(visit) == [first, second] and vault.review_item_ids(enter(vault)) == []
    audited = [(e.kind, e.fields) for e in vault.audit_log.entries(kinds=["review.withdrawn", "review.amended"])]
    assert audited == [
        ("review.withdrawn", {"visit": visit, "item": first, "reason": "returned_to_shelf"}),
        ("review.amended", {"visit": visit, "item": second, "reason": "returned_to_shelf"}),
    ]
    for refused in (lambda: vault.withdraw_review_item(first), lambda: vault.amend_review_item(first, (("cola", 1),)),
                    lambda: vault.resolve_review_item(first, accepted=True, sku="cola", qty=1)):
        with pytest.raises(ChargeStateError, match="already withdrawn"):
            refused()
    vault.resolve_review_item(second, accepted=True, sku="chips", qty=1)
    with pytest.raises(ChargeStateError, match="already accepted"):
        vault.withdraw_review_item(second)
    for unknown in (second + 1000, 0, (99 << 32) | 1):
        with pytest.raises(UnknownRecordError):
            vault.withdraw_review_item(unknown)
    with pytest.raises(ValueError, match="withdraw it"):
        vault.amend_review_item(second, ())
    with pytest.raises(ValueError, match="above 0"):
        vault.amend_review_item(second, (("chips", 0),))
    with pytest.raises(ValueError, match="short code"):
        vault.withdraw_review_item(second, reason="the unit is back")
    assert vault.verify_audit().ok


def test_refunds_of_a_line_and_of_the_rest_of_the_visit(vault: Vault) -> None:
    visit = enter(vault)
    charge = vault.close_visit(
        visit, left_at=T0, lines=[line("cola", 1500), line("chips", 800, qty=2)], amount=2300, currency="KRW"
    )
    with pytest.raises(ChargeStateError, match="only a paid charge"):
        vault.record_refund(charge.order_ref, amount=100)
    vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_9")
    r1 = vault.record_refund(charge.order_ref, amount=400, sku="chips", qty=1, reason="not_taken")
    assert (r1.state, r1.sku, r1.qty, r1.amount) == ("pending", "chips", 1, 400)
    with pytest.raises(ChargeStateError, match="more than is left of line"):
        vault.record_refund(charge.order_ref, amount=500, sku="chips", qty=1)
    with pytest.raises(UnknownRecordError, match="not on the receipt"):
        vault.record_refund(charge.order_ref, amount=10, sku="beer", qty=1)
    assert vault.refundable(charge.order_ref) == 1900
    whole = vault.record_refund(charge.order_ref, amount=1900, reason="goodwill")
    with pytest.raises(ChargeStateError, match="more than the 0 left"):
        vault.record_refund(charge.order_ref, amount=1)
    vault.set_refund_state(r1.id, "succeeded", processor_ref="re_1")
    vault.set_refund_state(whole.id, "failed", error_code="processor_error")
    with pytest.raises(ChargeStateError):
        vault.set_refund_state(whole.id, "pending")
    assert vault.refundable(charge.order_ref) == 1900  # a failed refund gives its amount back
    assert [(r.id, r.state) for r in vault.refunds(charge.order_ref)] == [(r1.id, "succeeded"), (whole.id, "failed")]
    assert [r.id for r in vault.refunds(states=["succeeded"])] == [r1.id]
    assert r1.idempotency_key != whole.idempotency_key


def test_a_refund_months_later_keeps_the_month_s_key_for_its_own_five_years(vault: Vault, clock: ManualClock) -> None:
    visit = enter(vault)
    charge = vault.close_visit(visit, left_at=T0, lines=[line()], amount=1500, currency="KRW")
    vault.set_charge_state(charge.order_ref, "succeeded")
    period = period_of("sales_record", "month", T0)
    before = vault.keyring.entry(period.key_id)
    assert before is not None and before.destroy_after is not None
    clock.advance(90 * DAY)
    refund = vault.record_refund(charge.order_ref, amount=100)
    after = vault.keyring.entry(period.key_id)
    assert after is not None and after.destroy_after is not None
    assert after.destroy_after > before.destroy_after
    assert after.destroy_after >= vault.policy.retention("sales_record").after(refund.created_at)


def test_the_audit_log_takes_only_declared_fields_and_no_free_text(vault: Vault) -> None:
    vault.audit("visit.flagged", visit="ab12", count=3, accepted=True)
    with pytest.raises(Exception, match="not declared in the policy"):
        vault.audit("visit.flagged", email="a@b.c")
    with pytest.raises(Exception, match="not free text"):
        vault.audit("visit.flagged", reason="shopper said her name is Kim")
    with pytest.raises(Exception, match="short lower-case code"):
        vault.audit("Visit Flagged!", visit="ab12")
    with pytest.raises(Exception, match="number, a flag or an id"):
        vault.audit("visit.flagged", count=[1, 2])


def test_the_vault_s_own_audit_entries_never_hold_a_token_or_order_reference(vault: Vault) -> None:
    visit = vault.open_visit(entered_at=T0, party=1, token="cus_SECRET/pm_SECRET", receipt_key=b"\x01" * 32)
    charge = vault.close_visit(visit, left_at=T0, lines=[line()], amount=1500, currency="KRW")
    vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_1")
    vault.destroy_token(charge.order_ref)
    vault.record_refund(charge.order_ref, amount=100)
    bodies = " ".join(repr(e.fields) for e in vault.audit_log.entries())
    assert "SECRET" not in bodies and charge.order_ref not in bodies and charge.idempotency_key not in bodies
    assert visit in bodies


def test_a_closed_vault_refuses_every_call_with_a_clear_error(tmp_path: Path, clock: ManualClock) -> None:
    vault = Vault.open(tmp_path / "c", secrets.token_bytes(32), RetentionPolicy.load(), clock)
    visit = enter(vault)
    vault.close()
    vault.close()  # closing twice is harmless
    for call in (
        lambda: vault.visit(visit),
        lambda: vault.charges(),
        lambda: vault.open_review_items(),
        lambda: enter(vault),
        lambda: vault.audit("visit.flagged", visit=visit),
        lambda: vault.run_retention(),
    ):
        with pytest.raises(Exception, match="the vault is closed"):
            call()
