"""`appliance bench vault`: cart-line insert rates and the time of a retention run over many expired lines."""

from __future__ import annotations

import os
import platform
import secrets
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlcipher3

from appliance.events import CartChange, Evidence
from appliance.vault.clock import ManualClock
from appliance.vault.policy import RetentionPolicy
from appliance.vault.vault import Vault

START = 1_709_254_800.0  # 2024-03-01 01:00 UTC: a fixed, repeatable calendar position
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class VaultBench:
    """The figures of one benchmark run and the conditions they were measured under."""

    durable_lines: int
    durable_rate: float
    batch_lines: int
    batch_size: int
    batch_rate: float
    expired_lines: int
    retention_s: float
    retention_deleted: int
    chunk_rows: int
    file_bytes_before: int
    file_bytes_after: int
    conditions: str


def _change(visit: str, i: int, t: float) -> CartChange:
    ev = Evidence(t, (f"g1.s{i % 12 + 1}.p{i % 7 + 1}",), -350.0 - (i % 50), 0.97, 0.93, "")
    return CartChange(visit, f"sku{i % 400:04d}", 1, 0.0, ev)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run_vault_bench(
    *,
    durable_lines: int = 2000,
    expired_lines: int = 1_000_000,
    batch_size: int = 5000,
    chunk_rows: int = 5000,
    workdir: Path | None = None,
    progress: Callable[[str], None] = print,
) -> VaultBench:
    """Measure the vault on a scratch folder (deleted afterwards).

    1. durable inserts: `add_cart_line` one line per committed transaction (synchronous=FULL), as
       fusion writes them live;
    2. batched inserts: `add_cart_lines` with `batch_size` lines per transaction, building
       `expired_lines` lines on one day;
    3. the clock moves 30.5 days on (the lines are past the 30-day evidence limit but their day's
       key is not yet due), and one retention run deletes them row by row in chunks, truncates the
       WAL and releases the free pages: the figure is that run's wall time.
    """
    policy = RetentionPolicy.load()
    clock = ManualClock(START)
    with tempfile.TemporaryDirectory(prefix="vault-bench-", dir=workdir) as tmp:
        folder = Path(tmp) / "vault"
        vault = Vault.open(folder, secrets.token_bytes(32), policy, clock, chunk_rows=chunk_rows)
        try:
            visit = vault.open_visit(entered_at=START, party=1, token="tok_bench", receipt_key=None)
            progress(f"durable inserts: {durable_lines} cart lines, one transaction each ...")
            t0 = time.perf_counter()
            for i in range(durable_lines):
                vault.add_cart_line(visit, _change(visit, i, START + i * 0.01))
            durable_rate = durable_lines / (time.perf_counter() - t0)
            progress(f"batched inserts: {expired_lines} cart lines, {batch_size} per transaction ...")
            built = 0
            t0 = time.perf_counter()
            per_visit = 1000
            while built < expired_lines:
                clock.advance(1.0)
                visit = vault.open_visit(entered_at=clock.now(), party=1, token=None, receipt_key=None)
                for start in range(0, min(per_visit, expired_lines - built), batch_size):
                    n = min(batch_size, per_visit - start, expired_lines - built)
                    vault.add_cart_lines(visit, [_change(visit, built + j, clock.now()) for j in range(n)])
                    built += n
                if built % 100_000 < per_visit:
                    progress(f"  {built} lines written")
            batch_elapsed = time.perf_counter() - t0
            batch_rate = built / batch_elapsed
            before = _folder_bytes(folder)
            clock.set(START + 30.5 * DAY)
            progress(f"retention run over {built + durable_lines} expired lines (chunks of {chunk_rows}) ...")
            t0 = time.perf_counter()
            run = vault.run_retention()
            retention_s = time.perf_counter() - t0
            after = _folder_bytes(folder)
        finally:
            vault.close()
    version = sqlcipher3.connect(":memory:").execute("PRAGMA cipher_version").fetchone()[0]
    conditions = (
        f"SQLCipher {version}, WAL, synchronous=FULL, secure_delete=ON, cipher_memory_security=ON; "
        f"{os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"scratch folder on {workdir or tempfile.gettempdir()}"
    )
    return VaultBench(
        durable_lines=durable_lines,
        durable_rate=durable_rate,
        batch_lines=built,
        batch_size=batch_size,
        batch_rate=batch_rate,
        expired_lines=built + durable_lines,
        retention_s=retention_s,
        retention_deleted=run.deleted.get("cart_lines", 0),
        chunk_rows=chunk_rows,
        file_bytes_before=before,
        file_bytes_after=after,
        conditions=conditions,
    )
