"""The vault: the one place the appliance stores anything about a visit, encrypted and pseudonymous.

Visits, cart lines with their evidence, review items, charges, refunds and payment tokens go into
period files of their class (see files.py); every change that matters to an auditor is appended
to the audit log. Every write is one SQLite transaction committed with synchronous=FULL, and
writes that span two files are ordered so that a kill -9 between them leaves nothing that the
next open cannot explain or clean up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
import secrets
import threading
import uuid
from collections.abc import Collection, Iterable, Sequence
from pathlib import Path
from typing import Any

from appliance.events import CartChange, Evidence, ReceiptLine, ReviewItem
from appliance.vault.audit import AuditLog, AuditVerdict, Checkpoint
from appliance.vault.clock import Clock
from appliance.vault.crashpoints import crash_point
from appliance.vault.database import Connection, close_quietly, open_database, read, transaction, truncate_wal
from appliance.vault.errors import ChargeStateError, UnknownRecordError, VaultError
from appliance.vault.files import FOLDER_MODE, PeriodFiles
from appliance.vault.keyring import Keyring
from appliance.vault.keys import MasterKey, derive, seal, unseal
from appliance.vault.lock import FolderLock
from appliance.vault.periods import Period, stored_time
from appliance.vault.policy import RetentionPolicy
from appliance.vault.records import (
    FAILED,
    FINAL_CHARGE_STATES,
    NONE_DUE,
    PENDING,
    REFUND_STATES,
    SUCCEEDED,
    AdmittedPass,
    CartLine,
    Charge,
    OpenReviewItem,
    Refund,
    RetentionRun,
    Visit,
    charge_move_allowed,
    refund_move_allowed,
)
from appliance.vault.schema import AUDIT_SCHEMA, create_tables

logger = logging.getLogger(__name__)

TOKENS = "payment_token"
ADMITTED = "admitted_pass"
EVIDENCE = "event_evidence"
SALES = "sales_record"
AUDIT = "audit_log"
AUDIT_KEY_ID = "audit_log/box"
AUDIT_FILE = "audit.db"

MAX_PARTY = 10
MAX_TOKEN_CHARS = 255
MAX_NOTE_CHARS = 120
MAX_SKU_CHARS = 64
MAX_NAME_CHARS = 200
_CURRENCY = re.compile(r"[A-Z]{3}")
_CODE = re.compile(r"[a-z0-9_]{0,40}")
_PROCESSOR_REF = re.compile(r"[A-Za-z0-9_.:/-]{0,96}")
_CACHE_LIMIT = 50_000
_ROW_ID_BITS = 32
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def _check_evidence(evidence: Evidence) -> None:
    _finite("evidence.t", evidence.t)
    _finite("evidence.delta_g", evidence.delta_g)
    for name in ("product_confidence", "person_confidence"):
        v = _finite(f"evidence.{name}", getattr(evidence, name))
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"evidence.{name} must be within 0..1, got {v}")
    if len(evidence.note) > MAX_NOTE_CHARS:
        raise ValueError(f"evidence.note must be at most {MAX_NOTE_CHARS} characters, got {len(evidence.note)}")
    if not all(isinstance(s, str) and s and "," not in s for s in evidence.sensors):
        raise ValueError(f"evidence.sensors must be sensor ids, got {evidence.sensors!r}")


def _evidence_row(evidence: Evidence) -> tuple[Any, ...]:
    return (
        round(evidence.t),
        ",".join(evidence.sensors),
        float(evidence.delta_g),
        float(evidence.product_confidence),
        float(evidence.person_confidence),
        evidence.note,
    )


def _evidence_from(row: Sequence[Any]) -> Evidence:
    at, sensors, delta_g, pc, qc, note = row
    return Evidence(float(at), tuple(s for s in sensors.split(",") if s), delta_g, pc, qc, note)


def _check_short_code(value: str, what: str, example: str) -> None:
    """Raise ValueError unless `value` is a non-empty short code (lower-case letters, digits, _)."""
    if not value or not _CODE.fullmatch(value):
        raise ValueError(f"{what} must be a short code such as {example}, got {value!r}")


def _review_row_id(item_id: int) -> int:
    """The row of a review item in its period's file (its id also names the period)."""
    return item_id & ((1 << _ROW_ID_BITS) - 1)


def _open_review_row(c: Connection, item_id: int) -> tuple[str, str]:
    """(visit, candidates as stored) of an open review item, inside a transaction on its file.

    Raises:
        UnknownRecordError: no such item.
        ChargeStateError: the item is not open (decided by a person, or withdrawn by the box).
    """
    rows = c.execute("SELECT visit, state, candidates FROM review_items WHERE id = ?",
                     (_review_row_id(item_id),)).fetchall()
    if not rows:
        raise UnknownRecordError(f"no review item {item_id}")
    visit_id, state, candidates = rows[0]
    if state != "open":
        raise ChargeStateError(f"review item {item_id} was already {state}")
    return visit_id, candidates


