"""The tamper-evident audit log: an RFC 6962 Merkle tree of entries, with heads signed by the box.

Entries hold pseudonymous ids, codes and counts only (their fields are declared in the policy).
Each entry is a leaf; after every append the new tree head (size, root) is signed with the box's
Ed25519 key in the same transaction, and checkpoints can be exported and kept off the box. Any
modified, deleted, inserted or reordered entry changes a leaf hash or the root, so `verify_log`
finds it; a log rebuilt from scratch by someone holding every key still disagrees with the
checkpoints an auditor took away earlier.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from appliance.vault.database import Connection, read, snapshot, transaction
from appliance.vault.errors import VaultError

EMPTY_ROOT = hashlib.sha256(b"").digest()
EXPORT_FORMAT = "walkout-audit-checkpoints v1"

_KIND = re.compile(r"[a-z][a-z0-9_.]{0,47}")
_TEXT_VALUE = re.compile(r"[A-Za-z0-9_.:/-]{0,96}")


def leaf_hash(body: bytes) -> bytes:
    """RFC 6962 leaf hash: SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + body).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 interior node hash: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


class Frontier:
    """The right edge of a Merkle tree: the roots of its perfect subtrees, enough to append and to get the root.

    Appending costs O(log n) hashes, so every append can be followed by a signed head.
    """

    __slots__ = ("_nodes", "size")

    def __init__(self) -> None:
        self._nodes: list[tuple[int, bytes]] = []
        self.size = 0

    def copy(self) -> Frontier:
        other = Frontier()
        other._nodes = list(self._nodes)
        other.size = self.size
        return other

    def append(self, leaf: bytes) -> None:
        node, height = leaf, 0
        while self._nodes and self._nodes[-1][0] == height:
            _, left = self._nodes.pop()
            node = node_hash(left, node)
            height += 1
        self._nodes.append((height, node))
        self.size += 1

    def to_bytes(self) -> bytes:
        """The frontier as stored beside the signed head: (height byte + 32-byte hash) per subtree."""
        return b"".join(bytes([h]) + node for h, node in self._nodes)

    @classmethod
    def from_bytes(cls, data: bytes, size: int) -> Frontier:
        """Rebuild a stored frontier; ValueError if it cannot be the frontier of `size` leaves."""
        if len(data) % 33:
            raise ValueError("a stored frontier is a whole number of 33-byte nodes")
        f = cls()
        f._nodes = [(data[i], data[i + 1 : i + 33]) for i in range(0, len(data), 33)]
        f.size = size
        if sum(1 << h for h, _ in f._nodes) != size or any(a <= b for (a, _), (b, _) in zip(f._nodes, f._nodes[1:])):
            raise ValueError(f"the stored frontier does not describe a tree of {size} entries")
        return f

    def root(self) -> bytes:
        """The RFC 6962 Merkle tree hash of everything appended so far."""
        if not self._nodes:
            return EMPTY_ROOT
        root = self._nodes[-1][1]
        for _, node in reversed(self._nodes[:-1]):
            root = node_hash(node, root)
        return root


def tree_root(leaves: Iterable[bytes]) -> bytes:
    """The Merkle tree hash of a sequence of leaf hashes."""
    f = Frontier()
    for leaf in leaves:
        f.append(leaf)
    return f.root()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed tree head: the log had `size` entries hashing to `root` at `signed_at`."""

    size: int
    root: bytes
    signed_at: int
    signature: bytes

    def message(self) -> bytes:
        return checkpoint_message(self.size, self.root, self.signed_at)

    def valid_under(self, public: Ed25519PublicKey) -> bool:
        try:
            public.verify(self.signature, self.message())
        except InvalidSignature:
            return False
        return True

    def as_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "root": self.root.hex(),
            "signed_at": self.signed_at,
            "signature": _b64(self.signature),
        }

    @classmethod
    def from_json(cls, raw: Any) -> Checkpoint:
        """Read an exported checkpoint; ValueError saying what is wrong."""
        if not isinstance(raw, dict):
            raise ValueError(f"a checkpoint must be an object, got {type(raw).__name__}")
        try:
            size, root, at, sig = raw["size"], bytes.fromhex(raw["root"]), raw["signed_at"], _unb64(raw["signature"])
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"checkpoint {raw!r:.80}: needs size, root (hex), signed_at and signature") from err
        if not isinstance(size, int) or size < 0 or not isinstance(at, int) or len(root) != 32 or len(sig) != 64:
            raise ValueError(f"checkpoint {raw!r:.80}: malformed values")
        return cls(size, root, at, sig)


def checkpoint_message(size: int, root: bytes, signed_at: int) -> bytes:
    """The exact bytes a checkpoint signature covers."""
    return f"walkout-audit-checkpoint v1\nsize {size}\nroot {root.hex()}\nsigned_at {signed_at}\n".encode()


def sign_checkpoint(key: Ed25519PrivateKey, size: int, root: bytes, signed_at: int) -> Checkpoint:
    return Checkpoint(size, root, signed_at, key.sign(checkpoint_message(size, root, signed_at)))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def public_key_text(key: Ed25519PublicKey) -> str:
    """base64url of the raw 32-byte public key, as exported for auditors."""
    return _b64(key.public_bytes(Encoding.Raw, PublicFormat.Raw))


def public_key_from_text(text: str) -> Ed25519PublicKey:
    raw = _unb64(text)
    if len(raw) != 32:
        raise ValueError("a box public key is 32 bytes of base64url")
    return Ed25519PublicKey.from_public_bytes(raw)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One entry of the log: what happened (`kind`) with its pseudonymous fields; body None once pruned."""

    seq: int
    at: int
    kind: str
    fields: Mapping[str, Any] = field(hash=False)
    pruned: bool = False


