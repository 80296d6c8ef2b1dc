"""The tables of each vault file. Every column here is declared in policy/retention.toml (a test checks).

No table has a column for a name, an e-mail, card data, a face, an image, a position or a track:
the vault cannot store them. Times are stored no finer than their purpose needs (`stored_at`
to the minute; the evidence time of a shelf event to the second).
"""

from __future__ import annotations

from appliance.vault.database import Connection, transaction
from appliance.vault.errors import VaultError

SCHEMA_VERSION = 1

PERIOD_SCHEMAS: dict[str, str] = {
    "payment_token": """
        CREATE TABLE IF NOT EXISTS payment_tokens (
            visit TEXT PRIMARY KEY,
            token BLOB,
            receipt_key BLOB,
            stored_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS payment_tokens_stored ON payment_tokens(stored_at);
    """,
    "admitted_pass": """
        CREATE TABLE IF NOT EXISTS admitted_passes (
            pass_key BLOB PRIMARY KEY,
            visit TEXT NOT NULL,
            expires_at INTEGER NOT NULL,
            stored_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS admitted_passes_stored ON admitted_passes(stored_at);
    """,
    "event_evidence": """
        CREATE TABLE IF NOT EXISTS cart_lines (
            id INTEGER PRIMARY KEY,
            visit TEXT NOT NULL,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL,
            grams REAL NOT NULL,
            evidence_at INTEGER NOT NULL,
            sensors TEXT NOT NULL,
            delta_g REAL NOT NULL,
            product_confidence REAL NOT NULL,
            person_confidence REAL NOT NULL,
            decision TEXT NOT NULL,
            stored_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS cart_lines_visit ON cart_lines(visit);
        CREATE INDEX IF NOT EXISTS cart_lines_stored ON cart_lines(stored_at);
        CREATE TABLE IF NOT EXISTS review_items (
            id INTEGER PRIMARY KEY,
            visit TEXT NOT NULL,
            reason TEXT NOT NULL,
            candidates TEXT NOT NULL,
            evidence_at INTEGER NOT NULL,
            sensors TEXT NOT NULL,
            delta_g REAL NOT NULL,
            product_confidence REAL NOT NULL,
            person_confidence REAL NOT NULL,
            decision TEXT NOT NULL,
            state TEXT NOT NULL,
            resolved_sku TEXT,
            resolved_qty INTEGER,
            resolved_at INTEGER,
            stored_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS review_items_state ON review_items(state);
        CREATE INDEX IF NOT EXISTS review_items_stored ON review_items(stored_at);
    """,
    "sales_record": """
        CREATE TABLE IF NOT EXISTS visits (
            id TEXT PRIMARY KEY,
            entered_at INTEGER NOT NULL,
            left_at INTEGER,
            party INTEGER NOT NULL,
            state TEXT NOT NULL,
            stored_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS visits_stored ON visits(stored_at);
        CREATE TABLE IF NOT EXISTS charges (
            order_ref TEXT PRIMARY KEY,
            visit TEXT NOT NULL UNIQUE,
            amount INTEGER NOT NULL,
            currency TEXT NOT NULL,
            state TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            processor_ref TEXT NOT NULL,
            error_code TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            stored_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS charges_state ON charges(state);
        CREATE INDEX IF NOT EXISTS charges_stored ON charges(stored_at);
        CREATE TABLE IF NOT EXISTS charge_lines (
            order_ref TEXT NOT NULL,
            line INTEGER NOT NULL,
            sku TEXT NOT NULL,
            name TEXT NOT NULL,
            qty INTEGER NOT NULL,
            grams REAL NOT NULL,
            amount INTEGER NOT NULL,
            stored_at INTEGER NOT NULL,
            PRIMARY KEY (order_ref, line)
        );
        CREATE INDEX IF NOT EXISTS charge_lines_stored ON charge_lines(stored_at);
        CREATE TABLE IF NOT EXISTS refunds (
            id TEXT PRIMARY KEY,
            order_ref TEXT NOT NULL,
            amount INTEGER NOT NULL,
            sku TEXT NOT NULL,
            qty INTEGER NOT NULL,
            reason TEXT NOT NULL,
            state TEXT NOT NULL,
            idempotency_key TEXT NOT NULL UNIQUE,
            processor_ref TEXT NOT NULL,
            error_code TEXT NOT NULL,
            updated_at INTEGER NOT NULL,
            stored_at INTEGER NOT NULL
        );
        CREATE INDEX IF NOT EXISTS refunds_order ON refunds(order_ref);
        CREATE INDEX IF NOT EXISTS refunds_stored ON refunds(stored_at);
    """,
}

AUDIT_SCHEMA = """
    CREATE TABLE IF NOT EXISTS entries (
        seq INTEGER PRIMARY KEY,
        leaf BLOB NOT NULL,
        body TEXT,
        stored_at INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS entries_stored ON entries(stored_at);
    CREATE TABLE IF NOT EXISTS head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        signed_at INTEGER NOT NULL,
        signature BLOB NOT NULL,
        frontier BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS checkpoints (
        id INTEGER PRIMARY KEY,
        size INTEGER NOT NULL,
        root BLOB NOT NULL,
        signed_at INTEGER NOT NULL,
        signature BLOB NOT NULL
    );
    CREATE TABLE IF NOT EXISTS retention_runs (
        id INTEGER PRIMARY KEY,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        status TEXT NOT NULL,
        summary TEXT NOT NULL
    );
"""


def create_tables(conn: Connection, script: str, what: str) -> None:
    """Create a file's tables and stamp its schema version, in one transaction (nothing to do if stamped).

    Raises:
        VaultError: the file was made by a newer version of the appliance.
    """
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise VaultError(f"{what} has schema version {version}; this appliance knows up to {SCHEMA_VERSION}")
    with transaction(conn, f"create tables of {what}") as c:
        for statement in script.split(";"):
            if statement.strip():
                c.execute(statement)
        c.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def table_columns(conn: Connection) -> dict[str, tuple[str, ...]]:
    """The tables of an open file and their columns, read from the file itself (not from this module)."""
    tables = [
        r[0]
        for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name"
        ).fetchall()
    ]
    return {t: tuple(r[1] for r in conn.execute(f"PRAGMA table_info({t})").fetchall()) for t in tables}
