"""One writer at a time: an exclusive lock on the vault folder, held while a vault is open for writing.

Two writers would each extend the audit log's Merkle tree from their own copy and break it, so
the second is refused. The kernel drops the lock when its process dies, even by kill -9.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from appliance.vault.errors import VaultError

LOCK_FILE = "vault.lock"


class FolderLock:
    """An exclusive, non-blocking flock on `<folder>/vault.lock`."""

    def __init__(self, folder: Path) -> None:
        self._path = folder / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise VaultError at once if another process holds it."""
        fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            raise VaultError(
                f"the vault in {self._path.parent} is open in another process (the appliance?); stop it first, "
                "or use a read-only command such as `appliance audit report`"
            ) from err
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
