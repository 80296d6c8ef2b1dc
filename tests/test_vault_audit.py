"""The audit log: RFC 6962 hashing, signed heads, and detection of every kind of tampering."""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.events import ReceiptLine
from appliance.vault import ManualClock, RetentionPolicy, Vault
from appliance.vault.audit import (
    EMPTY_ROOT,
    Checkpoint,
    entry_body,
    leaf_hash,
    node_hash,
    sign_checkpoint,
    tree_root,
)

T0 = datetime(2024, 5, 17, 10, 30, tzinfo=UTC).timestamp()


def reference_root(leaves: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC states it (recursive split at the largest power of two)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


@given(st.lists(st.binary(max_size=8), max_size=70))
def test_the_tree_hash_is_rfc_6962_s(data: list[bytes]) -> None:
    leaves = [leaf_hash(d) for d in data]
    assert tree_root(leaves) == reference_root(leaves)


def test_the_tree_hash_matches_the_certificate_transparency_test_vectors() -> None:
    inputs = [
        bytes.fromhex(h)
        for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
    ]
    roots = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ]
    assert tree_root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    for n, root in enumerate(roots, start=1):
        assert tree_root([leaf_hash(d) for d in inputs[:n]]).hex() == root


@pytest.fixture
def shop(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A vault with a few visits logged, a checkpoint exported in the middle, and more visits after it."""
    clock = ManualClock(T0)
    vault = Vault.open(tmp_path / "v", secrets.token_bytes(32), RetentionPolicy.load(), clock)

    def visits(n: int) -> None:
        for _ in range(n):
            clock.advance(90)
            visit = vault.open_visit(entered_at=clock.now(), party=1, token="tok", receipt_key=None)
            charge = vault.close_visit(
                visit, left_at=clock.now(), lines=[ReceiptLine("a", "A", 1, 0.0, 900)], amount=900, currency="KRW"
            )
            vault.set_charge_state(charge.order_ref, "succeeded", processor_ref="pi_1")
            vault.destroy_token(charge.order_ref)

    visits(3)
    exported = vault.checkpoint()
    visits(3)
    yield vault, exported
    vault.close()


def rows(vault: Vault) -> list[tuple[int, bytes, str, int]]:
    return [
        (s, bytes(lf), b, at)
        for s, lf, b, at in vault.audit_connection.execute(
            "SELECT seq, leaf, body, stored_at FROM entries ORDER BY seq"
        )
    ]


def rewrite(vault: Vault, entries: list[tuple[int, dict[str, Any]]]) -> None:
    """Replace the log by well-formed entries (seq, parsed body), each with a correct leaf hash."""
    conn = vault.audit_connection
    conn.execute("DELETE FROM entries")
    for seq, body in entries:
        text = entry_body(seq, body["at"], body["kind"], body["fields"])
        conn.execute(
            "INSERT INTO entries(seq, leaf, body, stored_at) VALUES (?, ?, ?, ?)",
            (seq, leaf_hash(text), text.decode(), body["at"]),
        )


def parsed(vault: Vault) -> list[dict[str, Any]]:
    return [json.loads(b) for _, _, b, _ in rows(vault)]


def edit_body_only(vault: Vault) -> None:
    seq, _, body, _ = next(r for r in rows(vault) if '"amount":900' in r[2])
    vault.audit_connection.execute(
        "UPDATE entries SET body = ? WHERE seq = ?", (body.replace('"amount":900', '"amount":90'), seq)
    )


def edit_body_and_leaf(vault: Vault) -> None:
    bodies = parsed(vault)
    for b in bodies:
        if b["kind"] == "visit.closed":
            b["fields"]["amount"] = 90
            break
    rewrite(vault, list(enumerate(bodies)))


def delete_middle(vault: Vault) -> None:
    vault.audit_connection.execute("DELETE FROM entries WHERE seq = 4")


def delete_last(vault: Vault) -> None:
    vault.audit_connection.execute("DELETE FROM entries WHERE seq = (SELECT max(seq) FROM entries)")


def delete_and_renumber(vault: Vault) -> None:
    bodies = parsed(vault)
    del bodies[4]
    rewrite(vault, list(enumerate(bodies)))


def insert_and_renumber(vault: Vault) -> None:
    bodies = parsed(vault)
    forged = dict(bodies[4])
    forged["fields"] = {"visit": "0" * 32, "state": "succeeded"}
    bodies.insert(5, forged)
    rewrite(vault, list(enumerate(bodies)))


def swap_rows(vault: Vault) -> None:
    r = rows(vault)
    conn = vault.audit_connection
    for seq, leaf, body in ((r[3][0], r[4][1], r[4][2]), (r[4][0], r[3][1], r[3][2])):
        conn.execute("UPDATE entries SET leaf = ?, body = ? WHERE seq = ?", (leaf, body, seq))


def reorder_and_renumber(vault: Vault) -> None:
    bodies = parsed(vault)
    bodies[3], bodies[4] = bodies[4], bodies[3]
    rewrite(vault, list(enumerate(bodies)))


def forge_head(vault: Vault) -> None:
    edit_body_and_leaf(vault)
    leaves = [leaf for _, leaf, _, _ in rows(vault)]
    vault.audit_connection.execute("UPDATE head SET root = ?, size = ?", (tree_root(leaves), len(leaves)))


TAMPERING: dict[str, tuple[Callable[[Vault], None], str]] = {
    "an entry's content changed": (edit_body_only, "was modified"),
    "an entry changed and its hash recomputed": (edit_body_and_leaf, "do not hash to the signed head"),
    "an entry deleted": (delete_middle, "missing (deleted)"),
    "the last entry deleted": (delete_last, "entries were deleted"),
    "an entry deleted and the rest renumbered": (delete_and_renumber, "entries were deleted"),
    "an entry inserted and the rest renumbered": (insert_and_renumber, "added without signing"),
    "two entries swapped": (swap_rows, "entries were moved"),
    "two entries reordered and renumbered": (reorder_and_renumber, "do not hash to the signed head"),
    "the head recomputed without the box's key": (forge_head, "signature is not the box's"),
}


def test_an_untouched_log_verifies_against_its_head_checkpoints_and_an_exported_checkpoint(shop) -> None:  # type: ignore[no-untyped-def]
    vault, exported = shop
    verdict = vault.verify_audit([exported])
    assert verdict.ok, verdict.problems
    assert verdict.size == len(rows(vault)) and verdict.checkpoints_checked >= 2


@pytest.mark.parametrize("how", sorted(TAMPERING))
def test_tampering_with_the_log_is_detected(shop, how: str) -> None:  # type: ignore[no-untyped-def]
    vault, exported = shop
    tamper, expected = TAMPERING[how]
    tamper(vault)
    verdict = vault.verify_audit([exported])
    assert not verdict.ok
    assert any(expected in p for p in verdict.problems), verdict.problems


def test_a_log_rewritten_and_resigned_with_the_box_s_own_keys_still_fails_an_exported_checkpoint(shop) -> None:  # type: ignore[no-untyped-def]
    """Someone holding every key can make the box's own checks pass; the auditor's copy still catches it."""
    vault, exported = shop
    edit_body_and_leaf(vault)
    signer = vault.keyring.identity()
    leaves = [leaf for _, leaf, _, _ in rows(vault)]
    head = sign_checkpoint(signer, len(leaves), tree_root(leaves), int(T0))
    conn = vault.audit_connection
    conn.execute(
        "UPDATE head SET size = ?, root = ?, signed_at = ?, signature = ?",
        (head.size, head.root, head.signed_at, head.signature),
    )
    for (size,) in conn.execute("SELECT size FROM checkpoints").fetchall():
        cp = sign_checkpoint(signer, size, tree_root(leaves[:size]), int(T0))
        conn.execute(
            "UPDATE checkpoints SET root = ?, signed_at = ?, signature = ? WHERE size = ?",
            (cp.root, cp.signed_at, cp.signature, size),
        )
    assert vault.verify_audit().ok, "the box's own view is fooled"
    verdict = vault.verify_audit([exported])
    assert not verdict.ok
    assert any("exported checkpoint" in p for p in verdict.problems)


def test_a_checkpoint_signed_by_another_key_is_not_accepted(shop) -> None:  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    vault, exported = shop
    forged = sign_checkpoint(Ed25519PrivateKey.generate(), exported.size, exported.root, exported.signed_at)
    verdict = vault.verify_audit([forged])
    assert any("signature is not the box's" in p for p in verdict.problems)


def test_a_checkpoint_survives_its_export_format() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    cp = sign_checkpoint(key, 12, hashlib.sha256(b"x").digest(), 1_700_000_000)
    again = Checkpoint.from_json(json.loads(json.dumps(cp.as_json())))
    assert again == cp and again.valid_under(key.public_key())
    for bad in ({}, {"size": -1, "root": "00" * 32, "signed_at": 1, "signature": "AA"}, [1, 2]):
        with pytest.raises(ValueError):
            Checkpoint.from_json(bad)


def test_a_tampered_log_is_noticed_when_the_vault_opens(tmp_path: Path) -> None:
    """The quick check at open (signed head, stored frontier, entry count) catches a deleted entry."""
    clock = ManualClock(T0)
    key = secrets.token_bytes(32)
    vault = Vault.open(tmp_path / "v", key, RetentionPolicy.load(), clock)
    vault.audit("visit.flagged", visit="ab", count=1)
    vault.audit("visit.flagged", visit="cd", count=2)
    vault.audit_connection.execute("DELETE FROM entries WHERE seq = (SELECT max(seq) FROM entries)")
    vault.close()
    vault = Vault.open(tmp_path / "v", key, RetentionPolicy.load(), clock)
    assert not vault.audit_intact_at_open
    assert list(vault.audit_log.entries(kinds=["vault.opened"]))[-1].fields["intact"] is False
    assert not vault.verify_audit().ok
    vault.close()


def test_an_untouched_log_opens_without_rereading_it(tmp_path: Path) -> None:
    clock = ManualClock(T0)
    key = secrets.token_bytes(32)
    vault = Vault.open(tmp_path / "v", key, RetentionPolicy.load(), clock)
    for i in range(40):
        vault.audit("visit.flagged", visit=f"v{i}", count=i)
    vault.close()
    vault = Vault.open(tmp_path / "v", key, RetentionPolicy.load(), clock)
    assert vault.audit_intact_at_open and vault.audit_log.open_problems == ()
    verdict = vault.verify_audit()
    assert verdict.ok and verdict.size == 42
    vault.close()
