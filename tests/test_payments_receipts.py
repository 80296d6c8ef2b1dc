"""Itemised receipts sealed to the pass's rk: only the shopper's app opens them; the processor relays bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.cli import main
from appliance.events import Receipt, ReceiptLine
from appliance.gate.passes import b64url_encode
from appliance.gate.sealed import SealError, open_sealed, public_bytes, seal
from appliance.payments.gateway import ChargeRequest, new_idempotency_key, new_order_ref
from appliance.payments.receipts import (
    CHUNK,
    PREFIX,
    ReceiptError,
    format_receipt,
    open_receipt,
    receipt_document,
    receipt_from_metadata,
    receipt_metadata,
    seal_receipt,
)
from appliance.payments.sandbox_server import SandboxProcessor
from appliance.payments.stripe_gateway import StripeGateway

LINES = (
    ReceiptLine("8801234000017", "Banana milk 240 ml", 2, 0.0, 3000),
    ReceiptLine("8801234000024", "Mixed nuts", 0, 182.4, 4560),
    ReceiptLine("8801234000031", "김밥 (tuna)", 1, 0.0, 3500),
)
RECEIPT = Receipt(visit="v-internal-7f3a", entered=1750000000.4, left=1750000420.9, currency="KRW", lines=LINES)


def a_document(lines: tuple[ReceiptLine, ...] = LINES) -> dict[str, object]:
    receipt = Receipt(RECEIPT.visit, RECEIPT.entered, RECEIPT.left, RECEIPT.currency, lines)
    return receipt_document(receipt, shop="Corner Shop", timezone="Asia/Seoul", order_ref="OrderRef123456789012")


@pytest.fixture
def shopper() -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes(range(100, 132)))


def test_the_shoppers_key_opens_the_itemised_receipt(shopper: X25519PrivateKey) -> None:
    text = seal_receipt(a_document(), public_bytes(shopper))
    assert text.startswith(PREFIX)
    document = open_receipt(text, shopper)
    assert document == {
        "v": 1,
        "shop": "Corner Shop",
        "tz": "Asia/Seoul",
        "order_ref": "OrderRef123456789012",
        "currency": "KRW",
        "entered": 1750000000,
        "left": 1750000420,
        "lines": [
            {"sku": "8801234000017", "name": "Banana milk 240 ml", "qty": 2, "amount": 3000},
            {"sku": "8801234000024", "name": "Mixed nuts", "grams": 182.4, "amount": 4560},
            {"sku": "8801234000031", "name": "김밥 (tuna)", "qty": 1, "amount": 3500},
        ],
        "total": 11060,
    }
    assert "v-internal-7f3a" not in json.dumps(document)  # no store-internal visit id


def test_nothing_of_the_receipt_is_readable_without_the_key(shopper: X25519PrivateKey) -> None:
    text = seal_receipt(a_document(), public_bytes(shopper))
    for clear in ("Banana", "Mixed", "8801234", "11060", "Corner", "OrderRef"):
        assert clear not in text
    with pytest.raises(ReceiptError, match="does not open"):
        open_receipt(text, X25519PrivateKey.generate())


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda t: t[:-6] + ("AAAAAA" if not t.endswith("AAAAAA") else "BBBBBB"), "does not open"),
        (lambda t: t.replace(PREFIX, "WR2."), "starts with"),
        (lambda t: t[: len(PREFIX) + 20], "at least"),
        (lambda t: PREFIX + "@@@", "base64url"),
    ],
    ids=["tampered", "wrong format", "truncated", "not base64url"],
)
def test_a_damaged_receipt_is_a_clear_error(shopper: X25519PrivateKey, damage, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ReceiptError, match=message):
        open_receipt(damage(seal_receipt(a_document(), public_bytes(shopper))), shopper)


def test_a_seed_makes_the_same_receipt_twice_and_a_different_one_for_other_content(shopper: X25519PrivateKey) -> None:
    """Retries must send identical parameters (same idempotency key), so the sealed receipt must not change."""
    rk, seed = public_bytes(shopper), bytes(range(32))
    assert seal_receipt(a_document(), rk, seed=seed) == seal_receipt(a_document(), rk, seed=seed)
    assert seal_receipt(a_document(), rk) != seal_receipt(a_document(), rk)
    other = seal_receipt(a_document(LINES[:2]), rk, seed=seed)
    assert other[: len(PREFIX) + 44] != seal_receipt(a_document(), rk, seed=seed)[: len(PREFIX) + 44]
    assert open_receipt(other, shopper)["total"] == 7560


def test_the_length_shows_only_roughly_how_long_the_receipt_is(shopper: X25519PrivateKey) -> None:
    rk = public_bytes(shopper)
    lengths = {len(seal_receipt(a_document(LINES[:n]), rk)) for n in (1, 2, 3)}
    assert len(lengths) == 1


def test_a_low_order_receipt_key_cannot_be_used(shopper: X25519PrivateKey) -> None:
    with pytest.raises(ReceiptError, match="not usable"):
        seal_receipt(a_document(), bytes(32))


def test_sealing_is_bound_to_its_purpose(shopper: X25519PrivateKey) -> None:
    sealed = seal(public_bytes(shopper), b"hello", "one purpose")
    assert open_sealed(shopper, sealed, "one purpose") == b"hello"
    with pytest.raises(SealError):
        open_sealed(shopper, sealed, "another purpose")


def test_a_long_receipt_travels_in_chunks_of_stripe_metadata(shopper: X25519PrivateKey) -> None:
    many = tuple(ReceiptLine(f"88{i:011d}", f"Item number {i} with a long name", 1, 0.0, 100 + i) for i in range(300))
    text = seal_receipt(a_document(many), public_bytes(shopper))
    chunks = receipt_metadata(text)
    assert len(chunks) > 1 and all(len(v) <= CHUNK for v in chunks.values())
    assert receipt_from_metadata({"order_ref": "x", **chunks}) == text
    assert receipt_from_metadata({"order_ref": "x"}) is None


def test_a_receipt_too_long_for_the_metadata_is_refused(shopper: X25519PrivateKey) -> None:
    rng = __import__("random").Random(1)
    huge = tuple(ReceiptLine(str(rng.getrandbits(64)), b64url_encode(rng.randbytes(60)), 1, 0.0, 1) for i in range(800))
    with pytest.raises(ReceiptError, match="at most"):
        seal_receipt(a_document(huge), public_bytes(shopper))


def test_the_processor_relays_the_receipt_and_the_app_opens_it(sandbox: SandboxProcessor, shopper) -> None:  # type: ignore[no-untyped-def]
    text = seal_receipt(a_document(), public_bytes(shopper), seed=b"s" * 32)
    charge = ChargeRequest(new_order_ref(), "cus_demo/pm_card_visa", 11060, "KRW", new_idempotency_key(), text)
    gateway = StripeGateway("sk_test_box", sandbox.url)
    ref = gateway.charge(charge).processor_ref
    assert gateway.charge(charge).replayed  # the same sealed receipt on a retry: the same parameters
    intent = sandbox.ledger.get(f"/v1/payment_intents/{ref}", []).body
    assert open_receipt(receipt_from_metadata(intent["metadata"]) or "", shopper)["total"] == 11060


def test_the_receipt_command_shows_what_the_app_would(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key_file = tmp_path / "rk.key"
    assert main(["receipt", "new-key", "--out", str(key_file)]) == 0
    rk_text = capsys.readouterr().out.strip()
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    from appliance.config import decode_b64url

    text = seal_receipt(a_document(), decode_b64url(rk_text))
    (tmp_path / "receipt.txt").write_text(text)
    assert main(["receipt", "open", "--key", str(key_file), str(tmp_path / "receipt.txt")]) == 0
    shown = capsys.readouterr().out
    assert "Corner Shop" in shown and "Banana milk 240 ml  x2  3000 KRW" in shown and "total 11060 KRW" in shown
    assert "2025-06-16 00:13 KST" in shown
    assert main(["receipt", "open", "--key", str(key_file), "--json", text]) == 0
    assert json.loads(capsys.readouterr().out)["total"] == 11060
    (tmp_path / "other.key").write_text(b64url_encode(bytes(range(32))))
    assert main(["receipt", "open", "--key", str(tmp_path / "other.key"), text]) == 1
    assert "cannot open the receipt" in capsys.readouterr().err
    assert main(["receipt", "new-key", "--out", str(key_file)]) == 1  # never overwrites a key


def test_the_plain_text_receipt_lists_lines_and_total() -> None:
    shown = format_receipt(a_document())
    assert shown.splitlines()[-1] == "total 11060 KRW"
    assert "Mixed nuts  182.4 g  4560 KRW" in shown
