"""kill -9 during writes, retention runs and key rotation: the vault opens, the log verifies, nothing kept is lost.

Each test runs the vault in a child process (this file, run as a script), reads the child's
acknowledgements (printed only after the write they report has committed) and kills it with
SIGKILL at a random moment, then checks from the parent. The seeds fix where the kills are
aimed; where exactly inside a transaction they land varies from run to run, which is the point:
every assertion must hold wherever the kill lands.
"""

from __future__ import annotations

import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from appliance.events import CartChange, Evidence, ReceiptLine, ReviewItem
from appliance.vault import ManualClock, RetentionPolicy, Vault
from appliance.vault.crashpoints import CRASH_ENV, POINTS
from appliance.vault.keysource import load_master_key, read_key_file, write_key_file

T0 = 1_715_941_800.0  # 2024-05-17 10:30 UTC
DAY = 86400.0
REPO = Path(__file__).resolve().parent.parent


def child(mode: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, mode, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def kill_after(proc: subprocess.Popen[str], lines: int, extra_s: float) -> list[str]:
    """Read `lines` acknowledgements (or up to the child's end), wait `extra_s`, SIGKILL, and drain the rest."""
    assert proc.stdout is not None
    out = []
    while len(out) < lines:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line.rstrip("\n"))
    time.sleep(extra_s)
    proc.send_signal(signal.SIGKILL)
    rest, err = proc.communicate(timeout=60)
    out.extend(x for x in rest.splitlines())
    assert proc.returncode in (-signal.SIGKILL, 0), err
    complete = [x for x in out if x.endswith(" .")]  # a line cut by the kill has no end mark
    return [x[:-2] for x in complete]


def ack(*parts: object) -> None:
    print(*parts, ".", flush=True)


# ----------------------------------------------------------------------------------- writes


def writer(folder: str, key_hex: str, start: str, seed: str) -> None:
    clock = ManualClock(float(start))
    rng = random.Random(int(seed))
    vault = Vault.open(Path(folder), bytes.fromhex(key_hex), RetentionPolicy.load(), clock)
    ack("ready", clock.now())
    i = 0
    while True:
        clock.advance(rng.uniform(60, 4 * 3600))  # crosses days, so new period keys and files get made
        token = f"tok_{seed}_{i}"
        visit = vault.open_visit(entered_at=clock.now(), party=1, token=token, receipt_key=None)
        ack("visit", visit, token, clock.now())
        for j in range(rng.randint(1, 3)):
            ev = Evidence(clock.now(), ("g1.s1.p1",), -300.0, 0.9, 0.9, "")
            vault.add_cart_line(visit, CartChange(visit, f"sku{j}", 1, 0.0, ev))
            ack("line", visit)
        if rng.random() < 0.3:
            ev = Evidence(clock.now(), ("g1.s1.p2",), -300.0, 0.5, 0.9, "")
            item = vault.add_review_item(visit, ReviewItem(visit, "low_confidence", (("sku9", 1),), ev))
            ack("review", item)
        amount = 100 * rng.randint(1, 50)
        charge = vault.close_visit(
            visit,
            left_at=clock.now(),
            lines=[ReceiptLine("sku0", "S", 1, 0.0, amount)],
            amount=amount,
            currency="KRW",
        )
        ack("charge", visit, charge.order_ref, charge.idempotency_key, amount)
        if rng.random() < 0.7:
            vault.set_charge_state(charge.order_ref, "succeeded", processor_ref=f"pi_{i}")
            ack("state", charge.order_ref, "succeeded")
            vault.destroy_token(charge.order_ref)
            ack("destroyed", charge.order_ref)
        i += 1


@dataclass
class Acked:
    visits: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reviews: set[int] = field(default_factory=set)
    charges: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    states: dict[str, str] = field(default_factory=dict)
    destroyed: set[str] = field(default_factory=set)
    last_t: float = T0

    def take(self, lines: list[str]) -> None:
        for line in lines:
            kind, *rest = line.split(" ")
            if kind in ("ready",):
                self.last_t = max(self.last_t, float(rest[0]))
            elif kind == "visit":
                self.visits[rest[0]] = rest[1]
                self.last_t = max(self.last_t, float(rest[2]))
            elif kind == "line":
                self.lines[rest[0]] += 1
            elif kind == "review":
                self.reviews.add(int(rest[0]))
            elif kind == "charge":
                self.charges[rest[0]] = (rest[1], rest[2], int(rest[3]))
            elif kind == "state":
                self.states[rest[0]] = rest[1]
            elif kind == "destroyed":
                self.destroyed.add(rest[0])


