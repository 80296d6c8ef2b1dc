"""The vault's period files: one SQLCipher database per class of data and key period, opened on demand.

Layout of a vault folder (mode 0700):

    keyring-<generation>-<master key id>.db    the wrapped keys (see keyring.py)
    audit.db                                   the audit log and retention runs
    <class>/<period>.db                        e.g. event_evidence/2024-05-17.db, sales_record/2024-05.db

A period's key is made (and durably stored) before its file, and destroyed before its file is
deleted, so a crash between the two leaves either a key without a file (harmless, the file is
made on first write) or a file nobody can read (removed by the next retention run).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from appliance.vault.crashpoints import crash_point
from appliance.vault.database import (
    Connection,
    close_quietly,
    open_database,
    remove_database_files,
)
from appliance.vault.errors import VaultError
from appliance.vault.keyring import Keyring
from appliance.vault.periods import Period, key_destroy_time, period_from_label, period_of
from appliance.vault.policy import RecordClass, RetentionPolicy
from appliance.vault.schema import PERIOD_SCHEMAS, create_tables

logger = logging.getLogger(__name__)

FOLDER_MODE = 0o700


class PeriodFiles:
    """Opens, creates and destroys period files; keeps at most `max_open` connections (least recently used go).

    Not thread-safe: the Vault serialises calls.
    """

    def __init__(
        self, folder: Path, keyring: Keyring, policy: RetentionPolicy, max_open: int = 24, read_only: bool = False
    ) -> None:
        self._folder = folder
        self._read_only = read_only
        self._keyring = keyring
        self._policy = policy
        self._max_open = max_open
        self._open: OrderedDict[str, Connection] = OrderedDict()

    @property
    def policy(self) -> RetentionPolicy:
        return self._policy

    def period_classes(self) -> list[RecordClass]:
        """The classes kept in period files."""
        return [c for c in self._policy.classes if c.storage == "period"]

    def path(self, period: Period) -> Path:
        return self._folder / period.record_class / f"{period.label}.db"

    def period_at(self, record_class: str, t: float) -> Period:
        """The period of `record_class` that time `t` falls in."""
        c = self._policy.record_class(record_class)
        if c.key_period is None:
            raise VaultError(f"class {record_class} is not kept in period files")
        return period_of(record_class, c.key_period, t)

    def live_periods(self, record_class: str) -> list[Period]:
        """Periods of a class whose key still exists, newest first."""
        c = self._policy.record_class(record_class)
        assert c.key_period is not None
        out = []
        for e in self._keyring.entries(record_class):
            if e.live:
                out.append(period_from_label(record_class, c.key_period, e.period))
        return sorted(out, key=lambda p: p.start, reverse=True)

    def key(self, period: Period) -> bytes | None:
        """The period's data key, or None once destroyed."""
        return self._keyring.key(period.key_id)

    def for_write(self, record_class: str, now: float) -> tuple[Period, Connection]:
        """The file records stored now go into, creating its key and file if needed."""
        period = self.period_at(record_class, now)
        if self._keyring.entry(period.key_id) is None:
            retention = self._policy.retention(record_class)
            self._keyring.create(period.key_id, record_class, period.label, key_destroy_time(period, retention), now)
            logger.info("new key period %s", period.key_id)
            crash_point("key.created")
        conn = self.connection(period, create=True)
        if conn is None:
            raise VaultError(
                f"period {period.key_id} was already destroyed; the clock may have jumped back, refusing to write"
            )
        return period, conn

    def connection(self, period: Period, *, create: bool = False) -> Connection | None:
        """An open connection to a period's file; None if its key is gone, or (without `create`) no file yet."""
        name = period.key_id
        conn = self._open.get(name)
        if conn is not None:
            self._open.move_to_end(name)
            return conn
        key = self._keyring.key(name)
        if key is None:
            return None
        path = self.path(period)
        if not path.exists() and (not create or self._read_only):
            return None
        path.parent.mkdir(mode=FOLDER_MODE, exist_ok=True)
        conn = open_database(path, key, create=True)
        if not self._read_only:
            try:
                create_tables(conn, PERIOD_SCHEMAS[period.record_class], name)
            except BaseException:
                conn.close()
                raise
        self._open[name] = conn
        while len(self._open) > self._max_open:
            old_name, old = self._open.popitem(last=False)
            close_quietly(old, old_name, checkpoint=not self._read_only)
        return conn

    def keep_until(self, period: Period, destroy_after: int) -> None:
        """Keep a period's key at least until `destroy_after` (a record with a later limit joined it)."""
        self._keyring.extend(period.key_id, destroy_after)

    def destroy(self, period: Period, now: float) -> list[Path]:
        """Crypto-shred a period: destroy its key first, then delete its files. Returns the files removed."""
        conn = self._open.pop(period.key_id, None)
        if conn is not None:
            close_quietly(conn, period.key_id)
        self._keyring.destroy(period.key_id, now)
        crash_point("key.destroyed")
        return remove_database_files(self.path(period))

    def orphans(self) -> list[Path]:
        """Period files (with their WAL and shm) that no live key can open: left by a crash or a restore."""
        live = {e.id for e in self._keyring.entries() if e.live}
        out = []
        for c in self.period_classes():
            folder = self._folder / c.name
            if not folder.is_dir():
                continue
            for p in sorted(folder.iterdir()):
                base = p.name.removesuffix("-wal").removesuffix("-shm")
                if not base.endswith(".db") or f"{c.name}/{base[:-3]}" not in live:
                    out.append(p)
        return out

    def open_connections(self) -> dict[str, Connection]:
        """The connections open right now, by key id."""
        return dict(self._open)

    def close(self) -> None:
        """Close every open period file."""
        while self._open:
            name, conn = self._open.popitem()
            close_quietly(conn, name, checkpoint=not self._read_only)
