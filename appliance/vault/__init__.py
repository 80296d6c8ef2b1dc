"""The privacy vault: encrypted pseudonymous records, retention by crypto-shredding, a verifiable audit log."""

from appliance.vault.audit import AuditEntry, AuditVerdict, Checkpoint
from appliance.vault.clock import Clock, ManualClock, SystemClock
from appliance.vault.errors import ChargeStateError, UnknownRecordError, VaultError, VaultKeyError
from appliance.vault.policy import Duration, PolicyError, RecordClass, RetentionPolicy
from appliance.vault.records import (
    CHARGE_MOVES,
    CHARGE_STATES,
    FINAL_CHARGE_STATES,
    AdmittedPass,
    CartLine,
    Charge,
    OpenReviewItem,
    Refund,
    RetentionRun,
    Visit,
    charge_move_allowed,
)
from appliance.vault.vault import Vault

__all__ = [
    "CHARGE_MOVES",
    "CHARGE_STATES",
    "FINAL_CHARGE_STATES",
    "AdmittedPass",
    "AuditEntry",
    "AuditVerdict",
    "CartLine",
    "Charge",
    "ChargeStateError",
    "Checkpoint",
    "Clock",
    "Duration",
    "ManualClock",
    "OpenReviewItem",
    "PolicyError",
    "RecordClass",
    "Refund",
    "RetentionPolicy",
    "RetentionRun",
    "SystemClock",
    "UnknownRecordError",
    "Vault",
    "VaultError",
    "VaultKeyError",
    "Visit",
    "charge_move_allowed",
]
