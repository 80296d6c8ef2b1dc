"""Key material: the master key, keys derived from it, and data keys wrapped under it.

The master key never encrypts data itself. It derives the keyring's database key and a wrapping
key (HKDF-SHA256 with distinct labels); every period's data key is random and stored only
wrapped (AES-256-GCM, bound to its key id), so rotating the master key re-wraps a few dozen keys
instead of re-encrypting years of records.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from appliance.vault.errors import VaultKeyError

KEY_BYTES = 32
_NONCE_BYTES = 12
_MIN_DISTINCT_BYTES = 12


def new_data_key() -> bytes:
    """A fresh random 256-bit key from the operating system's CSPRNG."""
    return os.urandom(KEY_BYTES)


def check_key_material(key: bytes, what: str) -> None:
    """Refuse keys that are the wrong size or obviously not random (all zeros, a repeated pattern).

    This is what stops a placeholder such as 32 zero bytes from ever protecting real data.
    """
    if len(key) != KEY_BYTES:
        raise VaultKeyError(f"{what} must be {KEY_BYTES} bytes, got {len(key)}")
    if len(set(key)) < _MIN_DISTINCT_BYTES:
        raise VaultKeyError(f"{what} is not random (too few distinct bytes); generate one with `appliance vault init`")


def derive(secret: bytes, label: str) -> bytes:
    """A 256-bit subkey of `secret` for one purpose (HKDF-SHA256, info = the label)."""
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=label.encode()).derive(secret)


def seal(key: bytes, plaintext: bytes, label: str) -> bytes:
    """AES-256-GCM: random 96-bit nonce + ciphertext + tag, authenticated together with `label`."""
    nonce = os.urandom(_NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, label.encode())


def unseal(key: bytes, blob: bytes, label: str) -> bytes:
    """Open what `seal` made with the same key and label; VaultKeyError if anything differs."""
    if len(blob) < _NONCE_BYTES + 16:
        raise VaultKeyError(f"{label}: sealed value is too short")
    try:
        return AESGCM(key).decrypt(blob[:_NONCE_BYTES], blob[_NONCE_BYTES:], label.encode())
    except InvalidTag as err:
        raise VaultKeyError(f"{label}: cannot be unwrapped with this key (wrong key, or altered)") from err


@dataclass(frozen=True, slots=True, repr=False)
class MasterKey:
    """The box's master key. Its `id` (a keyed fingerprint) names it in file names and the audit log.

    The repr shows only the id, so a master key that slips into a log line or traceback reveals nothing.
    """

    secret: bytes

    def __post_init__(self) -> None:
        check_key_material(self.secret, "the master key")

    def __repr__(self) -> str:
        return f"MasterKey(id={self.id})"

    @property
    def id(self) -> str:
        """16 hex characters identifying the key; computed with HMAC, so it says nothing about it."""
        return hmac.new(self.secret, b"walkout-vault master key id v1", hashlib.sha256).hexdigest()[:16]

    def keyring_key(self) -> bytes:
        """The database key of the keyring file."""
        return derive(self.secret, "walkout-vault keyring database v1")

    def wrap(self, key: bytes, key_id: str) -> bytes:
        """Wrap a data key for storage in the keyring, bound to its id (it cannot be moved to another)."""
        return seal(derive(self.secret, "walkout-vault key wrapping v1"), key, key_id)

    def unwrap(self, blob: bytes, key_id: str) -> bytes:
        """Recover a data key wrapped by `wrap` under this master key and this id."""
        return unseal(derive(self.secret, "walkout-vault key wrapping v1"), blob, key_id)
