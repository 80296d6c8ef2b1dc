"""Itemised receipts sealed to the shopper's receipt key (`rk`), so the processor relays them unread.

Format "WR1" (what the processor carries, and what `appliance receipt open` reads):

    text      = "WR1." + sealed                       (sealed: appliance.gate.sealed, version 1,
                                                       label "walkout receipt v1", to the pass's rk)
    plaintext = length (4 bytes, big-endian) | zlib(JSON document) | zero bytes up to a multiple
                of 256, so the size shows only roughly how long the receipt is
    document  = {"v": 1, "shop": name, "tz": IANA zone, "order_ref": ..., "currency": "KRW",
                 "entered": unix s, "left": unix s,
                 "lines": [{"sku", "name", "qty" or "grams", "amount"}, ...], "total": minor units}

Only the holder of the rk private key (the shopper's app) can read it. The document carries no
visit id, no position, and no line held back for review. On a Stripe charge the text travels in
the PaymentIntent's metadata as `receipt_0`, `receipt_1`, ... (500 characters each, Stripe's
limit per value), which `receipt_from_metadata` joins again.
"""

from __future__ import annotations

import datetime
import json
import struct
import zlib
import zoneinfo
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.events import Receipt
from appliance.gate.sealed import SealError, open_sealed, seal

PREFIX = "WR1."
LABEL = "walkout receipt v1"
PAD_TO = 256
CHUNK = 500
MAX_CHUNKS = 40
MAX_DOCUMENT_BYTES = 1 << 20


class ReceiptError(ValueError):
    """A receipt that cannot be sealed (bad key, too long) or read (wrong key, damaged, wrong format)."""


def receipt_document(receipt: Receipt, *, shop: str, timezone: str, order_ref: str) -> dict[str, Any]:
    """The shopper's itemised receipt for one charge, as plain data (before sealing)."""
    return {
        "v": 1,
        "shop": shop,
        "tz": timezone,
        "order_ref": order_ref,
        "currency": receipt.currency,
        "entered": int(receipt.entered),
        "left": int(receipt.left),
        "lines": [line.as_json() for line in receipt.lines],
        "total": receipt.total,
    }


def seal_receipt(document: Mapping[str, Any], rk: bytes, *, seed: bytes | None = None) -> str:
    """Seal a receipt document to the pass's rk; the "WR1." text.

    Args:
        document: from `receipt_document`.
        rk: the pass's raw 32-byte X25519 public key.
        seed: a secret the box keeps for this charge; when given, sealing the same document again
            (a retry with the same idempotency key) gives the same text, as the processor requires.

    Raises:
        ReceiptError: the key is unusable or the receipt does not fit in the metadata.
    """
    body = zlib.compress(json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8"), 9)
    plain = struct.pack(">I", len(body)) + body
    plain += b"\0" * (-len(plain) % PAD_TO)
    try:
        text = PREFIX + seal(rk, plain, LABEL, seed=seed)
    except SealError as err:
        raise ReceiptError(f"cannot seal the receipt: {err}") from err
    if len(text) > CHUNK * MAX_CHUNKS:
        raise ReceiptError(f"the sealed receipt is {len(text)} characters; at most {CHUNK * MAX_CHUNKS} fit")
    return text


def open_receipt(text: str, private_key: X25519PrivateKey) -> dict[str, Any]:
    """What the shopper's app does: open a "WR1." receipt with the rk private key."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise ReceiptError(f"a receipt starts with {PREFIX!r}")
    try:
        plain = open_sealed(private_key, text[len(PREFIX) :], LABEL)
    except SealError as err:
        raise ReceiptError(str(err)) from err
    if len(plain) < 4:
        raise ReceiptError("the receipt is empty")
    (n,) = struct.unpack(">I", plain[:4])
    if n > len(plain) - 4 or any(plain[4 + n :]):
        raise ReceiptError("the receipt's length or padding is damaged")
    try:
        raw = zlib.decompressobj().decompress(plain[4 : 4 + n], MAX_DOCUMENT_BYTES)
        document = json.loads(raw.decode("utf-8"))
    except (zlib.error, ValueError) as err:
        raise ReceiptError("the receipt's content is damaged") from err
    if not isinstance(document, dict) or document.get("v") != 1:
        raise ReceiptError("unknown receipt document version")
    return document


def receipt_metadata(text: str) -> dict[str, str]:
    """Split a receipt into Stripe metadata values (`receipt_0`, `receipt_1`, ...)."""
    return {f"receipt_{i}": text[j : j + CHUNK] for i, j in enumerate(range(0, len(text), CHUNK))}


def receipt_from_metadata(metadata: Mapping[str, str]) -> str | None:
    """Join a receipt split by `receipt_metadata`; None when the charge carried none."""
    parts: list[str] = []
    while f"receipt_{len(parts)}" in metadata:
        parts.append(metadata[f"receipt_{len(parts)}"])
    return "".join(parts) or None


def format_receipt(document: Mapping[str, Any]) -> str:
    """The receipt as the app would show it, as plain text lines."""
    currency = document.get("currency", "")
    out = [str(document.get("shop", "")), f"order {document.get('order_ref', '')}"]
    left = document.get("left")
    if isinstance(left, int):
        try:
            zone: datetime.tzinfo = zoneinfo.ZoneInfo(str(document.get("tz", "UTC")))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            zone = datetime.UTC
        out.append(datetime.datetime.fromtimestamp(left, zone).strftime("%Y-%m-%d %H:%M %Z"))
    for line in document.get("lines", []):
        what = f"{line.get('grams')} g" if "grams" in line else f"x{line.get('qty')}"
        out.append(f"  {line.get('name') or line.get('sku')}  {what}  {line.get('amount')} {currency}")
    out.append(f"total {document.get('total')} {currency}")
    return "\n".join(out)
