"""The retention engine: deletes what is due in chunks, destroys expired period keys, records each run.

A run, in order:
  1. payment tokens past their limit are deleted; a charge still pending for one becomes
     `failed` (token_expired), since it can no longer be made;
  2. tokens of charges that are already final are deleted (the outbox should have done it);
  3. rows of every other class past their limit are deleted, `chunk_rows` per transaction;
  4. audit entries past their limit lose their bodies (their hashes stay, so the log verifies);
  5. period keys whose whole period has expired are destroyed, then their files deleted;
  6. files no live key can open (left by a crash or restored from a backup) are removed;
  7. every file touched is checkpointed, its WAL truncated and its free pages released.
Each chunk is its own transaction and the vault lock is taken per chunk, so a kill -9 loses
nothing that is kept and the gate and tills are never held up for a whole run. The run is
written to audit.db (`retention_runs`) and the audit log; a run that never finished shows up
as `interrupted` at the next open.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from appliance.vault.crashpoints import crash_point
from appliance.vault.database import (
    DEFAULT_CACHE_KIB,
    Connection,
    read,
    release_free_pages,
    set_cache,
    transaction,
    truncate_wal,
)
from appliance.vault.periods import Period, period_from_label, stored_time
from appliance.vault.records import FAILED, PENDING, RetentionRun

if TYPE_CHECKING:
    from appliance.vault.vault import Vault

logger = logging.getLogger(__name__)

TOKENS = "payment_token"
AUDIT = "audit_log"
DELETE_CACHE_KIB = 64 * 1024
_PROGRESS_EVERY = 200_000


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A retention run as recorded in audit.db."""

    id: int
    started_at: int
    finished_at: int | None
    status: str
    summary: dict[str, Any] = field(hash=False)


def mark_interrupted_runs(conn: Connection, at: int) -> int:
    """Mark runs left `running` by a crash as `interrupted`; returns how many."""
    with transaction(conn, "mark interrupted retention runs") as c:
        return int(
            c.execute(
                "UPDATE retention_runs SET status = 'interrupted', finished_at = ? WHERE status = 'running'", (at,)
            ).rowcount
        )


def last_runs(conn: Connection, limit: int = 10) -> list[RunRecord]:
    """The most recent retention runs, newest first."""
    rows = read(
        conn,
        "SELECT id, started_at, finished_at, status, summary FROM retention_runs ORDER BY id DESC LIMIT ?",
        (limit,),
        "read retention runs",
    )
    return [RunRecord(r[0], r[1], r[2], r[3], json.loads(r[4])) for r in rows]