class Vault:
    """Encrypted, pseudonymous storage of the shop's visits, carts, charges and audit log.

    Thread-safe: every public method holds one lock; a retention run takes it chunk by chunk so the
    gate and the tills are never held up for long. Ids are random (never the pass nonce) and no
    method accepts a name, e-mail, card number, image, position or track.
    """

    def __init__(
        self,
        folder: Path,
        master: MasterKey,
        policy: RetentionPolicy,
        clock: Clock,
        keyring: Keyring,
        files: PeriodFiles,
        audit_conn: Connection,
        audit_log: AuditLog,
        chunk_rows: int,
    ) -> None:
        self._folder = folder
        self._master = master
        self._policy = policy
        self._clock = clock
        self._keyring = keyring
        self._files = files
        self._audit_conn = audit_conn
        self._audit = audit_log
        self._chunk_rows = chunk_rows
        self._lock = threading.RLock()
        self._retention_lock = threading.Lock()
        self._closed = False
        self._sales_period: dict[str, Period] = {}
        self._read_only = False
        self._folder_lock: FolderLock | None = None
        self.audit_intact_at_open = True

    # ----------------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        folder: Path,
        master_key: bytes,
        policy: RetentionPolicy,
        clock: Clock,
        *,
        chunk_rows: int = 5000,
        read_only: bool = False,
    ) -> Vault:
        """Open the vault in `folder` (creating a new one in an empty folder).

        A writable vault holds the folder's lock (one writer per vault) and, on opening, finishes
        what a crash interrupted, verifies the audit log and signs a checkpoint. A read-only vault
        (for the auditor's commands while the appliance runs) takes no lock and writes nothing.

        Args:
            folder: the vault's data folder; made with mode 0700 if missing.
            master_key: the 32-byte master key (from the service credential or the development key file).
            policy: the retention policy with the store's choices applied (`RetentionPolicy.choose`).
            clock: where "now" comes from; retention and stored times use nothing else.
            chunk_rows: rows deleted per transaction by retention runs.
            read_only: open for reading only.

        Raises:
            VaultKeyError: the key is wrong for this vault, or not a usable key.
            VaultError: the folder holds data but no keyring, another process has it open for
                writing, or a file cannot be opened.
        """
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be at least 1, got {chunk_rows}")
        master = MasterKey(bytes(master_key))
        if read_only and not folder.is_dir():
            raise VaultError(f"{folder}: no vault here")
        folder.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            logger.warning("%s is open to other users; the vault folder should be mode 0700", folder)
        lock = FolderLock(folder)
        if not read_only:
            lock.acquire()
        try:
            vault = cls._open_locked(folder, master, policy, clock, chunk_rows, read_only)
        except BaseException:
            lock.release()
            raise
        vault._folder_lock = lock
        return vault

    @classmethod
    def _open_locked(
        cls, folder: Path, master: MasterKey, policy: RetentionPolicy, clock: Clock, chunk_rows: int, read_only: bool
    ) -> Vault:
        now = clock.now()
        has_data = (folder / AUDIT_FILE).exists() or any(
            (folder / c.name).is_dir() for c in policy.classes if c.storage == "period"
        )
        keyring = Keyring.open(folder, master, now, create=not has_data and not read_only, read_only=read_only)
        try:
            audit_key = keyring.key(AUDIT_KEY_ID)
            if audit_key is None:
                if keyring.entry(AUDIT_KEY_ID) is not None or read_only:
                    raise VaultError("the audit log's key is missing; the vault cannot be opened")
                audit_key = keyring.create(AUDIT_KEY_ID, AUDIT, "box", None, now)
            audit_conn = open_database(folder / AUDIT_FILE, audit_key, create=not read_only)
            try:
                if not read_only:
                    create_tables(audit_conn, AUDIT_SCHEMA, AUDIT_FILE)
                audit_log = AuditLog(
                    audit_conn, keyring.identity(), {f.name: f.description for f in policy.audit_fields}
                )
            except BaseException:
                audit_conn.close()
                raise
        except BaseException:
            keyring.close()
            raise
        files = PeriodFiles(folder, keyring, policy, read_only=read_only)
        vault = cls(folder, master, policy, clock, keyring, files, audit_conn, audit_log, chunk_rows)
        vault._read_only = read_only
        try:
            if read_only:
                vault.audit_intact_at_open = not audit_log.open_problems
            else:
                vault._recover()
        except BaseException:
            vault.close()
            raise
        return vault

    def _recover(self) -> None:
        """Finish what a crash interrupted, check the audit log, and note the opening in it."""
        from appliance.vault.retention import mark_interrupted_runs

        with self._lock:
            interrupted = mark_interrupted_runs(self._audit_conn, self._stored_now())
            # A quick check (signed head against the stored frontier and the entry count); the full
            # check of every entry is `verify_audit`, run by `appliance audit verify` and the report.
            problems = self._audit.open_problems
            self.audit_intact_at_open = not problems
            if problems:
                logger.error("audit log failed its check at open: %s", "; ".join(problems))
                self._audit.keep_head()
            orphans = self._remove_orphan_tokens()
            self.audit(
                "vault.opened",
                master_key_id=self._master.id,
                generation=self._keyring.generation,
                count=orphans,
                intact=not problems,
                interrupted=interrupted,
            )
            self._audit.checkpoint(self._stored_now())

    def _remove_orphan_tokens(self) -> int:
        """Tokens written for a visit whose row never committed (a crash inside open_visit)."""
        removed = 0
        for period in self._files.live_periods(TOKENS):
            conn = self._files.connection(period)
            if conn is None:
                continue
            for visit_id, stored in read(conn, "SELECT visit, stored_at FROM payment_tokens", (), "read tokens"):
                sales = self._files.connection(self._files.period_at(SALES, stored))
                known = sales is not None and read(sales, "SELECT 1 FROM visits WHERE id = ?", (visit_id,))
                if not known:
                    with transaction(conn, "remove orphan token") as c:
                        c.execute("DELETE FROM payment_tokens WHERE visit = ?", (visit_id,))
                    removed += 1
            if removed:
                truncate_wal(conn, period.key_id)
        return removed

    # ----------------------------------------------------------------------------- properties

    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def policy(self) -> RetentionPolicy:
        return self._policy

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def master_key_id(self) -> str:
        return self._master.id

    @property
    def keyring(self) -> Keyring:
        """The key inventory (for the audit report; it never hands out key bytes to callers outside the vault)."""
        return self._keyring

    @property
    def files(self) -> PeriodFiles:
        return self._files

    @property
    def audit_log(self) -> AuditLog:
        return self._audit

    @property
    def audit_connection(self) -> Connection:
        return self._audit_conn

    @property
    def chunk_rows(self) -> int:
        return self._chunk_rows

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def _stored_now(self) -> int:
        return stored_time(self._clock.now())

    @property
    def read_only(self) -> bool:
        return self._read_only

    def _check_alive(self) -> None:
        """Refuse any use of a closed vault (every reading method starts here)."""
        if self._closed:
            raise VaultError("the vault is closed")

    def _check_open(self) -> None:
        """Refuse writes to a closed or read-only vault (every writing method starts here)."""
        if self._closed:
            raise VaultError("the vault is closed")
        if self._read_only:
            raise VaultError("the vault was opened read-only")

    # ----------------------------------------------------------------------------- visits

    def open_visit(
        self,
        *,
        entered_at: float,
        party: int,
        token: str | None,
        receipt_key: bytes | None,
        pass_nonce: str | None = None,
        pass_expires: float | None = None,
    ) -> str:
        """Record a visit that just came through the gate; returns its new random id.

        The payment token and the receipt key (`rk`, X25519 public key) are stored in the token file
        of the day, the token sealed once more under a key derived from that day's key. The token row
        is committed first: a crash before the visit row leaves an orphan token that the next open
        removes, never a visit whose token is missing.

        With `pass_nonce`, the pass is recorded as admitted (a keyed hash of the nonce, never the
        nonce, see `admitted_pass`) before anything else, with the visit's id. Opening a visit for a
        pass already recorded returns that visit's id and stores nothing, and a crash between the two
        steps is finished under the same id: a restarted box that sees the pass again (a source
        replayed, a scanner's redelivery) never opens a second visit for it.

        Args:
            entered_at: when the gate opened (from the gate's data); kept to the minute.
            party: people admitted on the pass, 1-10.
            token: the processor's payment token, or None (then the visit can't be charged).
            receipt_key: the pass's 32-byte receipt key, or None.
            pass_nonce: the pass's nonce (held in memory only), to recognise the pass again.
            pass_expires: the pass's `exp`, unix seconds (required with `pass_nonce`).
        """
        entered = _finite("entered_at", entered_at)
        if isinstance(party, bool) or not isinstance(party, int) or not 1 <= party <= MAX_PARTY:
            raise ValueError(f"party must be a whole number from 1 to {MAX_PARTY}, got {party!r}")
        if token is not None and (not isinstance(token, str) or not 1 <= len(token) <= MAX_TOKEN_CHARS):
            raise ValueError(f"token must be 1-{MAX_TOKEN_CHARS} characters or None")
        if receipt_key is not None and (not isinstance(receipt_key, bytes) or len(receipt_key) != 32):
            raise ValueError("receipt_key must be 32 bytes (an X25519 public key) or None")
        if pass_nonce is not None:
            if not isinstance(pass_nonce, str) or not _NONCE.fullmatch(pass_nonce):
                raise ValueError("pass_nonce must be 1-64 base64url characters")
            if pass_expires is None:
                raise ValueError("a pass_nonce needs its pass_expires")
            expires = _finite("pass_expires", pass_expires)
        with self._lock:
            self._check_open()
            now = self._clock.now()
            stored = stored_time(now)
            visit_id = secrets.token_hex(16)
            if pass_nonce is not None:
                known = self._admitted(pass_nonce)
                if known is not None and self._find_visit(known.visit) is not None:
                    return known.visit
                if known is not None:
                    visit_id = known.visit  # the pass was recorded, then the process died before its visit
                else:
                    period, conn = self._files.for_write(ADMITTED, now)
                    with transaction(conn, "record admitted pass") as c:
                        c.execute(
                            "INSERT INTO admitted_passes(pass_key, visit, expires_at, stored_at) VALUES (?, ?, ?, ?)",
                            (self._pass_key(period, pass_nonce), visit_id, math.ceil(expires / 60) * 60, stored),
                        )
                    crash_point("visit.pass_stored")
            if token is not None or receipt_key is not None:
                period, conn = self._files.for_write(TOKENS, now)
                sealed = self._seal_token(period, visit_id, token) if token is not None else None
                with transaction(conn, "store payment token") as c:
                    c.execute(
                        "INSERT OR REPLACE INTO payment_tokens(visit, token, receipt_key, stored_at) "
                        "VALUES (?, ?, ?, ?)",
                        (visit_id, sealed, receipt_key, stored),
                    )
                crash_point("visit.token_stored")
            period, conn = self._files.for_write(SALES, now)
            with transaction(conn, "open visit") as c:
                c.execute(
                    "INSERT INTO visits(id, entered_at, left_at, party, state, stored_at) "
                    "VALUES (?, ?, NULL, ?, 'open', ?)",
                    (visit_id, stored_time(entered), party, stored),
                )
            self._remember(visit_id, period)
            self.audit("visit.opened", visit=visit_id, party=party, has_token=token is not None)
            return visit_id

    def admitted_pass(self, pass_nonce: str) -> AdmittedPass | None:
        """The visit a pass opened, while the record of its admission is kept; None for a pass never seen."""
        if not isinstance(pass_nonce, str) or not _NONCE.fullmatch(pass_nonce):
            return None
        with self._lock:
            self._check_alive()
            return self._admitted(pass_nonce)

    def _admitted(self, pass_nonce: str) -> AdmittedPass | None:
        for period in self._files.live_periods(ADMITTED):
            conn = self._files.connection(period)
            if conn is None:
                continue
            rows = read(
                conn,
                "SELECT visit, expires_at FROM admitted_passes WHERE pass_key = ?",
                (self._pass_key(period, pass_nonce),),
            )
            if rows:
                return AdmittedPass(rows[0][0], int(rows[0][1]))
        return None

    def _pass_key(self, period: Period, pass_nonce: str) -> bytes:
        key = self._files.key(period)
        assert key is not None
        return hmac.new(derive(key, "walkout-vault admitted pass v1"), pass_nonce.encode(), hashlib.sha256).digest()

    def visit(self, visit_id: str) -> Visit | None:
        """The stored visit, or None if unknown or expired."""
        with self._lock:
            self._check_alive()
            found = self._find_visit(visit_id)
            if found is None:
                return None
            _, conn = found
            rows = read(conn, "SELECT id, entered_at, left_at, party, state FROM visits WHERE id = ?", (visit_id,))
            return Visit(*rows[0]) if rows else None

    def open_visits(self) -> list[Visit]:
        """Visits not closed yet, oldest first."""
        with self._lock:
            self._check_alive()
            out: list[Visit] = []
            for period in self._files.live_periods(SALES):
                conn = self._files.connection(period)
                if conn is not None:
                    rows = read(conn, "SELECT id, entered_at, left_at, party, state FROM visits WHERE state = 'open'")
                    out.extend(Visit(*r) for r in rows)
            return sorted(out, key=lambda v: (v.entered_at, v.id))

    def add_cart_line(self, visit_id: str, change: CartChange) -> None:
        """Store one cart change of an open visit with its evidence (sensors, weight change, confidences, decision)."""
        self.add_cart_lines(visit_id, (change,))

    def add_cart_lines(self, visit_id: str, changes: Iterable[CartChange]) -> None:
        """Store several cart changes of one open visit in one transaction (used by replays and benchmarks)."""
        changes = list(changes)
        for change in changes:
            if change.visit != visit_id:
                raise ValueError(f"cart change is for visit {change.visit!r}, not {visit_id!r}")
            if len(change.sku) > MAX_SKU_CHARS:
                raise ValueError(f"sku must be at most {MAX_SKU_CHARS} characters, got {len(change.sku)}")
            if isinstance(change.qty, bool) or not isinstance(change.qty, int):
                raise ValueError(f"qty must be a whole number, got {change.qty!r}")
            _finite("grams", change.grams)
            _check_evidence(change.evidence)
        with self._lock:
            self._check_open()
            self._require_open_visit(visit_id)
            now = self._clock.now()
            stored = stored_time(now)
            _, conn = self._files.for_write(EVIDENCE, now)
            with transaction(conn, "add cart line") as c:
                c.executemany(
                    "INSERT INTO cart_lines(visit, sku, qty, grams, evidence_at, sensors, delta_g, product_confidence, "
                    "person_confidence, decision, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (visit_id, ch.sku, int(ch.qty), float(ch.grams), *_evidence_row(ch.evidence), stored)
                        for ch in changes
                    ],
                )

    def cart_lines(self, visit_id: str) -> list[CartLine]:
        """The stored cart lines of a visit, in the order they were added (empty once expired)."""
        with self._lock:
            self._check_alive()
            out: list[CartLine] = []
            for period in reversed(self._files.live_periods(EVIDENCE)):
                conn = self._files.connection(period)
                if conn is None:
                    continue
                rows = read(
                    conn,
                    "SELECT sku, qty, grams, evidence_at, sensors, delta_g, product_confidence, person_confidence, "
                    "decision, stored_at FROM cart_lines WHERE visit = ? ORDER BY id",
                    (visit_id,),
                )
                out.extend(CartLine(visit_id, r[0], r[1], r[2], _evidence_from(r[3:9]), r[9]) for r in rows)
            return out

    # ----------------------------------------------------------------------------- review

    def add_review_item(self, visit_id: str, item: ReviewItem) -> int:
        """Store a line the box was not sure of; returns the item's id for `resolve_review_item`."""
        if item.visit != visit_id:
            raise ValueError(f"review item is for visit {item.visit!r}, not {visit_id!r}")
        _check_evidence(item.evidence)
        _check_short_code(item.reason, "review reason", "low_confidence")
        candidates = [[str(sku), int(qty)] for sku, qty in item.candidates]
        with self._lock:
            self._check_open()
            if self._find_visit(visit_id) is None:
                raise UnknownRecordError(f"no visit {visit_id}")
            now = self._clock.now()
            period, conn = self._files.for_write(EVIDENCE, now)
            with transaction(conn, "add review item") as c:
                cur = c.execute(
                    "INSERT INTO review_items(visit, reason, candidates, evidence_at, sensors, delta_g, "
                    "product_confidence, person_confidence, decision, state, stored_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'open', ?)",
                    (visit_id, item.reason, json.dumps(candidates), *_evidence_row(item.evidence), stored_time(now)),
                )
                row_id = int(cur.lastrowid)
            if row_id >= 1 << _ROW_ID_BITS:
                raise VaultError("too many review items in one period")
            item_id = (period.index << _ROW_ID_BITS) | row_id
            self.audit("review.added", visit=visit_id, item=item_id, reason=item.reason)
            return item_id

    def resolve_review_item(self, item_id: int, *, accepted: bool, sku: str | None, qty: int) -> None:
        """Record a person's decision on a review item: accepted (with the sku and quantity taken) or rejected.

        The decision is only recorded here; adding the accepted line to a cart or a charge is the caller's.
        """
        if accepted and (not sku or isinstance(qty, bool) or not isinstance(qty, int) or qty == 0):
            raise ValueError("an accepted review item needs the sku and a non-zero quantity")
        with self._lock:
            self._check_open()
            _, conn = self._review_item_file(item_id)
            with transaction(conn, "resolve review item") as c:
                visit_id, _ = _open_review_row(c, item_id)
                c.execute(
                    "UPDATE review_items SET state = ?, resolved_sku = ?, resolved_qty = ?, resolved_at = ? "
                    "WHERE id = ?",
                    (
                        "accepted" if accepted else "rejected",
                        sku if accepted else None,
                        qty if accepted else None,
                        self._stored_now(),
                        _review_row_id(item_id),
                    ),
                )
            self.audit("review.resolved", visit=visit_id, item=item_id, accepted=bool(accepted))

    def withdraw_review_item(self, item_id: int, *, reason: str = "returned_to_shelf") -> None:
        """The box takes back an open review item nobody is to decide any more (its units came back
        to a shelf while it waited): state `withdrawn`, audited, gone from `open_review_items`.

        Raises:
            UnknownRecordError: no such item (or its period has expired).
            ChargeStateError: the item is not open (a person decided it, or it was withdrawn already).
            ValueError: `reason` is not a short code.
        """
        _check_short_code(reason, "a withdrawal reason", "returned_to_shelf")
        with self._lock:
            self._check_open()
            _, conn = self._review_item_file(item_id)
            with transaction(conn, "withdraw review item") as c:
                visit_id, _ = _open_review_row(c, item_id)
                c.execute("UPDATE review_items SET state = 'withdrawn', resolved_at = ? WHERE id = ?",
                          (self._stored_now(), _review_row_id(item_id)))
            self.audit("review.withdrawn", visit=visit_id, item=item_id, reason=reason)

    def amend_review_item(self, item_id: int, candidates: Sequence[tuple[str, int]], *,
                          reason: str = "returned_to_shelf") -> None:
        """Replace the candidates of an open review item (some of its units came back to a shelf while
        it waited: a person is to decide only on the rest). The same candidates again change nothing
        and are not audited again, so a box replaying its input after a restart may ask twice.

        Raises:
            UnknownRecordError: no such item (or its period has expired).
            ChargeStateError: the item is not open (a person decided it, or it was withdrawn).
            ValueError: no candidates (withdraw the item instead), a malformed one, or a reason that
                is not a short code.
        """
        _check_short_code(reason, "an amendment reason", "returned_to_shelf")
        if not candidates:
            raise ValueError("an amended review item needs candidates (withdraw it when none are left)")
        for sku, qty in candidates:
            if not isinstance(sku, str) or not sku or len(sku) > MAX_SKU_CHARS:
                raise ValueError(f"a candidate's sku must be 1-{MAX_SKU_CHARS} characters, got {sku!r}")
            if isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0:
                raise ValueError(f"a candidate's quantity must be a whole number above 0, got {qty!r}")
        text = json.dumps([[sku, qty] for sku, qty in candidates])
        with self._lock:
            self._check_open()
            _, conn = self._review_item_file(item_id)
            with transaction(conn, "amend review item") as c:
                visit_id, before = _open_review_row(c, item_id)
                if before == text:
                    return
                c.execute("UPDATE review_items SET candidates = ? WHERE id = ?", (text, _review_row_id(item_id)))
            self.audit("review.amended", visit=visit_id, item=item_id, reason=reason)

    def review_item_ids(self, visit_id: str) -> list[int]:
        """The ids of every review item of a visit, whatever became of it, in the order they were stored."""
        with self._lock:
            self._check_alive()
            out: list[int] = []
            for period in self._files.live_periods(EVIDENCE):
                conn = self._files.connection(period)
                if conn is None:
                    continue
                rows = read(conn, "SELECT id FROM review_items WHERE visit = ?", (visit_id,))
                out.extend((period.index << _ROW_ID_BITS) | r[0] for r in rows)
            return sorted(out)

    def open_review_items(self) -> list[OpenReviewItem]:
        """Review items waiting for a decision, oldest first."""
        with self._lock:
            self._check_alive()
            out = []
            for period in reversed(self._files.live_periods(EVIDENCE)):
                conn = self._files.connection(period)
                if conn is None:
                    continue
                rows = read(
                    conn,
                    "SELECT id, visit, reason, candidates, evidence_at, sensors, delta_g, product_confidence, "
                    "person_confidence, decision, stored_at FROM review_items WHERE state = 'open' ORDER BY id",
                )
                for r in rows:
                    candidates = tuple((str(s), int(q)) for s, q in json.loads(r[3]))
                    out.append(
                        OpenReviewItem(
                            (period.index << _ROW_ID_BITS) | r[0],
                            r[1],
                            r[2],
                            candidates,
                            _evidence_from(r[4:10]),
                            r[10],
                        )
                    )
            return out

    def _review_item_file(self, item_id: int) -> tuple[Period, Connection]:
        if isinstance(item_id, bool) or not isinstance(item_id, int) or item_id <= 0:
            raise UnknownRecordError(f"no review item {item_id!r}")
        index = item_id >> _ROW_ID_BITS
        for period in self._files.live_periods(EVIDENCE):
            if period.index == index:
                conn = self._files.connection(period)
                if conn is not None:
                    return period, conn
        raise UnknownRecordError(f"no review item {item_id} (its period has expired or never existed)")

    # ----------------------------------------------------------------------------- charges

    def close_visit(
        self, visit_id: str, *, left_at: float, lines: Sequence[ReceiptLine], amount: int, currency: str
    ) -> Charge:
        """Close a visit's cart and write its charge in ONE transaction (step 1 of the outbox).

        The charge gets a new random order reference and a new random idempotency key, state
        `pending` (or `none_due` when the amount is 0, and then the token is destroyed at once).
        Closing a visit that is already closed with the same amount returns the existing charge,
        so a caller that crashed after the commit can safely ask again.

        Raises:
            UnknownRecordError: no such visit.
            ChargeStateError: the visit was closed with a different amount or currency.
            ValueError: the lines do not add up to `amount`, or a value is malformed.
        """
        left = _finite("left_at", left_at)
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise ValueError(f"amount must be a whole number of minor units >= 0, got {amount!r}")
        if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
            raise ValueError(f"currency must be an ISO 4217 code such as KRW, got {currency!r}")
        lines = tuple(lines)
        for ln in lines:
            if len(ln.sku) > MAX_SKU_CHARS or len(ln.name) > MAX_NAME_CHARS:
                raise ValueError(f"receipt line {ln.sku[:20]!r}: sku or name too long")
            if isinstance(ln.amount, bool) or not isinstance(ln.amount, int) or not isinstance(ln.qty, int):
                raise ValueError(f"receipt line {ln.sku!r}: amount and qty must be whole numbers")
        if sum(line.amount for line in lines) != amount:
            raise ValueError(f"the lines add up to {sum(line.amount for line in lines)}, not the amount {amount}")
        with self._lock:
            self._check_open()
            found = self._find_visit(visit_id)
            if found is None:
                raise UnknownRecordError(f"no visit {visit_id}")
            period, conn = found
            now = self._clock.now()
            stored = stored_time(now)
            self._files.keep_until(period, math.ceil(self._policy.retention(SALES).after(stored)))
            state = PENDING if amount > 0 else NONE_DUE
            order_ref = "ord_" + secrets.token_hex(16)
            idempotency_key = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
            with transaction(conn, "close visit") as c:
                rows = c.execute("SELECT state, entered_at FROM visits WHERE id = ?", (visit_id,)).fetchall()
                if not rows:
                    raise UnknownRecordError(f"no visit {visit_id}")
                if rows[0][0] == "closed":
                    existing = c.execute("SELECT order_ref FROM charges WHERE visit = ?", (visit_id,)).fetchall()
                    if existing:
                        charge = self._charge_in(c, existing[0][0])
                        assert charge is not None
                        if charge.amount == amount and charge.currency == currency:
                            return charge
                    raise ChargeStateError(f"visit {visit_id} is already closed with a different charge")
                left_minute = max(stored_time(left), rows[0][1])
                c.execute("UPDATE visits SET state = 'closed', left_at = ? WHERE id = ?", (left_minute, visit_id))
                c.execute(
                    "INSERT INTO charges(order_ref, visit, amount, currency, state, idempotency_key, processor_ref, "
                    "error_code, updated_at, stored_at) VALUES (?, ?, ?, ?, ?, ?, '', '', ?, ?)",
                    (order_ref, visit_id, amount, currency, state, idempotency_key, stored, stored),
                )
                c.executemany(
                    "INSERT INTO charge_lines(order_ref, line, sku, name, qty, grams, amount, stored_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (order_ref, i, ln.sku, ln.name, ln.qty, float(ln.grams), ln.amount, stored)
                        for i, ln in enumerate(lines)
                    ],
                )
            crash_point("visit.closed")
            charge = self._charge_in(conn, order_ref)
            assert charge is not None
            self.audit("visit.closed", visit=visit_id, amount=amount, currency=currency, count=len(lines), state=state)
            if state == NONE_DUE:
                self._destroy_token_of(visit_id, "none_due")
            return charge

    def charge(self, order_ref: str) -> Charge | None:
        """One charge by its order reference, or None."""
        with self._lock:
            self._check_alive()
            found = self._find_charge(order_ref)
            return None if found is None else self._charge_in(found[1], order_ref)

    def charge_for_visit(self, visit_id: str) -> Charge | None:
        """The charge of a visit, or None if it is not closed (or unknown)."""
        with self._lock:
            self._check_alive()
            found = self._find_visit(visit_id)
            if found is None:
                return None
            rows = read(found[1], "SELECT order_ref FROM charges WHERE visit = ?", (visit_id,))
            return self._charge_in(found[1], rows[0][0]) if rows else None

    def charges(self, states: Collection[str] | None = None) -> list[Charge]:
        """Charges in the given states (all when None), oldest first, with their receipt lines."""
        wanted = None if states is None else sorted(set(states))
        with self._lock:
            self._check_alive()
            out: list[Charge] = []
            for period in reversed(self._files.live_periods(SALES)):
                conn = self._files.connection(period)
                if conn is None:
                    continue
                where, params = "", tuple[str, ...]()
                if wanted is not None:
                    where = f" WHERE state IN ({', '.join('?' * len(wanted))})"
                    params = tuple(wanted)
                refs = read(conn, f"SELECT order_ref FROM charges{where} ORDER BY stored_at, rowid", params)
                for (ref,) in refs:
                    charge = self._charge_in(conn, ref)
                    if charge is not None:
                        out.append(charge)
            return out

    def set_charge_state(self, order_ref: str, state: str, *, processor_ref: str = "", error_code: str = "") -> None:
        """Write the processor's answer for a charge.

        Allowed moves are in `records.CHARGE_MOVES`: a final state never goes back to pending, and
        writing the same state again is a no-op (the outbox may repeat itself after a crash). The
        idempotency key never changes. A processor reference, once written, is kept.

        Raises:
            UnknownRecordError: no such charge.
            ChargeStateError: the move is not allowed.
        """
        if not _PROCESSOR_REF.fullmatch(processor_ref):
            raise ValueError("processor_ref must be the processor's id (letters, digits, _ . : / -)")
        if not _CODE.fullmatch(error_code):
            raise ValueError(f"error_code must be a short lower-case code, got {error_code!r}")
        with self._lock:
            self._check_open()
            found = self._find_charge(order_ref)
            if found is None:
                raise UnknownRecordError(f"no charge {order_ref}")
            _, conn = found
            with transaction(conn, "set charge state") as c:
                rows = c.execute(
                    "SELECT state, visit, processor_ref, error_code FROM charges WHERE order_ref = ?", (order_ref,)
                ).fetchall()
                current, visit_id, old_ref, old_error = rows[0]
                if not charge_move_allowed(current, state):
                    raise ChargeStateError(f"charge {order_ref} is {current}; it cannot become {state!r}")
                new_ref = old_ref or processor_ref
                if current == state and new_ref == old_ref and (error_code or old_error) == old_error:
                    return
                c.execute(
                    "UPDATE charges SET state = ?, processor_ref = ?, error_code = ?, updated_at = ? "
                    "WHERE order_ref = ?",
                    (state, new_ref, error_code or old_error, self._stored_now(), order_ref),
                )
            self.audit("charge.state", visit=visit_id, state=state, error=error_code or None)

    def _charge_in(self, conn: Connection, order_ref: str) -> Charge | None:
        rows = read(
            conn,
            "SELECT order_ref, visit, amount, currency, state, idempotency_key, processor_ref, error_code, stored_at, "
            "updated_at FROM charges WHERE order_ref = ?",
            (order_ref,),
        )
        if not rows:
            return None
        lines = tuple(
            ReceiptLine(sku, name, qty, grams, amount)
            for sku, name, qty, grams, amount in read(
                conn,
                "SELECT sku, name, qty, grams, amount FROM charge_lines WHERE order_ref = ? ORDER BY line",
                (order_ref,),
            )
        )
        ref, visit, amount, currency, state, key, processor_ref, error_code, created, updated = rows[0]
        return Charge(ref, visit, amount, currency, state, key, processor_ref, error_code, created, updated, lines)

    # ----------------------------------------------------------------------------- tokens

    def payment_token(self, order_ref: str) -> str | None:
        """The charge's payment token, decrypted; None once destroyed (or if the visit had none)."""
        with self._lock:
            self._check_alive()
            row = self._token_row(order_ref)
            if row is None:
                return None
            period, visit_id, sealed, _ = row
            if sealed is None:
                return None
            key = self._files.key(period)
            if key is None:
                return None
            return unseal(derive(key, "walkout-vault payment token v1"), bytes(sealed), visit_id).decode()

    def receipt_key(self, order_ref: str) -> bytes | None:
        """The shopper's X25519 receipt key for this charge, or None (none given, or destroyed)."""
        with self._lock:
            self._check_alive()
            row = self._token_row(order_ref)
            return None if row is None or row[3] is None else bytes(row[3])

    def receipt_seed(self, order_ref: str) -> bytes | None:
        """A secret of this charge for sealing its receipt deterministically (`seal_receipt(..., seed=...)`).

        Derived from the key of the charge's token file and the visit id, so it is the same on every
        retry and after a restart (the processor requires an identical request under one key), is
        unknown to the processor, and is gone with that day's key. None when the token file is gone.
        """
        with self._lock:
            self._check_alive()
            found = self._find_charge(order_ref)
            if found is None:
                raise UnknownRecordError(f"no charge {order_ref}")
            visit_id = read(found[1], "SELECT visit FROM charges WHERE order_ref = ?", (order_ref,))[0][0]
            tf = self._token_file(visit_id)
            key = None if tf is None else self._files.key(tf[0])
            if key is None:
                return None
            return hmac.new(derive(key, "walkout-vault receipt seed v1"), visit_id.encode(), hashlib.sha256).digest()

    def destroy_token(self, order_ref: str) -> None:
        """Destroy a charge's payment token and receipt key (overwritten on disk, WAL truncated).

        Idempotent. The outbox calls it once the processor's answer is final.
        """
        with self._lock:
            self._check_open()
            found = self._find_charge(order_ref)
            if found is None:
                raise UnknownRecordError(f"no charge {order_ref}")
            rows = read(found[1], "SELECT visit FROM charges WHERE order_ref = ?", (order_ref,))
            self._destroy_token_of(rows[0][0], "charge_final")

    def _destroy_token_of(self, visit_id: str, reason: str) -> bool:
        found = self._token_file(visit_id)
        if found is None:
            return False
        period, conn = found
        with transaction(conn, "destroy payment token") as c:
            deleted = c.execute("DELETE FROM payment_tokens WHERE visit = ?", (visit_id,)).rowcount
        if not deleted:
            return False
        crash_point("token.deleted")
        truncate_wal(conn, period.key_id)
        self.audit("token.destroyed", visit=visit_id, reason=reason)
        return True

    def _token_file(self, visit_id: str) -> tuple[Period, Connection] | None:
        found = self._find_visit(visit_id)
        if found is None:
            return None
        rows = read(found[1], "SELECT stored_at FROM visits WHERE id = ?", (visit_id,))
        period = self._files.period_at(TOKENS, rows[0][0])
        conn = self._files.connection(period)
        return None if conn is None else (period, conn)

    def _token_row(self, order_ref: str) -> tuple[Period, str, bytes | None, bytes | None] | None:
        found = self._find_charge(order_ref)
        if found is None:
            raise UnknownRecordError(f"no charge {order_ref}")
        visit_id = read(found[1], "SELECT visit FROM charges WHERE order_ref = ?", (order_ref,))[0][0]
        tf = self._token_file(visit_id)
        if tf is None:
            return None
        rows = read(tf[1], "SELECT token, receipt_key FROM payment_tokens WHERE visit = ?", (visit_id,))
        return None if not rows else (tf[0], visit_id, rows[0][0], rows[0][1])

    def _seal_token(self, period: Period, visit_id: str, token: str) -> bytes:
        key = self._files.key(period)
        assert key is not None
        return seal(derive(key, "walkout-vault payment token v1"), token.encode(), visit_id)

    # ----------------------------------------------------------------------------- refunds

    def refundable(self, order_ref: str) -> int:
        """How much of a succeeded charge can still be refunded (0 for any other state)."""
        with self._lock:
            self._check_alive()
            found = self._find_charge(order_ref)
            if found is None:
                raise UnknownRecordError(f"no charge {order_ref}")
            charge = self._charge_in(found[1], order_ref)
            assert charge is not None
            if charge.state != SUCCEEDED:
                return 0
            taken = read(
                found[1],
                "SELECT coalesce(sum(amount), 0) FROM refunds WHERE order_ref = ? AND state != ?",
                (order_ref, FAILED),
            )[0][0]
            return charge.amount - int(taken)

    def record_refund(
        self, order_ref: str, *, amount: int, sku: str | None = None, qty: int = 0, reason: str = ""
    ) -> Refund:
        """Record a refund to be sent: of one line (`sku`, `qty`) or of the whole visit (no sku).

        The refund gets its own random id and idempotency key, state `pending`. The charge must have
        succeeded; the refunds of a charge (and of one line) never add up to more than was charged.

        Raises:
            UnknownRecordError: no such charge, or the sku is not on its receipt.
            ChargeStateError: the charge has not succeeded, or the amount is more than is left.
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise ValueError(f"a refund amount must be a positive whole number, got {amount!r}")
        if not _CODE.fullmatch(reason):
            raise ValueError(f"reason must be a short code such as not_taken, got {reason!r}")
        if sku is not None and (isinstance(qty, bool) or not isinstance(qty, int) or qty <= 0):
            raise ValueError("a line refund needs a positive quantity")
        with self._lock:
            self._check_open()
            found = self._find_charge(order_ref)
            if found is None:
                raise UnknownRecordError(f"no charge {order_ref}")
            period, conn = found
            now = self._clock.now()
            stored = stored_time(now)
            self._files.keep_until(period, math.ceil(self._policy.retention(SALES).after(stored)))
            refund_id = "rf_" + secrets.token_hex(16)
            key = str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))
            with transaction(conn, "record refund") as c:
                charge = self._charge_in(c, order_ref)
                assert charge is not None
                if charge.state != SUCCEEDED:
                    raise ChargeStateError(f"charge {order_ref} is {charge.state}; only a paid charge can be refunded")
                taken = c.execute(
                    "SELECT coalesce(sum(amount), 0) FROM refunds WHERE order_ref = ? AND state != ?",
                    (order_ref, FAILED),
                ).fetchone()[0]
                if amount > charge.amount - taken:
                    raise ChargeStateError(
                        f"refund of {amount} is more than the {charge.amount - taken} left on charge {order_ref}"
                    )
                if sku is not None:
                    line_amount = sum(ln.amount for ln in charge.lines if ln.sku == sku)
                    line_qty = sum(ln.qty for ln in charge.lines if ln.sku == sku)
                    if not line_amount:
                        raise UnknownRecordError(f"{sku!r} is not on the receipt of charge {order_ref}")
                    line_taken, qty_taken = c.execute(
                        "SELECT coalesce(sum(amount), 0), coalesce(sum(qty), 0) FROM refunds "
                        "WHERE order_ref = ? AND sku = ? AND state != ?",
                        (order_ref, sku, FAILED),
                    ).fetchone()
                    if amount > line_amount - line_taken or (line_qty and qty > line_qty - qty_taken):
                        raise ChargeStateError(f"refund is more than is left of line {sku!r} on charge {order_ref}")
                c.execute(
                    "INSERT INTO refunds(id, order_ref, amount, sku, qty, reason, state, idempotency_key, "
                    "processor_ref, error_code, updated_at, stored_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, '', '', ?, ?)",
                    (refund_id, order_ref, amount, sku or "", qty if sku else 0, reason, key, stored, stored),
                )
                visit_id = charge.visit
            self._remember(refund_id, period)
            self.audit("refund.recorded", visit=visit_id, refund=refund_id, amount=amount, line=sku is not None)
            refund = self._refund_in(conn, refund_id)
            assert refund is not None
            return refund

    def set_refund_state(self, refund_id: str, state: str, *, processor_ref: str = "", error_code: str = "") -> None:
        """Write the processor's answer for a refund (pending -> succeeded or failed)."""
        if not _PROCESSOR_REF.fullmatch(processor_ref) or not _CODE.fullmatch(error_code):
            raise ValueError("processor_ref must be an id and error_code a short code")
        if state not in REFUND_STATES:
            raise ValueError(f"refund state must be one of {', '.join(REFUND_STATES)}, got {state!r}")
        with self._lock:
            self._check_open()
            found = self._find_refund(refund_id)
            if found is None:
                raise UnknownRecordError(f"no refund {refund_id}")
            with transaction(found[1], "set refund state") as c:
                current, order_ref, old_ref = c.execute(
                    "SELECT state, order_ref, processor_ref FROM refunds WHERE id = ?", (refund_id,)
                ).fetchone()
                if not refund_move_allowed(current, state):
                    raise ChargeStateError(f"refund {refund_id} is {current}; it cannot become {state!r}")
                if current == state and (old_ref or processor_ref) == old_ref:
                    return
                c.execute(
                    "UPDATE refunds SET state = ?, processor_ref = ?, error_code = ?, updated_at = ? WHERE id = ?",
                    (state, old_ref or processor_ref, error_code, self._stored_now(), refund_id),
                )
                visit_id = c.execute("SELECT visit FROM charges WHERE order_ref = ?", (order_ref,)).fetchone()[0]
            self.audit("refund.state", visit=visit_id, refund=refund_id, state=state, error=error_code or None)

    def refunds(self, order_ref: str | None = None, states: Collection[str] | None = None) -> list[Refund]:
        """Refunds of one charge (or of all), optionally in some states, oldest first."""
        with self._lock:
            self._check_alive()
            if order_ref is not None:
                found = self._find_charge(order_ref)
                periods = [] if found is None else [found[0]]
            else:
                periods = list(reversed(self._files.live_periods(SALES)))
            out = []
            for period in periods:
                conn = self._files.connection(period)
                if conn is None:
                    continue
                sql, params = "SELECT id FROM refunds WHERE 1 = 1", []
                if order_ref is not None:
                    sql += " AND order_ref = ?"
                    params.append(order_ref)
                if states is not None:
                    wanted = sorted(set(states))
                    sql += f" AND state IN ({', '.join('?' * len(wanted))})"
                    params.extend(wanted)
                for (rid,) in read(conn, sql + " ORDER BY stored_at, rowid", tuple(params)):
                    refund = self._refund_in(conn, rid)
                    if refund is not None:
                        out.append(refund)
            return out

    def _refund_in(self, conn: Connection, refund_id: str) -> Refund | None:
        rows = read(
            conn,
            "SELECT id, order_ref, amount, sku, qty, reason, state, idempotency_key, processor_ref, error_code, "
            "stored_at, updated_at FROM refunds WHERE id = ?",
            (refund_id,),
        )
        return Refund(*rows[0]) if rows else None

    # ----------------------------------------------------------------------------- audit

    def audit(self, kind: str, **pseudonymous_fields: Any) -> None:
        """Append an entry to the tamper-evident audit log.

        Only fields the policy declares are accepted, and only numbers, flags and id-like codes:
        the log can't carry a name, a token or free text. None values are left out.
        """
        fields = {k: v for k, v in pseudonymous_fields.items() if v is not None}
        with self._lock:
            self._check_open()
            self._audit.append(kind, fields, self._stored_now())

    def checkpoint(self) -> Checkpoint:
        """Sign and keep a checkpoint of the audit log now (export it to keep it off the box)."""
        with self._lock:
            self._check_open()
            return self._audit.checkpoint(self._stored_now())

    def verify_audit(self, external: Sequence[Checkpoint] = ()) -> AuditVerdict:
        """Check the audit log against its hashes, its signed head, its checkpoints and `external` ones."""
        with self._lock:
            self._check_alive()
            return self._audit.verify(external)

    # ----------------------------------------------------------------------------- retention and keys

    def run_retention(self) -> RetentionRun:
        """Delete what is due, destroy expired period keys, and record the run (see retention.py)."""
        from appliance.vault.retention import RetentionEngine

        self._check_open()
        with self._retention_lock:  # one run at a time; a second caller waits for the first to finish
            return RetentionEngine(self).run()

    def rotate_master_key(self, new_master_key: bytes) -> None:
        """Re-wrap every key under a new master key (the old one no longer opens the vault)."""
        new = MasterKey(bytes(new_master_key))
        with self._lock:
            self._check_open()
            old_id = self._master.id
            self._keyring.rotate(new, self._clock.now())
            self._master = new
            self.audit("key.master_rotated", master_key_id=new.id, previous=old_id, generation=self._keyring.generation)

    def close(self) -> None:
        """Checkpoint, truncate and close every file. The vault can't be used afterwards."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._files.close()
            close_quietly(self._audit_conn, AUDIT_FILE, checkpoint=not self._read_only)
            self._keyring.close(checkpoint=not self._read_only)
            if self._folder_lock is not None:
                self._folder_lock.release()

    def __enter__(self) -> Vault:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------------------- lookups

    def _remember(self, key: str, period: Period) -> None:
        if len(self._sales_period) >= _CACHE_LIMIT:
            self._sales_period.clear()
        self._sales_period[key] = period

    def _find(self, key: str, sql: str) -> tuple[Period, Connection] | None:
        if not isinstance(key, str) or not key:
            return None
        cached = self._sales_period.get(key)
        if cached is not None:
            conn = self._files.connection(cached)
            if conn is not None and read(conn, sql, (key,)):
                return cached, conn
            self._sales_period.pop(key, None)
        for period in self._files.live_periods(SALES):
            conn = self._files.connection(period)
            if conn is not None and read(conn, sql, (key,)):
                self._remember(key, period)
                return period, conn
        return None

    def _find_visit(self, visit_id: str) -> tuple[Period, Connection] | None:
        return self._find(visit_id, "SELECT 1 FROM visits WHERE id = ?")

    def _find_charge(self, order_ref: str) -> tuple[Period, Connection] | None:
        return self._find(order_ref, "SELECT 1 FROM charges WHERE order_ref = ?")

    def _find_refund(self, refund_id: str) -> tuple[Period, Connection] | None:
        return self._find(refund_id, "SELECT 1 FROM refunds WHERE id = ?")

    def _require_open_visit(self, visit_id: str) -> None:
        found = self._find_visit(visit_id)
        if found is None:
            raise UnknownRecordError(f"no visit {visit_id}")
        state = read(found[1], "SELECT state FROM visits WHERE id = ?", (visit_id,))[0][0]
        if state != "open":
            raise ChargeStateError(f"visit {visit_id} is {state}; its cart can't change")

    def final_charges_with_tokens(self) -> list[str]:
        """Order references of final charges whose token still exists (the outbox should have destroyed it)."""
        with self._lock:
            self._check_alive()
            out = []
            for period in self._files.live_periods(TOKENS):
                conn = self._files.connection(period)
                if conn is None:
                    continue
                for visit_id, stored in read(conn, "SELECT visit, stored_at FROM payment_tokens"):
                    sales = self._files.connection(self._files.period_at(SALES, stored))
                    if sales is None:
                        continue
                    rows = read(sales, "SELECT order_ref, state FROM charges WHERE visit = ?", (visit_id,))
                    if rows and rows[0][1] in FINAL_CHARGE_STATES:
                        out.append(rows[0][0])
            return out