def check_after_crash(vault: Vault, acked: Acked) -> None:
    verdict = vault.verify_audit()
    assert verdict.ok, verdict.problems
    for visit, token in acked.visits.items():
        assert vault.visit(visit) is not None, f"acknowledged visit {visit} lost"
        assert len(vault.cart_lines(visit)) >= acked.lines[visit], f"acknowledged cart lines of {visit} lost"
        charge = vault.charge_for_visit(visit)
        if visit in acked.charges:
            ref, key, amount = acked.charges[visit]
            assert charge is not None, f"acknowledged charge of {visit} lost"
            assert (charge.order_ref, charge.idempotency_key, charge.amount) == (ref, key, amount)
            if ref in acked.states:
                assert charge.state == acked.states[ref]
            if ref in acked.destroyed:
                assert vault.payment_token(ref) is None
            elif charge.state == "pending":
                assert vault.payment_token(ref) == token, "a pending charge lost its token"
    open_ids = {i.id for i in vault.open_review_items()}
    assert acked.reviews <= open_ids
    # One transaction closes the cart and writes the charge: never one without the other.
    charges = vault.charges()
    assert len({c.visit for c in charges}) == len(charges)
    for c in charges:
        v = vault.visit(c.visit)
        assert v is not None and v.state == "closed"
    for v in vault.open_visits():
        assert vault.charge_for_visit(v.id) is None
    # No token without its visit survives an open (the crash may have come between the two writes).
    for period in vault.files.live_periods("payment_token"):
        conn = vault.files.connection(period)
        if conn is not None:
            for (visit,) in conn.execute("SELECT visit FROM payment_tokens").fetchall():
                assert vault.visit(visit) is not None


def test_kill_9_during_writes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    folder = tmp_path / "v"
    rng = random.Random(4)
    acked = Acked()
    kills = 0
    for round_ in range(8):
        proc = child("writer", str(folder), key.hex(), str(acked.last_t + 60), str(round_))
        lines = kill_after(proc, rng.randint(3, 40), rng.uniform(0.0, 0.02))
        kills += 1
        acked.take(lines)
        vault = Vault.open(folder, key, RetentionPolicy.load(), ManualClock(acked.last_t + 30))
        try:
            check_after_crash(vault, acked)
        finally:
            vault.close()
    assert kills == 8 and len(acked.charges) >= 8


# ----------------------------------------------------------------------------------- retention


def retention(folder: str, key_hex: str, now: str) -> None:
    vault = Vault.open(
        Path(folder), bytes.fromhex(key_hex), RetentionPolicy.load(), ManualClock(float(now)), chunk_rows=200
    )
    ack("ready")
    vault.run_retention()
    ack("done")
    vault.close()


def prepare_retention_vault(folder: Path, key: bytes) -> dict[str, int]:
    """Expired lines on two old days, a finished old visit, and records that must be kept."""
    clock = ManualClock(T0)
    vault = Vault.open(folder, key, RetentionPolicy.load(), clock)
    for day in range(2):
        visit = vault.open_visit(entered_at=clock.now(), party=1, token="tok_old", receipt_key=None)
        for _ in range(6):
            vault.add_cart_lines(
                visit,
                [
                    CartChange(visit, f"old{i}", 1, 0.0, Evidence(clock.now(), ("s",), -1.0, 0.9, 0.9, ""))
                    for i in range(500)
                ],
            )
        c = vault.close_visit(
            visit, left_at=clock.now(), lines=[ReceiptLine("a", "A", 1, 0.0, 10)], amount=10, currency="KRW"
        )
        vault.set_charge_state(c.order_ref, "succeeded")
        clock.advance(DAY + 3600 * day)
    clock.set(T0 + 29 * DAY)
    kept = vault.open_visit(entered_at=clock.now(), party=1, token="tok_keep", receipt_key=None)
    vault.add_cart_lines(
        kept, [CartChange(kept, "keep", 1, 0.0, Evidence(clock.now(), ("s",), -1.0, 0.9, 0.9, "")) for _ in range(40)]
    )
    vault.close_visit(kept, left_at=clock.now(), lines=[ReceiptLine("k", "K", 1, 0.0, 20)], amount=20, currency="KRW")
    vault.close()
    return {"visits": 3, "kept_lines": 40}


def test_kill_9_during_a_retention_run_keeps_what_is_kept_and_the_next_run_finishes(tmp_path: Path) -> None:
    key = secrets.token_bytes(32)
    template = tmp_path / "template"
    expect = prepare_retention_vault(template, key)
    now = T0 + 31.5 * DAY  # the first day's key is due, the second day's lines expired row by row
    # One uninterrupted run tells how long a run takes here, so the kills can be spread across it.
    shutil.copytree(template, tmp_path / "timing")
    proc = child("retention", str(tmp_path / "timing"), key.hex(), str(now))
    assert proc.stdout is not None and proc.stdout.readline().startswith("ready")
    started = time.monotonic()
    assert proc.stdout.readline().startswith("done")
    duration = time.monotonic() - started
    proc.communicate(timeout=60)
    rng = random.Random(7)
    for round_ in range(6):
        folder = tmp_path / f"round{round_}"
        shutil.copytree(template, folder)
        proc = child("retention", str(folder), key.hex(), str(now))
        kill_after(proc, 1, rng.uniform(0.0, duration * 1.1))
        vault = Vault.open(folder, key, RetentionPolicy.load(), ManualClock(now))
        try:
            verdict = vault.verify_audit()
            assert verdict.ok, verdict.problems
            charges = vault.charges()
            assert len(charges) == expect["visits"], "a sales record was lost"
            kept = next(c for c in charges if c.amount == 20)
            assert len(vault.cart_lines(kept.visit)) == expect["kept_lines"], "kept evidence was lost"
            vault.run_retention()
            assert vault.verify_audit().ok
            assert sum(len(vault.cart_lines(c.visit)) for c in vault.charges()) == expect["kept_lines"]
            # The first day's key was due and is gone; the second day's lines went row by row.
            assert [p.label for p in vault.files.live_periods("event_evidence")] == ["2024-06-15", "2024-05-18"]
        finally:
            vault.close()


