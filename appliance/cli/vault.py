"""Vault and audit commands: vault init / rotate-master-key / retention, audit verify / report / export, bench vault."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from appliance.cli import CliError, whole
from appliance.config import ConfigError, load_config
from appliance.config.model import VaultSettings
from appliance.vault.audit import EXPORT_FORMAT, Checkpoint, public_key_from_text, public_key_text
from appliance.vault.clock import SystemClock
from appliance.vault.crashpoints import crash_point
from appliance.vault.database import fsync_dir
from appliance.vault.errors import VaultError
from appliance.vault.keys import MasterKey
from appliance.vault.keysource import (
    find_key_source,
    load_master_key,
    next_key_path,
    read_key_file,
    write_key_file,
)
from appliance.vault.opening import key_file_path, open_vault, policy_for, vault_folder
from appliance.vault.policy import PolicyError
from appliance.vault.vault import Vault

logger = logging.getLogger(__name__)


def register(commands: Any, bench: Any) -> None:
    vault = commands.add_parser("vault", help="the encrypted vault: create it, rotate its master key, run retention")
    vcmd = vault.add_subparsers(dest="vault_command", metavar="ACTION", required=True)
    p = vcmd.add_parser("init", help="create the vault (and, for development, a master key file)")
    _where(p)
    p.set_defaults(func=cmd_init)
    p = vcmd.add_parser("rotate-master-key", help="re-wrap every key under a new master key")
    _where(p)
    p.add_argument(
        "--new-key-file",
        help="the new master key (32 raw bytes or 64 hex, mode 0600); a development key "
        "file gets a random one when this is left out",
    )
    p.set_defaults(func=cmd_rotate)
    p = vcmd.add_parser("retention", help="run the retention engine now and print what it did")
    _where(p)
    p.set_defaults(func=cmd_retention)

    audit = commands.add_parser("audit", help="what an auditor runs: verify the log, report on the vault")
    acmd = audit.add_subparsers(dest="audit_command", metavar="ACTION", required=True)
    p = acmd.add_parser("verify", help="check the audit log for any modified, deleted, inserted or reordered entry")
    _where(p)
    p.add_argument("--against", help="checkpoints exported earlier (appliance audit export); the log must extend them")
    p.set_defaults(func=cmd_verify)
    p = acmd.add_parser("report", help="policy, data inventory, ages, keys, retention runs and violations")
    _where(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=cmd_report)
    p = acmd.add_parser("export", help="add the log's signed checkpoints to a file kept off the box")
    _where(p)
    p.add_argument("file", help="the checkpoint file (created, or extended if it exists)")
    p.set_defaults(func=cmd_export)

    b = bench.add_parser("vault", help="cart-line insert rate and a retention run over many expired lines")
    b.add_argument("--lines", type=whole(1), default=1_000_000, help="expired cart lines for the retention run")
    b.add_argument("--durable", type=whole(1), default=2000, help="lines inserted one committed transaction each")
    b.add_argument("--chunk", type=whole(1), default=5000, help="rows deleted per retention transaction")
    b.add_argument("--workdir", help="folder for the scratch vault (default: the system's temp folder)")
    b.set_defaults(func=cmd_bench)


def _where(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="store.toml whose [vault] section to use (default: the [vault] defaults)")
    p.add_argument("--folder", help="the vault folder (overrides [vault] folder)")
    p.add_argument("--key-file", help="development master key file (overrides [vault] key_file)")


def _settings(args: argparse.Namespace) -> tuple[VaultSettings, Path]:
    if args.config:
        try:
            cfg = load_config(args.config)
        except ConfigError as err:
            raise CliError(f"{args.config}: {len(err.issues)} problem(s): " + "; ".join(map(str, err.issues))) from err
        settings, base = cfg.vault, Path(args.config).resolve().parent
    else:
        settings, base = VaultSettings(), Path.cwd()
    if args.folder:
        settings = dataclasses.replace(settings, folder=str(Path(args.folder).resolve()))
    if args.key_file:
        settings = dataclasses.replace(settings, key_file=str(Path(args.key_file).resolve()))
    try:
        policy_for(settings)
    except PolicyError as err:
        raise CliError(str(err)) from err
    return settings, base


def _open(args: argparse.Namespace, *, read_only: bool) -> Vault:
    settings, base = _settings(args)
    folder = vault_folder(settings, base)
    if not any(folder.glob("keyring-*.db")):
        raise CliError(f"no vault in {folder} (appliance vault init creates one)")
    try:
        return open_vault(settings, config_dir=base, clock=SystemClock(), read_only=read_only)
    except (VaultError, PolicyError) as err:
        raise CliError(str(err)) from err


def cmd_init(args: argparse.Namespace) -> int:
    settings, base = _settings(args)
    folder = vault_folder(settings, base)
    key_file = key_file_path(settings, base)
    try:
        source = find_key_source(settings.credential, key_file or "", os.environ)
        if source.kind == "key_file" and not source.path.exists():
            write_key_file(source.path, secrets.token_bytes(32))
            print(f"wrote a new development master key to {source.path} (mode 0600; keep it off backups)")
        existed = any(folder.glob("keyring-*.db"))
        key = load_master_key(settings.credential, key_file or "", folder)
        with Vault.open(folder, key, policy_for(settings), SystemClock(), chunk_rows=settings.chunk_rows) as vault:
            public = public_key_text(vault.audit_log.public_key)
            print(f"{'opened the existing' if existed else 'created a new'} vault in {folder}")
            print(f"master key id {vault.master_key_id} (from the {source.describe()})")
            print(f"box signing key (for auditors): {public}")
    except VaultError as err:
        raise CliError(str(err)) from err
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    settings, base = _settings(args)
    key_file = key_file_path(settings, base)
    try:
        source = find_key_source(settings.credential, key_file or "", os.environ)
        if args.new_key_file:
            new = read_key_file(Path(args.new_key_file))
        elif source.kind == "key_file":
            new = secrets.token_bytes(32)
        else:
            raise CliError(
                "the master key is a systemd credential: make the new key first and pass it with --new-key-file"
            )
        vault = _open(args, read_only=False)
        try:
            old_id = vault.master_key_id
            if source.kind == "key_file":
                staged = next_key_path(source.path)
                # We hold the vault's lock and the keyring is under the current key: a staged key
                # left here is from a rotation that never committed.
                staged.unlink(missing_ok=True)
                write_key_file(staged, new)
                crash_point("rotation.staged")
                vault.rotate_master_key(new)
                crash_point("rotation.rewrapped")
                os.replace(staged, source.path)
                fsync_dir(source.path.parent)
                print(f"master key rotated: {old_id} -> {MasterKey(new).id}; {source.path} now holds the new key")
            else:
                vault.rotate_master_key(new)
                print(f"master key rotated: {old_id} -> {MasterKey(new).id}")
                print(
                    f"install the new key as the service's credential before the next start, e.g.\n"
                    f"  systemd-creds encrypt --name={settings.credential} {args.new_key_file} "
                    f"/etc/credstore.encrypted/{settings.credential}\n"
                    f"then destroy {args.new_key_file}"
                )
        finally:
            vault.close()
    except VaultError as err:
        raise CliError(str(err)) from err
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    vault = _open(args, read_only=False)
    try:
        run = vault.run_retention()
    except VaultError as err:
        raise CliError(str(err)) from err
    finally:
        vault.close()
    deleted = ", ".join(f"{t} {n}" for t, n in sorted(run.deleted.items())) or "nothing"
    print(f"retention: deleted {deleted}; keys destroyed: {', '.join(run.keys_destroyed) or 'none'}")
    print(
        f"retention: {run.tokens_destroyed} tokens of final charges destroyed, {run.charges_failed} charges failed "
        f"(token expired), {run.audit_bodies_pruned} audit entries expired to hashes, "
        f"{run.orphan_files_removed} unreadable files removed"
    )
    return 0


def _read_export(path: Path) -> tuple[str, list[Checkpoint]]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise CliError(f"{path}: cannot read the checkpoint file: {err}") from err
    if not isinstance(raw, dict) or raw.get("format") != EXPORT_FORMAT or not isinstance(raw.get("checkpoints"), list):
        raise CliError(f"{path}: not a checkpoint file (expected format {EXPORT_FORMAT!r})")
    try:
        public_key_from_text(str(raw.get("box_public_key", "")))
        return str(raw["box_public_key"]), [Checkpoint.from_json(c) for c in raw["checkpoints"]]
    except ValueError as err:
        raise CliError(f"{path}: {err}") from err


def cmd_verify(args: argparse.Namespace) -> int:
    vault = _open(args, read_only=True)
    try:
        external: list[Checkpoint] = []
        if args.against:
            public, external = _read_export(Path(args.against))
            mine = public_key_text(vault.audit_log.public_key)
            if public != mine:
                print(
                    f"audit log: FAILED: {args.against} was signed by box key {public}, this box's key is {mine}",
                    file=sys.stderr,
                )
                return 1
        verdict = vault.verify_audit(external)
    finally:
        vault.close()
    summary = (
        f"{verdict.size} entries ({verdict.pruned} expired to hashes), "
        f"{verdict.checkpoints_checked} checkpoints checked ({len(external)} exported)"
    )
    if verdict.ok:
        print(f"audit log intact: {summary}")
        return 0
    print(f"audit log FAILED verification: {summary}", file=sys.stderr)
    for problem in verdict.problems:
        print(f"  {problem}", file=sys.stderr)
    return 1


def cmd_report(args: argparse.Namespace) -> int:
    from appliance.vault.report import build_report, render_text

    settings, _ = _settings(args)
    vault = _open(args, read_only=True)
    try:
        report = build_report(vault, grace_s=2 * settings.retention_interval_min * 60)
    except VaultError as err:
        raise CliError(str(err)) from err
    finally:
        vault.close()
    if args.json:
        print(json.dumps(report.as_json(), indent=2))
    else:
        print(render_text(report))
    return 0 if report.ok else 1


def cmd_export(args: argparse.Namespace) -> int:
    vault = _open(args, read_only=True)
    try:
        public = public_key_text(vault.audit_log.public_key)
        fresh = vault.audit_log.checkpoints()
        head = vault.audit_log.head()
        if head is not None:
            fresh.append(head)
    finally:
        vault.close()
    path = Path(args.file)
    existing: list[Checkpoint] = []
    if path.exists():
        old_public, existing = _read_export(path)
        if old_public != public:
            raise CliError(f"{path} holds checkpoints of another box ({old_public}); use a new file")
    merged = {(c.size, c.root): c for c in existing}
    added = 0
    for c in fresh:
        if (c.size, c.root) not in merged:
            merged[(c.size, c.root)] = c
            added += 1
    doc = {
        "format": EXPORT_FORMAT,
        "box_public_key": public,
        "checkpoints": [c.as_json() for c in sorted(merged.values(), key=lambda c: (c.size, c.signed_at))],
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    print(f"{path}: {added} new checkpoint(s), {len(merged)} in all; keep this file off the box")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from appliance.vault.bench import run_vault_bench

    vault_logger = logging.getLogger("appliance.vault")
    level = vault_logger.level
    if not args.verbose:
        vault_logger.setLevel(logging.WARNING)  # the run makes many periods; the progress lines say enough
    try:
        r = run_vault_bench(
            durable_lines=args.durable,
            expired_lines=args.lines,
            chunk_rows=args.chunk,
            workdir=Path(args.workdir) if args.workdir else None,
            progress=lambda line: print(line, flush=True),
        )
    finally:
        vault_logger.setLevel(level)
    mb = 1024 * 1024
    print(
        f"vault bench: durable cart-line inserts: {r.durable_rate:,.0f} lines/s "
        f"({r.durable_lines} lines, one committed transaction each)"
    )
    print(
        f"vault bench: batched cart-line inserts: {r.batch_rate:,.0f} lines/s "
        f"({r.batch_lines:,} lines, {r.batch_size} per transaction)"
    )
    print(
        f"vault bench: retention run over {r.expired_lines:,} expired cart lines: {r.retention_s:.1f} s "
        f"({r.retention_deleted:,} rows deleted in chunks of {r.chunk_rows}, WAL truncated; "
        f"vault {r.file_bytes_before / mb:.0f} MB -> {r.file_bytes_after / mb:.1f} MB)"
    )
    print(f"vault bench: conditions: {r.conditions}")
    if r.retention_deleted != r.expired_lines:
        raise CliError(f"the retention run deleted {r.retention_deleted} of {r.expired_lines} expired lines")
    return 0
