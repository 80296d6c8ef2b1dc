"""Entry passes (shared/spec/entry-pass.md): strict offline verification, and issuing for tests.

Verification runs the spec's steps in order (shape, issuer and signature, time, replay) and
every failure carries its own code. Base64url text must be canonical: a string that decodes to
the same bytes as the signed one but differs in a character is rejected, so a single changed
character never passes.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

PREFIX = "WO1"
MAX_LEN = 1024
MAX_LIFETIME_S = 600
SKEW_S = 30
CODES = ("malformed", "unknown_issuer", "bad_signature", "not_yet_valid", "expired", "replayed")

_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class PassError(ValueError):
    """A pass the gate must refuse; `code` is one of CODES."""

    def __init__(self, code: str, detail: str) -> None:
        if code not in CODES:
            raise ValueError(f"unknown pass error code {code!r}")
        self.code = code
        super().__init__(detail)


@dataclass(frozen=True, slots=True)
class PassClaims:
    """The verified content of a pass. `tok` is secret: never log it or store it in clear."""

    iss: str
    tok: str
    iat: int
    exp: int
    nonce: str
    party: int = 1
    rk: bytes | None = None
    ch: bytes | None = None

    def __repr__(self) -> str:
        return f"PassClaims(iss={self.iss!r}, nonce={self.nonce!r}, party={self.party}, tok=<hidden>)"


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode_canonical(text: str, what: str) -> bytes:
    """Decode unpadded base64url, refusing any other alphabet, padding or non-canonical tail bits."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise PassError("malformed", f"{what} is not unpadded base64url")
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if b64url_encode(data) != text:
        raise PassError("malformed", f"{what} is not canonical base64url")
    return data


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise PassError("malformed", f"payload repeats the field {key!r}")
        out[key] = value
    return out


def _int(payload: dict[str, Any], key: str, default: int | None = None) -> int:
    value = payload.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PassError("malformed", f"{key} must be an integer")
    return value


def _key32(payload: dict[str, Any], key: str) -> bytes | None:
    if key not in payload:
        return None
    value = payload[key]
    if not isinstance(value, str):
        raise PassError("malformed", f"{key} must be a base64url string")
    raw = b64url_decode_canonical(value, key)
    if len(raw) != 32:
        raise PassError("malformed", f"{key} must encode 32 bytes, got {len(raw)}")
    return raw


def _encodable(text: str) -> bool:
    # JSON may escape lone surrogates (\ud800) that no UTF-8 encoder accepts; such a token
    # would pass here and then crash the vault or the charge request.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _split(text: str) -> tuple[str, str, str]:
    if not isinstance(text, str) or len(text) > MAX_LEN:
        raise PassError("malformed", f"a pass is text of at most {MAX_LEN} characters")
    parts = text.split(".")
    if len(parts) != 3 or parts[0] != PREFIX:
        raise PassError("malformed", "a pass is WO1.<payload>.<signature>")
    return parts[0], parts[1], parts[2]


def parse_pass_unchecked(text: str) -> PassClaims:
    """Step 1 only: shape, base64url, JSON object, field types and ranges. No signature check."""
    _, payload_b64, sig_b64 = _split(text)
    raw = b64url_decode_canonical(payload_b64, "payload")
    if len(b64url_decode_canonical(sig_b64, "signature")) != 64:
        raise PassError("malformed", "the signature must be 64 bytes")
    try:
        payload = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise PassError("malformed", "payload is not UTF-8 JSON") from err
    if not isinstance(payload, dict):
        raise PassError("malformed", "payload must be a JSON object")
    iss, tok, nonce = payload.get("iss"), payload.get("tok"), payload.get("nonce")
    if not isinstance(iss, str) or not iss:
        raise PassError("malformed", "iss must be a non-empty string")
    if not isinstance(tok, str) or not 1 <= len(tok) <= 255:
        raise PassError("malformed", "tok must be a string of 1-255 characters")
    if not (_encodable(iss) and _encodable(tok)):
        raise PassError("malformed", "iss and tok must be Unicode text without lone surrogates")
    if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
        raise PassError("malformed", "nonce must be 16-64 base64url characters")
    iat, exp = _int(payload, "iat"), _int(payload, "exp")
    if not 0 < exp - iat <= MAX_LIFETIME_S:
        raise PassError("malformed", f"exp must be after iat and at most {MAX_LIFETIME_S} s after it")
    party = _int(payload, "party", 1)
    if not 1 <= party <= 4:
        raise PassError("malformed", "party must be 1-4")
    return PassClaims(iss, tok, iat, exp, nonce, party, _key32(payload, "rk"), _key32(payload, "ch"))


def _public_key(key: str | bytes) -> Ed25519PublicKey:
    raw = key if isinstance(key, bytes) else base64.urlsafe_b64decode(key + "=" * (-len(key) % 4))
    return Ed25519PublicKey.from_public_bytes(raw)


def verify_signature(text: str, issuers: Mapping[str, str | bytes]) -> PassClaims:
    """Steps 1-2: shape, known issuer, valid Ed25519 signature over `WO1.<payload>`."""
    claims = parse_pass_unchecked(text)
    if claims.iss not in issuers:
        raise PassError("unknown_issuer", "the pass's issuer is not configured in this store")
    signed, _, sig_b64 = text.rpartition(".")
    try:
        _public_key(issuers[claims.iss]).verify(b64url_decode_canonical(sig_b64, "signature"), signed.encode())
    except (InvalidSignature, ValueError) as err:
        raise PassError("bad_signature", "the signature does not match the issuer's key") from err
    return claims


class ReplayCache:
    """Nonces already accepted, each kept until its pass expires (in memory; restarts are safe
    because a pass lives at most ten minutes and the vault keeps open visits by nonce)."""

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def claim(self, nonce: str, exp: int, now: float) -> bool:
        """Record the nonce; False when it was already used and has not yet expired."""
        with self._lock:
            # A nonce is held until its pass expires, and not longer (policy: entry_passes).
            self._seen = {n: e for n, e in self._seen.items() if e >= now}
            if nonce in self._seen:
                return False
            self._seen[nonce] = exp
            return True

    def __len__(self) -> int:
        return len(self._seen)


def verify_pass(text: str, issuers: Mapping[str, str | bytes], now: float, cache: ReplayCache) -> PassClaims:
    """The whole check, in the spec's order; raises PassError with the spec's code."""
    claims = verify_signature(text, issuers)
    if now < claims.iat - SKEW_S:
        raise PassError("not_yet_valid", "the pass was issued in the future")
    if now >= claims.exp:
        raise PassError("expired", "the pass has expired")
    if not cache.claim(claims.nonce, claims.exp, now):
        raise PassError("replayed", "this pass was already used")
    return claims


def issue_pass(private_key: Ed25519PrivateKey, payload: Mapping[str, Any]) -> str:
    """Sign a payload as an issuer would (compact JSON, keys in the given order)."""
    body = b64url_encode(json.dumps(dict(payload), separators=(",", ":")).encode())
    signed = f"{PREFIX}.{body}"
    return f"{signed}.{b64url_encode(private_key.sign(signed.encode()))}"


def public_key_b64(private_key: Ed25519PrivateKey) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    return b64url_encode(private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