# ----------------------------------------------------------------------------------- named points


def scenario(folder: str, key_hex: str) -> None:
    """A day of the shop and a retention run a month later, touching every named crash point."""
    clock = ManualClock(T0)
    vault = Vault.open(Path(folder), bytes.fromhex(key_hex), RetentionPolicy.load(), clock, chunk_rows=50)
    for i in range(3):
        visit = vault.open_visit(entered_at=clock.now(), party=1, token=f"tok_{i}", receipt_key=None)
        ev = Evidence(clock.now(), ("s",), -1.0, 0.9, 0.9, "")
        vault.add_cart_lines(visit, [CartChange(visit, "a", 1, 0.0, ev) for _ in range(120)])
        c = vault.close_visit(
            visit, left_at=clock.now(), lines=[ReceiptLine("a", "A", 1, 0.0, 5)], amount=5, currency="KRW"
        )
        vault.set_charge_state(c.order_ref, "succeeded", processor_ref="pi_1")
        vault.destroy_token(c.order_ref)
        clock.advance(3600)
    clock.set(T0 + 30 * DAY + 12 * 3600)  # lines due row by row
    vault.run_retention()
    clock.set(T0 + 32 * DAY)  # the day's keys due
    vault.run_retention()
    ack("done")
    vault.close()


VAULT_POINTS = [p for p in POINTS if not p.startswith(("rotation.", "keyring.installed"))]


@pytest.mark.parametrize("point", VAULT_POINTS)
def test_kill_9_at_each_named_point_of_the_vault(tmp_path: Path, point: str) -> None:
    key = secrets.token_bytes(32)
    folder = tmp_path / "v"
    proc = subprocess.run(
        [sys.executable, __file__, "scenario", str(folder), key.hex()],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, CRASH_ENV: point},
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL and "done" not in proc.stdout, f"never reached {point}: {proc.stderr}"
    vault = Vault.open(folder, key, RetentionPolicy.load(), ManualClock(T0 + 32 * DAY))
    try:
        check_after_crash(vault, Acked())
        vault.run_retention()
        assert vault.verify_audit().ok
        assert vault.files.orphans() == [], "files left that no key opens"
        assert not list(folder.glob("keyring-*.building*"))
        assert all(not c.final or vault.payment_token(c.order_ref) is None for c in vault.charges())
    finally:
        vault.close()


ROTATION_POINTS = ["rotation.staged", "keyring.built", "keyring.installed", "rotation.rewrapped"]


@pytest.mark.parametrize("point", ROTATION_POINTS)
def test_kill_9_at_each_named_point_of_a_master_key_rotation(tmp_path: Path, point: str) -> None:
    folder, key_file = tmp_path / "v", tmp_path / "master.key"
    write_key_file(key_file, secrets.token_bytes(32))
    clock = ManualClock(T0)
    vault = Vault.open(folder, read_key_file(key_file), RetentionPolicy.load(), clock)
    visit = vault.open_visit(entered_at=T0, party=1, token="tok_rot", receipt_key=None)
    ref = vault.close_visit(
        visit, left_at=T0, lines=[ReceiptLine("a", "A", 1, 0.0, 5)], amount=5, currency="KRW"
    ).order_ref
    vault.close()
    rotate = [
        sys.executable,
        "-m",
        "appliance",
        "vault",
        "rotate-master-key",
        "--folder",
        str(folder),
        "--key-file",
        str(key_file),
    ]
    proc = subprocess.run(
        rotate, capture_output=True, text=True, cwd=REPO, env={**os.environ, CRASH_ENV: point}, timeout=120
    )
    assert proc.returncode == -signal.SIGKILL, f"never reached {point}: {proc.stderr}"
    key = load_master_key("vault-master-key", key_file, folder, {})
    vault = Vault.open(folder, key, RetentionPolicy.load(), clock)
    try:
        assert vault.verify_audit().ok
        assert vault.payment_token(ref) == "tok_rot" and vault.visit(visit) is not None
    finally:
        vault.close()
    assert len(list(folder.glob("keyring-*"))) == 1
    env = {k: v for k, v in os.environ.items() if k != CRASH_ENV}
    assert subprocess.run(rotate, capture_output=True, cwd=REPO, env=env, timeout=120).returncode == 0
    vault = Vault.open(folder, load_master_key("vault-master-key", key_file, folder, {}), RetentionPolicy.load(), clock)
    assert vault.payment_token(ref) == "tok_rot"
    vault.close()


if __name__ == "__main__":
    {"writer": writer, "retention": retention, "scenario": scenario}[sys.argv[1]](*sys.argv[2:])
