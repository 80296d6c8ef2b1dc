"""Where the master key comes from: the service's systemd credential, or a development key file.

Production: systemd decrypts the credential (`LoadCredentialEncrypted=vault-master-key:...`, sealed
to the box's TPM) into `$CREDENTIALS_DIRECTORY/vault-master-key`, readable only by the service.
Development: `[vault] key_file` names a file readable only by its owner. There is no default key,
and a key is never read from the configuration or from an environment variable (the environment
only says where systemd put the credential).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from appliance.vault.database import fsync_dir
from appliance.vault.errors import VaultKeyError
from appliance.vault.keyring import current_master_id
from appliance.vault.keys import KEY_BYTES, MasterKey, check_key_material

logger = logging.getLogger(__name__)

CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"
NEXT_SUFFIX = ".next"


@dataclass(frozen=True, slots=True)
class KeySource:
    """Where the master key is read from: a systemd `credential` or a development `key_file`."""

    kind: str
    path: Path

    def describe(self) -> str:
        return f"systemd credential {self.path}" if self.kind == "credential" else f"key file {self.path}"


def find_key_source(credential: str, key_file: str | Path, environ: Mapping[str, str] = os.environ) -> KeySource:
    """Decide where the master key comes from, without reading it.

    A credential directory, when systemd provides one, wins; it must then hold the credential
    (falling back to a development file on a production box would be worse than stopping).
    """
    creds = environ.get(CREDENTIALS_ENV, "")
    if creds:
        path = Path(creds) / credential
        if not path.exists():
            raise VaultKeyError(
                f"${CREDENTIALS_ENV} is set but holds no credential {credential!r}; add "
                f"LoadCredentialEncrypted={credential}:... to the service"
            )
        return KeySource("credential", path)
    if key_file:
        return KeySource("key_file", Path(key_file))
    raise VaultKeyError(
        "no master key: run the appliance as a systemd service with LoadCredentialEncrypted="
        f"{credential}:..., or, for development, set [vault] key_file (`appliance vault init` makes one)"
    )


def parse_key(data: bytes, where: str) -> bytes:
    """A key file holds 32 raw bytes or 64 hex characters (a trailing newline is fine)."""
    if len(data) == KEY_BYTES:
        key = data
    else:
        text = data.strip()
        try:
            key = bytes.fromhex(text.decode("ascii")) if len(text) == 2 * KEY_BYTES else b""
        except (UnicodeDecodeError, ValueError):
            key = b""
        if len(key) != KEY_BYTES:
            raise VaultKeyError(f"{where} must hold 32 raw bytes or 64 hex characters")
    check_key_material(key, f"the key in {where}")
    return key


def read_key_file(path: Path) -> bytes:
    """Read a key file, refusing one that others could read or write, a symlink, or another user's file."""
    try:
        st = os.lstat(path)
    except FileNotFoundError as err:
        raise VaultKeyError(f"no key file at {path} (`appliance vault init` makes one)") from err
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISREG(st.st_mode):
        raise VaultKeyError(f"{path} must be a regular file, not a link or a device")
    if st.st_uid != os.geteuid():
        raise VaultKeyError(f"{path} belongs to user id {st.st_uid}, not to the user running the appliance")
    if st.st_mode & 0o077:
        raise VaultKeyError(
            f"{path} can be read or written by other users (mode {stat.S_IMODE(st.st_mode):o}); run chmod 600 {path}"
        )
    return parse_key(path.read_bytes(), str(path))


def write_key_file(path: Path, key: bytes) -> None:
    """Write a new key file (mode 0600, never over an existing file), durably."""
    check_key_material(key, "a new key")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as err:
        raise VaultKeyError(f"{path} already exists; a key file is never overwritten") from err
    try:
        os.write(fd, (key.hex() + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def next_key_path(key_file: Path) -> Path:
    """Where a rotation stages the new key before the keyring is re-wrapped under it."""
    return key_file.with_name(key_file.name + NEXT_SUFFIX)


def load_master_key(
    credential: str, key_file: str | Path, folder: Path, environ: Mapping[str, str] = os.environ
) -> bytes:
    """Read the master key for the vault in `folder`.

    With a development key file, a rotation that committed (the keyring is under the staged key)
    but crashed before installing the new key file is finished here.
    """
    source = find_key_source(credential, key_file, environ)
    key = read_key_file(source.path)
    if source.kind == "key_file":
        staged = next_key_path(source.path)
        if staged.exists():
            new = read_key_file(staged)
            if current_master_id(folder) == MasterKey(new).id:
                try:
                    os.replace(staged, source.path)
                    fsync_dir(source.path.parent)
                except FileNotFoundError:
                    pass  # another process finished it first
                logger.info("finished installing the rotated master key in %s", source.path)
                return new
    return key
