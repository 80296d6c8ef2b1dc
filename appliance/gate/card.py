"""Card entry: a card tapped on the gate terminal becomes an entry pass that only this box accepts.

Shoppers without the payment app tap a bank card on the gate's terminal. The terminal (a device
next to the gate, like the scanner) asks the payment processor for a reusable token of that card
and hands it to the box sealed to the box's tap key (`appliance.gate.sealed`), so no payment data
crosses MQTT in clear and a token read off the network cannot be replayed. The box opens it and
signs an ordinary WO1 pass with its own in-memory issuer key: issuer `box-card`, the token, a
locally random nonce, party 1, a short lifetime. From there the pass takes exactly the path of a
scanned one: the same verification, replay cache, counters, entry event and outbox.

Both keys live only in this process's memory; a restart makes new ones (the gate link republishes
the tap key), so a tap sealed to an old key is simply refused as malformed.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.gate.passes import SKEW_S, PassError, ReplayCache, b64url_encode, issue_pass
from appliance.gate.sealed import SealError, open_sealed, public_bytes, seal

logger = logging.getLogger(__name__)

CARD_ISSUER = "box-card"
TAP_LABEL = "walkout card tap v1"
TAP_MAX_AGE_S = 60
CARD_PASS_LIFETIME_S = 120
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


@dataclass(frozen=True, slots=True)
class CardTap:
    """What the terminal seals for the box: the processor's token, a tap nonce and the tap time."""

    tok: str
    nonce: str
    at_ms: int

    def __post_init__(self) -> None:
        if not 1 <= len(self.tok) <= 255:
            raise ValueError("tok must be 1-255 characters")
        if not _NONCE.fullmatch(self.nonce):
            raise ValueError("nonce must be 16-64 base64url characters")

    def __repr__(self) -> str:
        return f"CardTap(nonce={self.nonce!r}, at_ms={self.at_ms}, tok=<hidden>)"


def seal_tap(tap_key: bytes, tok: str, now: float, nonce: str | None = None) -> str:
    """The terminal's side: seal a processor token to the box's tap key (raw X25519, 32 bytes)."""
    tap = CardTap(tok, nonce or b64url_encode(secrets.token_bytes(16)), round(now * 1000))
    body = json.dumps({"tok": tap.tok, "nonce": tap.nonce, "at": tap.at_ms}, separators=(",", ":"))
    return seal(tap_key, body.encode(), TAP_LABEL)


def _read_tap(raw: bytes) -> CardTap:
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as err:
        raise PassError("malformed", "the card tap is not UTF-8 JSON") from err
    if not isinstance(obj, dict):
        raise PassError("malformed", "the card tap must be a JSON object")
    tok, nonce, at = obj.get("tok"), obj.get("nonce"), obj.get("at")
    if not isinstance(tok, str) or not isinstance(nonce, str) or isinstance(at, bool) or not isinstance(at, int):
        raise PassError("malformed", "the card tap needs tok and nonce strings and an integer at")
    try:
        return CardTap(tok, nonce, at)
    except ValueError as err:
        raise PassError("malformed", f"the card tap is malformed: {err}") from err


class CardDesk:
    """The box's side of card entry: opens sealed taps and signs box-card passes.

    Args:
        issuer: the issuer id of the passes it signs; must not be a configured issuer.
    """

    def __init__(self, issuer: str = CARD_ISSUER) -> None:
        self.issuer = issuer
        self._signing = Ed25519PrivateKey.generate()
        self._tap_key = X25519PrivateKey.generate()
        self._taps = ReplayCache()

    @property
    def public_key(self) -> bytes:
        """The raw Ed25519 key that verifies this desk's passes (give it to the GateKeeper)."""
        return self._signing.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    @property
    def tap_key(self) -> bytes:
        """The raw X25519 key terminals seal taps to (published to the gates)."""
        return public_bytes(self._tap_key)

    def pass_for(self, sealed: str, now: float) -> str:
        """Turn one sealed tap into a pass; raises PassError with the spec's codes.

        A tap that does not open is `malformed`; one from more than SKEW_S ahead is `not_yet_valid`;
        one older than TAP_MAX_AGE_S is `expired`; a tap nonce seen before is `replayed`.
        """
        try:
            raw = open_sealed(self._tap_key, sealed, TAP_LABEL)
        except SealError as err:
            raise PassError("malformed", f"the card tap does not open: {err}") from err
        tap = _read_tap(raw)
        at = tap.at_ms / 1000.0
        if at > now + SKEW_S:
            raise PassError("not_yet_valid", "the card tap is from the future")
        if now - at >= TAP_MAX_AGE_S:
            raise PassError("expired", "the card tap is too old")
        if not self._taps.claim(tap.nonce, int(at) + TAP_MAX_AGE_S + 1, now):
            raise PassError("replayed", "this card tap was already used")
        iat = int(now)
        payload = {
            "iss": self.issuer,
            "tok": tap.tok,
            "iat": iat,
            "exp": iat + CARD_PASS_LIFETIME_S,
            "nonce": b64url_encode(secrets.token_bytes(16)),
            "party": 1,
        }
        return issue_pass(self._signing, payload)
