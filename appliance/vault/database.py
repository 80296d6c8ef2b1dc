"""SQLCipher database files under raw 256-bit keys, opened strictly and set up for durable erasure.

Every vault file goes through `open_database`: it refuses a library that is not SQLCipher, a
plain SQLite file and a wrong key (checked by a first read), and sets WAL with synchronous=FULL
(a commit survives power loss), temp_store=MEMORY (no plaintext temp files) and secure_delete
(deleted records are overwritten, not left in free pages).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import sqlcipher3

from appliance.vault.errors import VaultError, VaultKeyError

logger = logging.getLogger(__name__)

SQLITE_HEADER = b"SQLite format 3\x00"
KEY_BYTES = 32
DEFAULT_CACHE_KIB = 16 * 1024

Connection = Any  # sqlcipher3.Connection; the wheel ships no type information


def open_database(
    path: Path, key: bytes, *, create: bool, driver: ModuleType = sqlcipher3, cache_kib: int = DEFAULT_CACHE_KIB
) -> Connection:
    """Open (or, with `create`, make) one encrypted vault file with a raw 256-bit key.

    Args:
        path: the database file.
        key: exactly 32 random bytes; used directly as the AES-256 key (no passphrase derivation).
        create: make the file if it does not exist (otherwise a missing file is an error).
        driver: the DB-API module; anything but SQLCipher is refused (a test passes plain sqlite3).
        cache_kib: page cache size; retention runs raise it for large deletions.

    Raises:
        VaultKeyError: the key is wrong, or the file is not an encrypted vault file.
        VaultError: the file is missing, plain SQLite, or the library does not encrypt.
    """
    if len(key) != KEY_BYTES:
        raise VaultKeyError(f"{path.name}: a database key must be {KEY_BYTES} bytes, got {len(key)}")
    if path.exists():
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
        if head == SQLITE_HEADER:
            raise VaultError(f"{path.name} is a plain (unencrypted) SQLite file; the vault opens only encrypted files")
    elif not create:
        raise VaultError(f"{path.name} is missing")
    try:
        conn = driver.connect(str(path), isolation_level=None, check_same_thread=False)
    except driver.Error as err:
        raise VaultError(f"{path.name}: cannot open: {err}") from err
    try:
        _unlock(conn, path, key, driver)
        _configure(conn, path, cache_kib)
    except BaseException:
        conn.close()
        raise
    return conn


def _unlock(conn: Connection, path: Path, key: bytes, driver: ModuleType) -> None:
    try:
        row = conn.execute("PRAGMA cipher_version").fetchone()
    except driver.Error:
        row = None
    if not row or not row[0]:
        raise VaultError(
            f"{path.name}: the SQLite library in use ({getattr(driver, '__name__', driver)}) is not SQLCipher; "
            "refusing to store data unencrypted"
        )
    # SQLCipher's own error log would print to stderr on a wrong key; the VaultKeyError says it better.
    conn.execute("PRAGMA cipher_log_level = NONE").fetchall()
    conn.execute(f"PRAGMA key = \"x'{key.hex()}'\"")
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except driver.DatabaseError as err:
        raise VaultKeyError(f"{path.name} cannot be read with this key (wrong key, or not a vault file)") from err


def _configure(conn: Connection, path: Path, cache_kib: int) -> None:
    fresh = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
    if fresh:
        # Must precede the first table: lets retention hand freed (already zeroed) pages back.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise VaultError(f"{path.name}: could not switch to WAL (got {mode})")
    for pragma in ("synchronous = FULL", "temp_store = MEMORY", "secure_delete = ON", "cipher_memory_security = ON"):
        conn.execute(f"PRAGMA {pragma}").fetchall()
    set_cache(conn, cache_kib)
    if conn.execute("PRAGMA secure_delete").fetchone()[0] != 1:
        raise VaultError(f"{path.name}: secure_delete could not be enabled")


def set_cache(conn: Connection, cache_kib: int) -> None:
    """Set the page cache of one connection, in KiB."""
    conn.execute(f"PRAGMA cache_size = {-int(cache_kib)}").fetchall()


@contextlib.contextmanager
def transaction(conn: Connection, what: str) -> Iterator[Connection]:
    """One write transaction: committed (durably) on success, rolled back on any error.

    Library errors are wrapped in VaultError naming `what` was being done.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlcipher3.Error as err:
        raise VaultError(f"{what}: {err}") from err
    try:
        yield conn
    except BaseException as err:
        with contextlib.suppress(sqlcipher3.Error):
            conn.execute("ROLLBACK")
        if isinstance(err, sqlcipher3.Error):
            raise VaultError(f"{what}: {err}") from err
        raise
    try:
        conn.execute("COMMIT")
    except sqlcipher3.Error as err:
        with contextlib.suppress(sqlcipher3.Error):
            conn.execute("ROLLBACK")
        raise VaultError(f"{what}: {err}") from err


@contextlib.contextmanager
def snapshot(conn: Connection) -> Iterator[Connection]:
    """A read transaction: every query inside sees the same state, even while another process writes."""
    try:
        conn.execute("BEGIN")
    except sqlcipher3.Error as err:
        raise VaultError(f"read snapshot: {err}") from err
    try:
        yield conn
    finally:
        with contextlib.suppress(sqlcipher3.Error):
            conn.execute("COMMIT")


def read(conn: Connection, sql: str, params: tuple[Any, ...] = (), what: str = "read") -> list[tuple[Any, ...]]:
    """Run a query and return every row; library errors become VaultError."""
    try:
        return list(conn.execute(sql, params).fetchall())
    except sqlcipher3.Error as err:
        raise VaultError(f"{what}: {err}") from err


def truncate_wal(conn: Connection, name: str) -> None:
    """Checkpoint the WAL into the database and cut it to zero bytes, so no old page lingers there."""
    try:
        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlcipher3.Error as err:
        raise VaultError(f"{name}: checkpoint failed: {err}") from err
    if busy:
        logger.warning("%s: WAL checkpoint was blocked by a reader; it will be truncated on the next run", name)


def release_free_pages(conn: Connection) -> None:
    """Give the file's free pages (already overwritten by secure_delete) back to the file system."""
    conn.execute("PRAGMA incremental_vacuum").fetchall()


def close_quietly(conn: Connection, name: str, *, checkpoint: bool = True) -> None:
    """Checkpoint, truncate (unless `checkpoint` is off, for readers) and close; failures are logged, never raised."""
    if checkpoint:
        try:
            truncate_wal(conn, name)
        except VaultError as err:
            logger.warning("%s: %s", name, err)
    try:
        conn.close()
    except sqlcipher3.Error as err:
        logger.warning("%s: close failed: %s", name, err)


def fsync_dir(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def remove_database_files(path: Path) -> list[Path]:
    """Delete a database with its WAL and shared-memory files; returns what was removed."""
    removed: list[Path] = []
    if not path.parent.is_dir():
        return removed  # its key was made but the file never was (a crash in between)
    for p in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            p.unlink()
            removed.append(p)
        except FileNotFoundError:
            pass
    fsync_dir(path.parent)
    return removed
