"""Sealed messages: small payloads encrypted to one recipient's X25519 public key.

Format, version 1 (the whole thing is sent as unpadded base64url text):

    0x01 | ephemeral X25519 public key (32 bytes) | AES-256-GCM ciphertext and 16-byte tag

The sender makes a fresh ephemeral key pair per message and computes the X25519 shared secret
with the recipient's public key; HKDF-SHA256 (salt = ephemeral public || recipient public,
info = the purpose label) yields the 32-byte AES key and the 12-byte nonce. The version byte and
the label are the associated data, so a message sealed for one purpose (a card token) never opens
as another (a receipt). Because every message has its own ephemeral key, the derived nonce is
never reused under one key.

`seal(..., seed=...)` makes sealing deterministic: the ephemeral key is derived from the seed, the
label, the recipient and the plaintext, so sealing the same plaintext again (an idempotent retry)
gives the same bytes, while any different plaintext gets a different ephemeral key.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.gate.passes import PassError, b64url_decode_canonical, b64url_encode

VERSION = 1
_HEADER = bytes([VERSION])
_KEY_LEN = 32
_TAG_LEN = 16


class SealError(ValueError):
    """A message that cannot be sealed (unusable recipient key) or opened (wrong key, tampered)."""


def public_bytes(key: X25519PrivateKey | X25519PublicKey) -> bytes:
    """The raw 32-byte public key of a private or public X25519 key."""
    pub = key.public_key() if isinstance(key, X25519PrivateKey) else key
    return pub.public_bytes(Encoding.Raw, PublicFormat.Raw)


def _derive(shared: bytes, eph_pub: bytes, recipient: bytes, label: str) -> tuple[bytes, bytes]:
    okm = HKDF(algorithm=hashes.SHA256(), length=_KEY_LEN + 12, salt=eph_pub + recipient, info=label.encode()).derive(
        shared
    )
    return okm[:_KEY_LEN], okm[_KEY_LEN:]


def seal(recipient: bytes, plaintext: bytes, label: str, *, seed: bytes | None = None) -> str:
    """Encrypt `plaintext` so that only the holder of `recipient`'s private key can read it.

    Args:
        recipient: the recipient's raw 32-byte X25519 public key.
        plaintext: what to hide.
        label: the purpose, bound into the key derivation and the associated data.
        seed: when given (at least 16 secret bytes), sealing is deterministic for this plaintext.

    Raises:
        SealError: the recipient key is not 32 bytes or is a low-order point (no shared secret).
    """
    if len(recipient) != _KEY_LEN:
        raise SealError(f"a recipient key is 32 bytes, got {len(recipient)}")
    if seed is None:
        eph = X25519PrivateKey.generate()
    else:
        if len(seed) < 16:
            raise SealError("a sealing seed needs at least 16 bytes")
        digest = hmac.new(seed, label.encode() + b"\0" + recipient + plaintext, hashlib.sha256).digest()
        eph = X25519PrivateKey.from_private_bytes(digest)
    eph_pub = public_bytes(eph)
    try:
        shared = eph.exchange(X25519PublicKey.from_public_bytes(recipient))
    except ValueError as err:
        raise SealError("the recipient key is not usable (low-order point)") from err
    key, nonce = _derive(shared, eph_pub, recipient, label)
    body = AESGCM(key).encrypt(nonce, plaintext, _HEADER + label.encode())
    return b64url_encode(_HEADER + eph_pub + body)


def open_sealed(private_key: X25519PrivateKey, sealed: str, label: str) -> bytes:
    """Decrypt a sealed message; raises SealError if it is malformed, tampered or not for this key."""
    try:
        raw = b64url_decode_canonical(sealed, "sealed message")
    except PassError as err:
        raise SealError("a sealed message is unpadded base64url text") from err
    if len(raw) < 1 + _KEY_LEN + _TAG_LEN:
        raise SealError(f"a sealed message is at least {1 + _KEY_LEN + _TAG_LEN} bytes, got {len(raw)}")
    if raw[0] != VERSION:
        raise SealError(f"unknown sealed-message version {raw[0]} (this box reads version {VERSION})")
    eph_pub, body = raw[1 : 1 + _KEY_LEN], raw[1 + _KEY_LEN :]
    try:
        shared = private_key.exchange(X25519PublicKey.from_public_bytes(eph_pub))
    except ValueError as err:
        raise SealError("the sender's ephemeral key is not usable") from err
    key, nonce = _derive(shared, eph_pub, public_bytes(private_key), label)
    try:
        return AESGCM(key).decrypt(nonce, body, _HEADER + label.encode())
    except InvalidTag as err:
        raise SealError("the message does not open with this key (wrong key, wrong purpose or tampered)") from err
