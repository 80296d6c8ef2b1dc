"""What can go wrong in the vault, as the rest of the appliance sees it."""

from __future__ import annotations


class VaultError(Exception):
    """A vault operation that could not be done; the message says what and why, never a secret."""


class VaultKeyError(VaultError):
    """A missing, unsafe or wrong key: the vault refuses to open rather than guess."""


class UnknownRecordError(VaultError, KeyError):
    """No visit, charge, refund or review item with that id (or it has expired)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown record"


class ChargeStateError(VaultError):
    """A state change the charge (or refund) life cycle does not allow, e.g. a final state back to pending."""
