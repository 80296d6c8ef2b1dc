"""The auditor's report: the policy, what is actually stored (read from the files), and every violation.

`build_report` reads a (usually read-only) vault and produces plain data; `render_text` and
`AuditReport.as_json` present it. A violation is anything an auditor should not accept: a record
kept past its limit (beyond the retention schedule's grace), a key not destroyed on time, a token
kept after its charge was final, a column the policy does not declare, a file that is not an
encrypted vault file, a retention engine that has stopped running, or an audit log that fails
verification.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import sqlcipher3

from appliance.vault.audit import AuditVerdict, Checkpoint, public_key_text
from appliance.vault.database import SQLITE_HEADER, Connection, read
from appliance.vault.keyring import KeyEntry, keyring_files
from appliance.vault.lock import LOCK_FILE
from appliance.vault.policy import Duration, RecordClass
from appliance.vault.retention import RunRecord, last_runs
from appliance.vault.schema import PERIOD_SCHEMAS, create_tables, table_columns
from appliance.vault.vault import AUDIT_FILE, Vault

AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("under 1 day", 86400.0),
    ("1-7 days", 7 * 86400.0),
    ("7-30 days", 30 * 86400.0),
    ("30 days-1 year", 365.2425 * 86400.0),
    ("1-5 years", 5 * 365.2425 * 86400.0),
    ("over 5 years", math.inf),
)


@dataclass(frozen=True, slots=True)
class Violation:
    """One thing an auditor must not accept; `code` is stable, `message` says what and where."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class ColumnStatus:
    name: str
    description: str
    declared: bool
    present: bool