def entry_body(seq: int, at: int, kind: str, fields: Mapping[str, Any]) -> bytes:
    """The canonical bytes of an entry (sorted keys, no spaces): what its leaf hash covers."""
    return json.dumps(
        {"seq": seq, "at": at, "kind": kind, "fields": dict(fields)}, sort_keys=True, separators=(",", ":")
    ).encode()


def check_fields(kind: str, fields: Mapping[str, Any], allowed: Mapping[str, str]) -> None:
    """Refuse an entry that could carry personal data: unknown field names or free text values."""
    if not _KIND.fullmatch(kind):
        raise VaultError(f"audit kind {kind!r} must be a short lower-case code such as charge.state")
    for name, value in fields.items():
        if name not in allowed:
            raise VaultError(
                f"audit field {name!r} is not declared in the policy (allowed: {', '.join(sorted(allowed))})"
            )
        if value is None or isinstance(value, (bool, int)):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise VaultError(f"audit field {name!r} must be finite")
            continue
        if isinstance(value, str):
            if not _TEXT_VALUE.fullmatch(value):
                raise VaultError(
                    f"audit field {name!r} must be an id or code (letters, digits, _ . : / -, at most 96), "
                    "not free text"
                )
            continue
        raise VaultError(f"audit field {name!r} must be a number, a flag or an id, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class AuditVerdict:
    """The outcome of checking the log: `problems` is empty when it is intact."""

    size: int
    pruned: int
    checkpoints_checked: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_log(
    rows: Iterable[tuple[int, bytes, str | None, int]],
    head: Checkpoint | None,
    checkpoints: Sequence[Checkpoint],
    public: Ed25519PublicKey,
    external: Sequence[Checkpoint] = (),
) -> AuditVerdict:
    """Check a log's entries against their hashes, the signed head and every checkpoint.

    Args:
        rows: (seq, leaf hash, body or None if pruned, stored_at) in seq order, as stored.
        head: the signed head written with the last append (None for an empty log).
        checkpoints: checkpoints kept in the vault.
        public: the box's public key all signatures must verify under.
        external: checkpoints exported earlier and brought back by an auditor.
    """
    problems: list[str] = []
    frontier = Frontier()
    wanted: dict[int, list[tuple[str, Checkpoint]]] = {}
    for label, cps in (("checkpoint", checkpoints), ("exported checkpoint", external)):
        for cp in cps:
            if not cp.valid_under(public):
                problems.append(f"{label} of size {cp.size} (signed at {cp.signed_at}): signature is not the box's")
            wanted.setdefault(cp.size, []).append((label, cp))
    checked = 0
    pruned = 0

    def settle(size: int) -> None:
        nonlocal checked
        for label, cp in wanted.pop(size, []):
            checked += 1
            if frontier.root() != cp.root:
                problems.append(
                    f"the first {size} entries no longer match the {label} signed at {cp.signed_at}: "
                    "an entry was modified, removed, inserted or reordered"
                )

    settle(0)
    expected = 0
    for seq, leaf, body, stored_at in rows:
        if seq != expected:
            if seq > expected:
                problems.append(f"entries {expected} to {seq - 1} are missing (deleted)")
            else:
                problems.append(f"entry {seq} appears out of order after entry {expected - 1}")
        expected = seq + 1
        if body is None:
            pruned += 1
        else:
            if leaf_hash(body.encode()) != leaf:
                problems.append(f"entry {seq} was modified: its content does not match its hash")
            # Canonical bodies start with "at" and end with "seq" (sorted keys): a cheap check of both,
            # with the JSON parsed only to explain a mismatch.
            if not (body.startswith(f'{{"at":{stored_at},') and body.endswith(f',"seq":{seq}}}')):
                try:
                    parsed = json.loads(body)
                    body_seq, body_at = parsed["seq"], parsed["at"]
                except (ValueError, KeyError, TypeError):
                    problems.append(f"entry {seq} is not a well-formed entry")
                else:
                    if body_seq != seq:
                        problems.append(f"entry {seq} holds the content of entry {body_seq}: entries were moved")
                    if body_at != stored_at:
                        problems.append(f"entry {seq}: its stored time was altered")
        frontier.append(bytes(leaf))
        settle(frontier.size)
    for size, items in sorted(wanted.items()):
        for label, cp in items:
            problems.append(
                f"the {label} signed at {cp.signed_at} covers {size} entries but the log has {frontier.size}: "
                "entries were deleted"
            )
    if head is None:
        if frontier.size:
            problems.append(f"the log has {frontier.size} entries but no signed head")
    else:
        if not head.valid_under(public):
            problems.append("the signed head's signature is not the box's")
        if head.size != frontier.size:
            problems.append(
                f"the signed head covers {head.size} entries but the log has {frontier.size}: "
                + ("entries were deleted" if frontier.size < head.size else "entries were added without signing")
            )
        elif head.root != frontier.root():
            problems.append("the entries do not hash to the signed head: an entry was modified or reordered")
    return AuditVerdict(frontier.size, pruned, checked, tuple(problems))


class AuditLog:
    """The audit log in audit.db: appends with a signed head in one transaction, prunes old bodies.

    Not thread-safe; the Vault serialises calls.
    """

    def __init__(self, conn: Connection, signer: Ed25519PrivateKey, allowed_fields: Mapping[str, str]) -> None:
        self._conn = conn
        self._signer = signer
        self._public = signer.public_key()
        self._allowed = dict(allowed_fields)
        self.open_problems: tuple[str, ...] = ()
        self._frontier = self._load_frontier()

    def _load_frontier(self) -> Frontier:
        """The tree's frontier from beside the signed head (O(log n)), checked against the head and the
        number of entries; rebuilt from every leaf if anything disagrees (and the problem kept)."""
        rows = read(self._conn, "SELECT size, root, signed_at, signature, frontier FROM head WHERE id = 1", ())
        count = read(self._conn, "SELECT count(*), coalesce(max(seq) + 1, 0) FROM entries", ())[0]
        problems = []
        if rows:
            size, root, at, sig, stored = rows[0]
            head = Checkpoint(size, bytes(root), at, bytes(sig))
            try:
                frontier = Frontier.from_bytes(bytes(stored), size)
            except ValueError as err:
                problems.append(str(err))
            else:
                if not head.valid_under(self._public):
                    problems.append("the signed head's signature is not the box's")
                elif frontier.root() != head.root:
                    problems.append("the stored frontier does not hash to the signed head")
                elif tuple(count) != (size, size):
                    problems.append(f"the signed head covers {size} entries but the log has {count[0]}")
                else:
                    return frontier
        elif count[0]:
            problems.append(f"the log has {count[0]} entries but no signed head")
        self.open_problems = tuple(problems)
        frontier = Frontier()
        for (leaf,) in self._conn.execute("SELECT leaf FROM entries ORDER BY seq"):
            frontier.append(bytes(leaf))
        return frontier

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._public

    @property
    def size(self) -> int:
        return self._frontier.size

    def append(self, kind: str, fields: Mapping[str, Any], at: int) -> int:
        """Append one entry (durably, with a freshly signed head); returns its sequence number."""
        check_fields(kind, fields, self._allowed)
        seq = self._frontier.size
        body = entry_body(seq, at, kind, fields)
        leaf = leaf_hash(body)
        grown = self._frontier.copy()
        grown.append(leaf)
        head = sign_checkpoint(self._signer, grown.size, grown.root(), at)
        with transaction(self._conn, f"append audit entry {kind}") as c:
            c.execute(
                "INSERT INTO entries(seq, leaf, body, stored_at) VALUES (?, ?, ?, ?)", (seq, leaf, body.decode(), at)
            )
            c.execute(
                "INSERT OR REPLACE INTO head(id, size, root, signed_at, signature, frontier) VALUES (1, ?, ?, ?, ?, ?)",
                (head.size, head.root, head.signed_at, head.signature, grown.to_bytes()),
            )
        self._frontier = grown
        return seq

    def keep_head(self) -> bool:
        """Keep the stored signed head as a checkpoint (if its signature is the box's).

        Called when the log fails its check at open, before anything is appended: the next append
        re-signs a head over whatever the log holds now, and the kept head still says what it held.
        """
        head = self.head()
        if head is None or not head.valid_under(self._public):
            return False
        self._keep(head)
        return True

    def _keep(self, cp: Checkpoint) -> None:
        latest = read(self._conn, "SELECT size, root FROM checkpoints ORDER BY id DESC LIMIT 1", ())
        if latest and (latest[0][0], bytes(latest[0][1])) == (cp.size, cp.root):
            return  # the same tree head is already kept
        with transaction(self._conn, "store audit checkpoint") as c:
            c.execute(
                "INSERT INTO checkpoints(size, root, signed_at, signature) VALUES (?, ?, ?, ?)",
                (cp.size, cp.root, cp.signed_at, cp.signature),
            )

    def checkpoint(self, at: int) -> Checkpoint:
        """Sign the current tree head and keep it as a checkpoint (for export off the box)."""
        cp = sign_checkpoint(self._signer, self._frontier.size, self._frontier.root(), at)
        self._keep(cp)
        return cp

    def head(self) -> Checkpoint | None:
        rows = read(self._conn, "SELECT size, root, signed_at, signature FROM head WHERE id = 1", (), "read head")
        return Checkpoint(rows[0][0], bytes(rows[0][1]), rows[0][2], bytes(rows[0][3])) if rows else None

    def checkpoints(self) -> list[Checkpoint]:
        rows = read(self._conn, "SELECT size, root, signed_at, signature FROM checkpoints ORDER BY id", (), "read")
        return [Checkpoint(r[0], bytes(r[1]), r[2], bytes(r[3])) for r in rows]

    def entries(self, start: int = 0, kinds: Iterable[str] | None = None) -> Iterator[AuditEntry]:
        """Entries from `start` on, oldest first, optionally only some kinds."""
        wanted = set(kinds) if kinds is not None else None
        for seq, body, stored_at in self._conn.execute(
            "SELECT seq, body, stored_at FROM entries WHERE seq >= ? ORDER BY seq", (start,)
        ).fetchall():
            if body is None:
                if wanted is None:
                    yield AuditEntry(seq, stored_at, "", {}, pruned=True)
                continue
            parsed = json.loads(body)
            if wanted is None or parsed["kind"] in wanted:
                yield AuditEntry(seq, parsed["at"], parsed["kind"], parsed["fields"])

    def verify(self, external: Sequence[Checkpoint] = ()) -> AuditVerdict:
        """Check the stored log (see `verify_log`), all of it read in one snapshot."""
        with snapshot(self._conn):
            rows = (
                (seq, bytes(leaf), body, stored_at)
                for seq, leaf, body, stored_at in self._conn.execute(
                    "SELECT seq, leaf, body, stored_at FROM entries ORDER BY seq"
                )
            )
            return verify_log(rows, self.head(), self.checkpoints(), self._public, external)

    def prune(self, cutoff: int, chunk: int) -> int:
        """Drop the bodies of entries stored at or before `cutoff` (their hashes stay); returns how many."""
        total = 0
        while True:
            with transaction(self._conn, "prune audit entries") as c:
                cur = c.execute(
                    "UPDATE entries SET body = NULL WHERE seq IN "
                    "(SELECT seq FROM entries WHERE stored_at <= ? AND body IS NOT NULL LIMIT ?)",
                    (cutoff, chunk),
                )
                n = cur.rowcount
            total += n
            if n < chunk:
                return total

    def oldest_body(self) -> int | None:
        """When the oldest entry that still has its body was stored."""
        rows = read(self._conn, "SELECT min(stored_at) FROM entries WHERE body IS NOT NULL", (), "read audit")
        return rows[0][0] if rows and rows[0][0] is not None else None
