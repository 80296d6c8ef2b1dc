"""Opening the shop's vault as store.toml's [vault] section says: folder, master key, retention choices."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from appliance.config.model import VaultSettings
from appliance.vault.clock import Clock, SystemClock
from appliance.vault.keysource import load_master_key
from appliance.vault.policy import RetentionPolicy
from appliance.vault.vault import Vault


def retention_choices(settings: VaultSettings) -> dict[str, int]:
    """The owner's retention choices, by policy setting name."""
    return {
        "token_days": settings.token_days,
        "evidence_days": settings.evidence_days,
        "sales_years": settings.sales_years,
        "audit_years": settings.audit_years,
        "pass_hours": settings.pass_hours,
    }


def policy_for(settings: VaultSettings, policy: RetentionPolicy | None = None) -> RetentionPolicy:
    """The shipped policy with the store's choices applied; PolicyError if a choice is out of bounds."""
    return (policy or RetentionPolicy.load()).choose(retention_choices(settings))


def vault_folder(settings: VaultSettings, config_dir: Path | None) -> Path:
    """The data folder; a relative path is taken from the store.toml's folder."""
    folder = Path(settings.folder)
    if not folder.is_absolute() and config_dir is not None:
        folder = config_dir / folder
    return folder


def key_file_path(settings: VaultSettings, config_dir: Path | None) -> Path | None:
    """The development key file, if configured; a relative path is taken from the store.toml's folder."""
    if not settings.key_file:
        return None
    path = Path(settings.key_file)
    if not path.is_absolute() and config_dir is not None:
        path = config_dir / path
    return path


def open_vault(
    settings: VaultSettings,
    *,
    config_dir: Path | None = None,
    clock: Clock | None = None,
    read_only: bool = False,
    environ: Mapping[str, str] = os.environ,
) -> Vault:
    """Open the vault the configuration describes (the master key from the credential or the key file)."""
    folder = vault_folder(settings, config_dir)
    key = load_master_key(settings.credential, key_file_path(settings, config_dir) or "", folder, environ)
    return Vault.open(
        folder,
        key,
        policy_for(settings),
        clock or SystemClock(),
        chunk_rows=settings.chunk_rows,
        read_only=read_only,
    )