@dataclass(frozen=True, slots=True)
class TableStatus:
    """One table as found on disk: its columns against the policy, its rows by age, its oldest row."""

    name: str
    record_class: str
    files: int
    columns: tuple[ColumnStatus, ...]
    rows: int
    by_age: dict[str, int] = field(hash=False)
    oldest_stored_at: int | None = None
    limit: str = ""
    overdue_rows: int = 0


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Everything `appliance audit report` prints."""

    generated_at: float
    master_key_id: str
    box_public_key: str
    classes: tuple[RecordClass, ...]
    recipients: tuple[str, ...]
    tables: tuple[TableStatus, ...]
    keys: tuple[KeyEntry, ...]
    runs: tuple[RunRecord, ...]
    audit: AuditVerdict
    head: Checkpoint | None
    violations: tuple[Violation, ...]
    notices: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        """The report as JSON-ready data (no key material, no record contents)."""
        return {
            "generated_at": _iso(self.generated_at),
            "ok": self.ok,
            "master_key_id": self.master_key_id,
            "box_public_key": self.box_public_key,
            "policy": [_class_json(c) for c in self.classes],
            "recipients": list(self.recipients),
            "inventory": [
                {
                    "table": t.name,
                    "class": t.record_class,
                    "files": t.files,
                    "rows": t.rows,
                    "rows_by_age": t.by_age,
                    "oldest": _iso(t.oldest_stored_at) if t.oldest_stored_at is not None else None,
                    "limit": t.limit,
                    "rows_past_limit": t.overdue_rows,
                    "columns": [
                        {"name": c.name, "description": c.description, "declared": c.declared, "present": c.present}
                        for c in t.columns
                    ],
                }
                for t in self.tables
            ],
            "keys": [
                {
                    "id": k.id,
                    "class": k.record_class,
                    "period": k.period,
                    "created": _iso(k.created_at),
                    "destroy_after": _iso(k.destroy_after) if k.destroy_after is not None else None,
                    "destroyed": _iso(k.destroyed_at) if k.destroyed_at is not None else None,
                }
                for k in self.keys
            ],
            "retention_runs": [
                {
                    "id": r.id,
                    "started": _iso(r.started_at),
                    "finished": _iso(r.finished_at) if r.finished_at is not None else None,
                    "status": r.status,
                    "summary": r.summary,
                }
                for r in self.runs
            ],
            "audit_log": {
                "entries": self.audit.size,
                "pruned": self.audit.pruned,
                "checkpoints_checked": self.audit.checkpoints_checked,
                "intact": self.audit.ok,
                "problems": list(self.audit.problems),
                "head": self.head.as_json() if self.head else None,
            },
            "violations": [{"code": v.code, "message": v.message} for v in self.violations],
            "notices": list(self.notices),
        }


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _class_json(c: RecordClass) -> dict[str, Any]:
    return {
        "name": c.name,
        "title": c.title,
        "stored": c.stored,
        "personal": c.personal,
        "purpose": c.purpose,
        "legal_basis": c.legal_basis,
        "subjects": c.subjects,
        "ends": c.ends,
        "retention": str(c.retention) if c.retention else None,
        "bounds": [str(c.minimum), str(c.maximum)] if c.minimum and c.maximum else None,
        "setting": f"vault.{c.setting}" if c.setting else None,
        "key_period": c.key_period,
        "tables": [t.name for t in c.tables],
    }


def _age_counts(conn: Connection, table: str, now: float) -> list[int]:
    bounds = [now - limit for _, limit in AGE_BUCKETS[:-1]]
    cases = ", ".join(
        f"coalesce(sum(stored_at > ? {'AND stored_at <= ?' if i else ''}), 0)" for i in range(len(bounds))
    )
    params: list[float] = []
    for i, b in enumerate(bounds):
        params.append(b)
        if i:
            params.append(bounds[i - 1])
    sql = f"SELECT {cases}, coalesce(sum(stored_at <= ?), 0) FROM {table}"
    params.append(bounds[-1])
    return [int(x) for x in read(conn, sql, tuple(params), f"count {table}")[0]]


def build_report(vault: Vault, *, grace_s: float) -> AuditReport:
    """Inspect the vault and judge it against its policy.

    Args:
        vault: an open vault (read-only is enough).
        grace_s: how far past its limit a record may be before it is a violation; the CLI uses two
            retention intervals, since the engine deletes on a schedule, not at the exact second.
    """
    now = vault.clock.now()
    policy = vault.policy
    violations: list[Violation] = []
    notices: list[str] = []
    tables: list[TableStatus] = []

    for c in policy.classes:
        if not c.stored:
            continue
        # Files are opened one at a time as they are read: a vault holds more period files than it
        # keeps open, so a connection held across the loop could be closed under us.
        sources: list[Callable[[], Connection | None]] = []
        probe = False
        if c.storage == "period":
            for period in vault.files.live_periods(c.name):
                if vault.files.path(period).exists():
                    sources.append(partial(vault.files.connection, period))
            if not sources:
                # No file of this class yet: show the tables it would get, from an empty database in memory.
                probe_db = sqlcipher3.connect(":memory:", isolation_level=None)
                create_tables(probe_db, PERIOD_SCHEMAS[c.name], c.name)
                sources.append(partial(_same, probe_db))
                probe = True
        elif c.storage == "audit":
            sources.append(lambda: vault.audit_connection)
        else:
            sources.append(lambda: vault.keyring.connection)
        tables.extend(_inspect_class(c, sources, now, grace_s, violations, on_disk=not probe))

    keys = vault.keyring.entries()
    for k in keys:
        if k.live and k.destroy_after is not None and k.destroy_after + grace_s < now:
            violations.append(
                Violation("key_not_destroyed", f"key {k.id} should have been destroyed at {_iso(k.destroy_after)}")
            )

    for ref in vault.final_charges_with_tokens():
        charge = vault.charge(ref)
        if charge is not None and charge.updated_at + grace_s < now:
            violations.append(
                Violation(
                    "token_kept",
                    f"visit {charge.visit}: its payment token still exists though its charge has been "
                    f"{charge.state} since {_iso(charge.updated_at)}",
                )
            )

    runs = last_runs(vault.audit_connection, 10)
    finished = [r for r in runs if r.status == "finished"]
    has_data = any(t.rows for t in tables if t.record_class in ("payment_token", "event_evidence", "sales_record"))
    if has_data:
        if not finished:
            violations.append(Violation("retention_not_running", "the retention engine has never finished a run"))
        elif (finished[0].finished_at or 0) + grace_s < now:
            violations.append(
                Violation(
                    "retention_not_running",
                    f"the last finished retention run was at {_iso(finished[0].finished_at or 0)}",
                )
            )
    if runs and runs[0].status == "interrupted":
        notices.append(f"the latest retention run ({runs[0].id}) was interrupted; the next run completes its work")

    _inspect_files(vault, violations, notices)

    verdict = vault.verify_audit()
    for problem in verdict.problems:
        violations.append(Violation("audit_log_tampered", problem))

    return AuditReport(
        generated_at=now,
        master_key_id=vault.master_key_id,
        box_public_key=public_key_text(vault.audit_log.public_key),
        classes=policy.classes,
        recipients=policy.recipients,
        tables=tuple(tables),
        keys=tuple(keys),
        runs=tuple(runs),
        audit=verdict,
        head=vault.audit_log.head(),
        violations=tuple(violations),
        notices=tuple(notices),
    )


def _same(conn: Connection) -> Connection:
    return conn


def _inspect_class(
    c: RecordClass,
    sources: Sequence[Callable[[], Connection | None]],
    now: float,
    grace_s: float,
    violations: list[Violation],
    *,
    on_disk: bool,
) -> list[TableStatus]:
    found: dict[str, set[str]] = {}
    files_with: dict[str, int] = {}
    for source in sources:
        conn = source()
        if conn is None:
            continue
        for table, names in table_columns(conn).items():
            found.setdefault(table, set()).update(names)
            files_with[table] = files_with.get(table, 0) + 1
    declared_tables = {t.name: t for t in c.tables}
    for table in sorted(set(found) - set(declared_tables)):
        violations.append(Violation("undeclared_table", f"table {table} ({c.name}) is not declared in the policy"))
    out = []
    for t in c.tables:
        present = found.get(t.name, set())
        declared = set(t.column_names)
        columns = [ColumnStatus(col.name, col.description, True, col.name in present) for col in t.columns]
        for extra in sorted(present - declared):
            columns.append(ColumnStatus(extra, "", False, True))
            violations.append(
                Violation("undeclared_column", f"column {t.name}.{extra} ({c.name}) is not declared in the policy")
            )
        rows = 0
        ages = [0] * len(AGE_BUCKETS)
        oldest: int | None = None
        overdue = 0
        limit: Duration | None = c.retention if c.storage in ("period", "audit") else None
        counted = "stored_at" in declared
        for source in sources:
            conn = source()
            if conn is None or t.name not in table_columns(conn):
                continue
            rows += int(read(conn, f"SELECT count(*) FROM {t.name}")[0][0])
            if not counted:
                continue
            body = " AND body IS NOT NULL" if t.name == "entries" else ""
            for i, n in enumerate(_age_counts(conn, t.name, now)):
                ages[i] += n
            first = read(conn, f"SELECT min(stored_at) FROM {t.name} WHERE 1 = 1{body}")[0][0]
            if first is not None:
                oldest = first if oldest is None else min(oldest, first)
            if limit is not None:
                cutoff = limit.latest_expired(now - grace_s)
                overdue += int(read(conn, f"SELECT count(*) FROM {t.name} WHERE stored_at <= ?{body}", (cutoff,))[0][0])
        if overdue:
            violations.append(
                Violation(
                    "kept_too_long",
                    f"{overdue} rows of {t.name} are older than {limit.describe() if limit else ''} (the oldest "
                    f"was stored {_iso(oldest or 0)})",
                )
            )
        out.append(
            TableStatus(
                name=t.name,
                record_class=c.name,
                files=files_with.get(t.name, 0) if on_disk else 0,
                columns=tuple(columns),
                rows=rows,
                by_age={label: n for (label, _), n in zip(AGE_BUCKETS, ages)} if counted else {},
                oldest_stored_at=oldest,
                limit=str(limit) if limit and counted else "",
                overdue_rows=overdue,
            )
        )
    return out


def _inspect_files(vault: Vault, violations: list[Violation], notices: list[str]) -> None:
    folder = vault.folder
    known_top = {AUDIT_FILE, LOCK_FILE} | {p.name for _, _, p in keyring_files(folder)}
    period_dirs = {c.name for c in vault.policy.classes if c.storage == "period"}
    for p in sorted(folder.rglob("*")):
        if p.is_dir():
            if p.parent == folder and p.name in period_dirs:
                continue
            violations.append(Violation("unexpected_file", f"{p.relative_to(folder)}: unexpected folder in the vault"))
            continue
        rel = p.relative_to(folder)
        base = p.name.removesuffix("-wal").removesuffix("-shm")
        expected = (p.parent == folder and base in known_top) or (
            p.parent.parent == folder and p.parent.name in period_dirs and base.endswith(".db")
        )
        if not expected:
            violations.append(Violation("unexpected_file", f"{rel}: not a vault file (copies belong off the box)"))
        if not p.name.endswith(("-wal", "-shm")) and p.name != LOCK_FILE:
            with p.open("rb") as f:
                if f.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                    violations.append(Violation("plaintext_file", f"{rel} is an unencrypted SQLite file"))
    for p in vault.files.orphans():
        notices.append(f"{p.relative_to(folder)} has no live key (unreadable); the next retention run removes it")


def _age_bar(age_s: float, limit: Duration, width: int = 30) -> str:
    """A one-line picture of an age against its limit: [#####.....|] 12 of 30 days."""
    fraction = max(0.0, age_s) / limit.nominal_s
    filled = min(width, round(fraction * width))
    bar = "#" * filled + "." * (width - filled)
    over = "!" * min(10, round((fraction - 1) * width)) if fraction > 1 else ""
    unit_s = limit.nominal_s / limit.amount
    return f"[{bar}|{over}] {age_s / unit_s:.1f} of {limit.describe()}"


def render_text(report: AuditReport) -> str:
    """The report for people: policy, inventory, keys, runs, audit log, violations."""
    out: list[str] = []
    w = out.append
    w(f"Audit report of the vault, {_iso(report.generated_at)}")
    w(f"master key id {report.master_key_id}; box signing key {report.box_public_key}")
    w("")
    w("POLICY (policy/retention.toml)")
    for c in report.classes:
        if c.stored:
            bounds = f" (owner may choose {c.minimum} to {c.maximum})" if c.minimum and c.maximum else ""
            keep = f"kept {c.retention.describe()}{bounds}" if c.retention else "kept for the life of the box"
        else:
            keep = "never stored"
        w(f"  {c.title} [{c.name}]: {keep}")
        w(f"      purpose: {c.purpose}")
        w(f"      legal basis: {c.legal_basis}")
        w(f"      ends: {c.ends}")
    w("  recipients: " + " | ".join(report.recipients))
    w("")
    w("DATA INVENTORY (read from the files on disk)")
    for t in report.tables:
        oldest = _iso(t.oldest_stored_at) if t.oldest_stored_at is not None else "-"
        limit = f", limit {t.limit}" if t.limit else ""
        where = f"{t.files} file(s)" if t.files else "no file yet; columns from the schema"
        w(f"  {t.name} [{t.record_class}]: {t.rows} rows in {where}, oldest {oldest}{limit}")
        if t.by_age:
            w("      by age: " + ", ".join(f"{label} {n}" for label, n in t.by_age.items()))
        cols = ", ".join(c.name + ("" if c.declared else " (UNDECLARED)") for c in t.columns if c.present)
        w(f"      columns: {cols}")
    w("")
    w("OLDEST RECORD AGAINST ITS LIMIT (# = age, | = limit)")
    for t in report.tables:
        if t.limit and t.oldest_stored_at is not None:
            w(f"  {t.name:<16} {_age_bar(report.generated_at - t.oldest_stored_at, Duration.parse(t.limit))}")
    w("")
    w("KEYS (ids and dates only)")
    for k in report.keys:
        state = f"destroyed {_iso(k.destroyed_at)}" if k.destroyed_at is not None else "live"
        due = f", destroy after {_iso(k.destroy_after)}" if k.destroy_after is not None else ""
        w(f"  {k.id}: created {_iso(k.created_at)}{due}; {state}")
    w("")
    w("RETENTION RUNS (latest first)")
    for r in report.runs:
        end = _iso(r.finished_at) if r.finished_at is not None else "-"
        deleted = sum(r.summary.get("deleted", {}).values()) if r.summary else 0
        keys = len(r.summary.get("keys_destroyed", [])) if r.summary else 0
        w(f"  run {r.id}: {r.status}, {_iso(r.started_at)} to {end}; {deleted} rows deleted, {keys} keys destroyed")
    if not report.runs:
        w("  none yet")
    w("")
    state = "intact" if report.audit.ok else "FAILED VERIFICATION"
    w(
        f"AUDIT LOG: {report.audit.size} entries ({report.audit.pruned} expired to hashes), "
        f"{report.audit.checkpoints_checked} checkpoints checked: {state}"
    )
    if report.head:
        w(f"  signed head: size {report.head.size}, root {report.head.root.hex()}")
    w("")
    for n in report.notices:
        w(f"notice: {n}")
    if report.violations:
        w(f"VIOLATIONS ({len(report.violations)})")
        for v in report.violations:
            w(f"  [{v.code}] {v.message}")
    else:
        w("No violations.")
    return "\n".join(out)
