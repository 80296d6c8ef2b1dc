"""The keyring: every data key of the vault, wrapped under the master key, and their destruction.

The keyring is itself an SQLCipher file, keyed from the master key and named after it
(`keyring-<generation>-<master key id>.db`). Destroying a period's key overwrites its wrapped
bytes (secure_delete), truncates the WAL and keeps a tombstone with the dates, so the key
inventory stays auditable while the key is gone. Rotating the master key writes the next
generation beside the current one and renames it into place: a crash at any point leaves one
complete keyring that opens.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.vault.crashpoints import crash_point
from appliance.vault.database import (
    Connection,
    close_quietly,
    fsync_dir,
    open_database,
    read,
    remove_database_files,
    transaction,
    truncate_wal,
)
from appliance.vault.errors import VaultError, VaultKeyError
from appliance.vault.keys import MasterKey, new_data_key

logger = logging.getLogger(__name__)

_FILE = re.compile(r"keyring-(\d{6})-([0-9a-f]{16})\.db")
_BUILDING = ".building"
FORMAT = "1"
IDENTITY_ID = "identity/box-signing"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS period_keys (
    id TEXT PRIMARY KEY,
    record_class TEXT NOT NULL,
    period TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    destroy_after INTEGER,
    wrapped BLOB,
    destroyed_at INTEGER
);
CREATE TABLE IF NOT EXISTS identity (
    id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    wrapped_private BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class KeyEntry:
    """One key in the inventory: its id and dates, never its bytes."""

    id: str
    record_class: str
    period: str
    created_at: int
    destroy_after: int | None
    destroyed_at: int | None

    @property
    def live(self) -> bool:
        return self.destroyed_at is None


def keyring_files(folder: Path) -> list[tuple[int, str, Path]]:
    """The complete keyring files in `folder` as (generation, master key id, path), newest first."""
    found = []
    if folder.is_dir():
        for p in folder.iterdir():
            m = _FILE.fullmatch(p.name)
            if m:
                found.append((int(m.group(1)), m.group(2), p))
    return sorted(found, reverse=True)


def current_master_id(folder: Path) -> str | None:
    """The id of the master key the vault in `folder` is wrapped under, or None for no vault."""
    files = keyring_files(folder)
    return files[0][1] if files else None


def _file_name(generation: int, master: MasterKey) -> str:
    return f"keyring-{generation:06d}-{master.id}.db"


class Keyring:
    """The vault's data keys, wrapped under the master key. Not thread-safe: the Vault serialises calls."""

    def __init__(self, folder: Path, master: MasterKey, generation: int, conn: Connection) -> None:
        self._folder = folder
        self._master = master
        self._generation = generation
        self._conn = conn
        self._cache: dict[str, bytes] = {}

    @classmethod
    def open(cls, folder: Path, master: MasterKey, now: float, *, create: bool, read_only: bool = False) -> Keyring:
        """Open the vault's keyring with `master`, or create the first one when `create` is set.

        Unless `read_only`, leftovers of an interrupted rotation are cleaned up.

        Raises:
            VaultKeyError: the keyring is wrapped under a different master key.
            VaultError: there is no keyring and `create` is not set.
        """
        if not read_only:
            for stale in folder.glob(f"keyring-*{_BUILDING}*"):
                stale.unlink()  # an unfinished rotation or creation: the complete keyring is still there
        files = keyring_files(folder)
        if not files:
            if not create:
                raise VaultError(f"{folder}: no keyring; this is not a vault (run `appliance vault init`)")
            keyring = cls._build(folder, master, 1, now, entries=[], identity=None)
            logger.info("created a new keyring under master key %s", master.id)
            return keyring
        generation, master_id, path = files[0]
        if master_id != master.id:
            raise VaultKeyError(
                f"the vault's keyring (generation {generation}) is wrapped under master key {master_id}; "
                f"the key given is {master.id}"
            )
        conn = open_database(path, master.keyring_key(), create=False)
        keyring = cls(folder, master, generation, conn)
        for _, _, old in [] if read_only else files[1:]:
            # A rotation committed but crashed before removing the previous generation: finish it.
            remove_database_files(old)
            logger.info("removed the superseded keyring %s", old.name)
        return keyring

    @classmethod
    def _build(
        cls,
        folder: Path,
        master: MasterKey,
        generation: int,
        now: float,
        entries: list[tuple[KeyEntry, bytes | None]],
        identity: tuple[bytes, bytes, int] | None,
    ) -> Keyring:
        """Write a complete keyring beside the others, then rename it into place (the commit point)."""
        final = folder / _file_name(generation, master)
        building = folder / (final.name + _BUILDING)
        remove_database_files(building)
        conn = open_database(building, master.keyring_key(), create=True)
        try:
            with transaction(conn, "create keyring") as c:
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        c.execute(statement)
                c.executemany(
                    "INSERT INTO meta(name, value) VALUES (?, ?)",
                    [
                        ("format", FORMAT),
                        ("generation", str(generation)),
                        ("master_key_id", master.id),
                        ("created_at", str(int(now))),
                    ],
                )
                for entry, key in entries:
                    wrapped = master.wrap(key, entry.id) if key is not None else None
                    c.execute(
                        "INSERT INTO period_keys(id, record_class, period, created_at, destroy_after, wrapped, "
                        "destroyed_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            entry.id,
                            entry.record_class,
                            entry.period,
                            entry.created_at,
                            entry.destroy_after,
                            wrapped,
                            entry.destroyed_at,
                        ),
                    )
                if identity is None:
                    private = Ed25519PrivateKey.generate()
                    identity = (
                        private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw),
                        private.private_bytes_raw(),
                        int(now),
                    )
                public, private_raw, created = identity
                c.execute(
                    "INSERT INTO identity(id, public_key, wrapped_private, created_at) VALUES (?, ?, ?, ?)",
                    (IDENTITY_ID, public, master.wrap(private_raw, IDENTITY_ID), created),
                )
        finally:
            conn.close()  # the last connection checkpoints and removes the WAL
        if building.with_name(building.name + "-wal").exists():
            raise VaultError(f"{building.name}: WAL still present after close; not installing this keyring")
        fd = os.open(building, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        crash_point("keyring.built")
        os.replace(building, final)
        fsync_dir(folder)
        return cls(folder, master, generation, open_database(final, master.keyring_key(), create=False))

    @property
    def master_id(self) -> str:
        return self._master.id

    @property
    def generation(self) -> int:
        return self._generation

    @property
    def path(self) -> Path:
        return self._folder / _file_name(self._generation, self._master)

    @property
    def connection(self) -> Connection:
        """The keyring's database connection (for the auditor's schema inventory and tests)."""
        return self._conn

    def entry(self, key_id: str) -> KeyEntry | None:
        """The inventory entry of `key_id`, live or destroyed; None if it never existed."""
        rows = read(
            self._conn,
            "SELECT id, record_class, period, created_at, destroy_after, destroyed_at FROM period_keys WHERE id = ?",
            (key_id,),
            "read key inventory",
        )
        return KeyEntry(*rows[0]) if rows else None

    def entries(self, record_class: str | None = None) -> list[KeyEntry]:
        """The key inventory (ids and dates only), oldest first."""
        sql = "SELECT id, record_class, period, created_at, destroy_after, destroyed_at FROM period_keys"
        params: tuple[str, ...] = ()
        if record_class is not None:
            sql += " WHERE record_class = ?"
            params = (record_class,)
        return [KeyEntry(*r) for r in read(self._conn, sql + " ORDER BY period, id", params, "read key inventory")]

    def key(self, key_id: str) -> bytes | None:
        """The unwrapped data key `key_id`, or None if it was destroyed or never made."""
        cached = self._cache.get(key_id)
        if cached is not None:
            return cached
        rows = read(self._conn, "SELECT wrapped FROM period_keys WHERE id = ?", (key_id,), "read key")
        if not rows or rows[0][0] is None:
            return None
        key = self._master.unwrap(bytes(rows[0][0]), key_id)
        self._cache[key_id] = key
        return key

    def create(self, key_id: str, record_class: str, period: str, destroy_after: int | None, now: float) -> bytes:
        """Make, wrap and durably store a new data key; refuses an id that exists or was destroyed."""
        if self.entry(key_id) is not None:
            raise VaultError(f"key {key_id} already exists or was destroyed; a period's key is never remade")
        key = new_data_key()
        with transaction(self._conn, f"store key {key_id}") as c:
            c.execute(
                "INSERT INTO period_keys(id, record_class, period, created_at, destroy_after, wrapped, destroyed_at) "
                "VALUES (?, ?, ?, ?, ?, ?, NULL)",
                (key_id, record_class, period, int(now), destroy_after, self._master.wrap(key, key_id)),
            )
        self._cache[key_id] = key
        return key

    def extend(self, key_id: str, destroy_after: int) -> None:
        """Keep a live key at least until `destroy_after` (a record with a later limit joined its period)."""
        entry = self.entry(key_id)
        if entry is None or entry.destroy_after is None or entry.destroy_after >= destroy_after:
            return
        with transaction(self._conn, f"extend key {key_id}") as c:
            c.execute(
                "UPDATE period_keys SET destroy_after = ? WHERE id = ? AND destroyed_at IS NULL "
                "AND destroy_after IS NOT NULL AND destroy_after < ?",
                (destroy_after, key_id, destroy_after),
            )

    def destroy(self, key_id: str, now: float) -> bool:
        """Destroy a data key: its wrapped bytes are overwritten and the WAL truncated; a tombstone stays.

        Returns False if it was already destroyed (destroying is idempotent).
        """
        self._cache.pop(key_id, None)
        with transaction(self._conn, f"destroy key {key_id}") as c:
            cur = c.execute(
                "UPDATE period_keys SET wrapped = NULL, destroyed_at = ? WHERE id = ? AND destroyed_at IS NULL",
                (int(now), key_id),
            )
            changed = cur.rowcount > 0
        truncate_wal(self._conn, self.path.name)
        return bool(changed)

    def identity(self) -> Ed25519PrivateKey:
        """The box's Ed25519 signing key (signs audit checkpoints)."""
        rows = read(self._conn, "SELECT wrapped_private FROM identity WHERE id = ?", (IDENTITY_ID,), "read identity")
        if not rows:
            raise VaultError("the keyring holds no box signing key")
        return Ed25519PrivateKey.from_private_bytes(self._master.unwrap(bytes(rows[0][0]), IDENTITY_ID))

    def public_identity(self) -> Ed25519PublicKey:
        """The public half of the box's signing key (safe to export)."""
        rows = read(self._conn, "SELECT public_key FROM identity WHERE id = ?", (IDENTITY_ID,), "read identity")
        if not rows:
            raise VaultError("the keyring holds no box signing key")
        return Ed25519PublicKey.from_public_bytes(bytes(rows[0][0]))

    def rotate(self, new_master: MasterKey, now: float) -> None:
        """Re-wrap every live key and the signing key under `new_master` (a new keyring generation).

        The new generation is written completely and renamed into place before the old one is removed,
        so a crash leaves either the old keyring (rotation not done) or the new one (done).
        """
        if new_master.id == self._master.id:
            raise VaultKeyError("the new master key is the same as the current one")
        entries = []
        for e in self.entries():
            entries.append((e, self.key(e.id) if e.live else None))
        rows = read(
            self._conn,
            "SELECT public_key, wrapped_private, created_at FROM identity WHERE id = ?",
            (IDENTITY_ID,),
            "read identity",
        )
        if not rows:
            raise VaultError("the keyring holds no box signing key")
        public, wrapped_private, created = rows[0]
        identity = (bytes(public), self._master.unwrap(bytes(wrapped_private), IDENTITY_ID), int(created))
        new = Keyring._build(self._folder, new_master, self._generation + 1, now, entries, identity)
        old_path = self.path
        crash_point("keyring.installed")
        close_quietly(self._conn, old_path.name)
        remove_database_files(old_path)
        self._master, self._generation, self._conn = new_master, new.generation, new.connection
        self._cache.clear()
        logger.info("master key rotated: keyring generation %s under master key %s", self._generation, new_master.id)

    def close(self, *, checkpoint: bool = True) -> None:
        """Checkpoint (unless a reader) and close the keyring; forget unwrapped keys."""
        self._cache.clear()
        close_quietly(self._conn, self.path.name, checkpoint=checkpoint)