class RetentionEngine:
    """One retention run over an open vault (see the module docstring for the steps)."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault
        self._files = vault.files
        self._policy = vault.policy
        self._chunk = vault.chunk_rows
        self._touched: set[Period] = set()

    def run(self) -> RetentionRun:
        v = self._vault
        now = v.clock.now()
        started = stored_time(now)
        with v.lock:
            with transaction(v.audit_connection, "start retention run") as c:
                run_id = int(
                    c.execute(
                        "INSERT INTO retention_runs(started_at, finished_at, status, summary) "
                        "VALUES (?, NULL, 'running', '{}')",
                        (started,),
                    ).lastrowid
                )
            v.audit("retention.started", run=run_id)
        logger.info("retention run %s started", run_id)
        deleted: Counter[str] = Counter()
        charges_failed = self._expire_tokens(now, deleted)
        tokens_destroyed = self._destroy_tokens_of_final_charges()
        for c in self._files.period_classes():
            if c.name != TOKENS:
                self._delete_due_rows(c.name, now, deleted)
        pruned = self._prune_audit(now)
        destroyed = self._destroy_due_keys(now)
        orphans = self._remove_orphans()
        self._compact()
        finished = stored_time(v.clock.now())
        run = RetentionRun(
            started_at=started,
            finished_at=finished,
            deleted=dict(deleted),
            keys_destroyed=tuple(destroyed),
            tokens_destroyed=tokens_destroyed,
            charges_failed=charges_failed,
            audit_bodies_pruned=pruned,
            orphan_files_removed=orphans,
        )
        summary = {
            "deleted": dict(deleted),
            "keys_destroyed": list(destroyed),
            "tokens_destroyed": tokens_destroyed,
            "charges_failed": charges_failed,
            "audit_bodies_pruned": pruned,
            "orphan_files_removed": orphans,
        }
        with v.lock:
            for table, n in sorted(deleted.items()):
                v.audit("retention.deleted", run=run_id, table=table, count=n)
            with transaction(v.audit_connection, "finish retention run") as c:
                c.execute(
                    "UPDATE retention_runs SET finished_at = ?, status = 'finished', summary = ? WHERE id = ?",
                    (finished, json.dumps(summary, sort_keys=True), run_id),
                )
            v.audit(
                "retention.finished",
                run=run_id,
                count=run.total_deleted,
                keys_destroyed=len(destroyed),
                tokens_destroyed=tokens_destroyed,
                charges_failed=charges_failed,
                pruned=pruned,
                orphans=orphans,
            )
            v.checkpoint()
        logger.info(
            "retention run %s finished: %s rows deleted, %s keys destroyed, %s tokens destroyed",
            run_id,
            run.total_deleted,
            len(destroyed),
            tokens_destroyed,
        )
        return run

    def _expire_tokens(self, now: float, deleted: Counter[str]) -> int:
        v = self._vault
        cutoff = self._policy.retention(TOKENS).latest_expired(now)
        failed = 0
        for period in self._files.live_periods(TOKENS):
            if period.start > cutoff:
                continue
            while True:
                with v.lock:
                    conn = self._files.connection(period)
                    if conn is None:
                        break
                    visits = [
                        r[0]
                        for r in read(
                            conn, "SELECT visit FROM payment_tokens WHERE stored_at <= ? LIMIT ?", (cutoff, self._chunk)
                        )
                    ]
                if not visits:
                    break
                for visit_id in visits:
                    charge = v.charge_for_visit(visit_id)
                    if charge is not None and charge.state == PENDING:
                        # Without its token the charge can never be made: say so rather than leave it pending.
                        v.set_charge_state(charge.order_ref, FAILED, error_code="token_expired")
                        failed += 1
                with v.lock:
                    conn = self._files.connection(period)
                    if conn is None:
                        break
                    with transaction(conn, "delete expired tokens") as c:
                        n = sum(
                            c.execute("DELETE FROM payment_tokens WHERE visit = ?", (visit_id,)).rowcount
                            for visit_id in visits
                        )
                    for visit_id in visits:
                        v.audit("token.destroyed", visit=visit_id, reason="expired")
                deleted["payment_tokens"] += n
                self._touched.add(period)
        return failed

    def _destroy_tokens_of_final_charges(self) -> int:
        v = self._vault
        refs = v.final_charges_with_tokens()
        for ref in refs:
            v.destroy_token(ref)
        if refs:
            logger.warning("destroyed %s payment tokens of final charges that the outbox had left", len(refs))
        return len(refs)

    def _delete_due_rows(self, record_class: str, now: float, deleted: Counter[str]) -> None:
        v = self._vault
        c = self._policy.record_class(record_class)
        cutoff = self._policy.retention(record_class).latest_expired(now)
        for period in self._files.live_periods(record_class):
            if period.start > cutoff:
                continue  # everything in it was stored after the cutoff
            entry = v.keyring.entry(period.key_id)
            if entry is not None and entry.destroy_after is not None and entry.destroy_after <= now:
                continue  # the whole period is shredded in a moment
            for table in (t.name for t in c.tables):
                done = 0
                while True:
                    with v.lock:
                        conn = self._files.connection(period)
                        if conn is None:
                            break
                        if period not in self._touched:
                            set_cache(conn, DELETE_CACHE_KIB)
                            self._touched.add(period)
                        with transaction(conn, f"delete expired {table}") as tx:
                            n = int(
                                tx.execute(
                                    f"DELETE FROM {table} WHERE rowid IN "
                                    f"(SELECT rowid FROM {table} WHERE stored_at <= ? LIMIT ?)",
                                    (cutoff, self._chunk),
                                ).rowcount
                            )
                    done += n
                    crash_point("retention.chunk")
                    if done and done % _PROGRESS_EVERY < n:
                        logger.info("retention: %s rows of %s deleted from %s so far", done, table, period.key_id)
                    if n < self._chunk:
                        break
                if done:
                    deleted[table] += done
                    logger.info("retention: deleted %s expired rows of %s from %s", done, table, period.key_id)

    def _prune_audit(self, now: float) -> int:
        v = self._vault
        cutoff = self._policy.retention(AUDIT).latest_expired(now)
        with v.lock:
            n = v.audit_log.prune(cutoff, self._chunk)
            if n:
                truncate_wal(v.audit_connection, "audit.db")
                release_free_pages(v.audit_connection)
                truncate_wal(v.audit_connection, "audit.db")
        return n

    def _destroy_due_keys(self, now: float) -> list[str]:
        v = self._vault
        destroyed = []
        for entry in v.keyring.entries():
            if not entry.live or entry.destroy_after is None or entry.destroy_after > now:
                continue
            c = self._policy.record_class(entry.record_class)
            if c.key_period is None:
                continue
            period = period_from_label(entry.record_class, c.key_period, entry.period)
            with v.lock:
                removed = self._files.destroy(period, now)
                self._touched.discard(period)
                v.audit("key.destroyed", key_id=entry.id, count=len(removed))
            destroyed.append(entry.id)
            logger.info(
                "retention: period %s expired; its key was destroyed and %s files deleted", entry.id, len(removed)
            )
        return destroyed

    def _remove_orphans(self) -> int:
        v = self._vault
        with v.lock:
            orphans = self._files.orphans()
            for p in orphans:
                p.unlink(missing_ok=True)
                logger.info("retention: removed %s, which no live key can open", p.name)
        return len(orphans)

    def _compact(self) -> None:
        v = self._vault
        for period in sorted(self._touched, key=lambda p: p.key_id):
            with v.lock:
                conn = self._files.connection(period)
                if conn is None:
                    continue
                truncate_wal(conn, period.key_id)
                release_free_pages(conn)
                truncate_wal(conn, period.key_id)
                set_cache(conn, DEFAULT_CACHE_KIB)
