"""Payment commands: the sandbox processor, reconciliation with the processor, reading a sealed receipt."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from appliance.cli import CliError


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "sandbox-processor", help="run the local sandbox payment processor (Stripe's API subset, fault injection)"
    )
    p.add_argument("--port", type=int, default=12111, help="loopback port to listen on (default 12111)")
    p.add_argument("--state", type=Path, help="state file (SQLite); default: keep everything in memory")
    p.add_argument(
        "--manual-clock",
        type=float,
        metavar="UNIX_S",
        help="run on a clock that starts here and moves only through POST /_sandbox/clock",
    )
    p.set_defaults(func=cmd_sandbox_processor)

    pay = commands.add_parser("payments", help="payment housekeeping")
    sub = pay.add_subparsers(dest="payments_command", metavar="ACTION", required=True)
    r = sub.add_parser("reconcile", help="compare the box's charges with the processor's records")
    r.add_argument("--charges", type=Path, required=True, help="the box's charges: a JSON list of BoxCharge objects")
    r.add_argument("--config", type=Path, help="store.toml whose [payments] section names the processor")
    r.add_argument("--api-base", help="the processor's API base (instead of --config)")
    r.add_argument("--key-file", type=Path, help="file holding the processor secret key (with --api-base)")
    r.add_argument(
        "--since",
        type=int,
        help="only processor charges created at or after this unix time (give the box's charges of the same period)",
    )
    r.add_argument("--until", type=int, help="only processor charges created before this unix time")
    r.add_argument("--json", action="store_true", help="print the mismatches as JSON")
    r.set_defaults(func=cmd_reconcile)

    rc = commands.add_parser("receipt", help="sealed receipts, as the shopper's app sees them")
    rsub = rc.add_subparsers(dest="receipt_command", metavar="ACTION", required=True)
    o = rsub.add_parser("open", help="open a sealed receipt (WR1...) with the shopper's receipt key")
    o.add_argument("--key", type=Path, required=True, help="file with the X25519 private key (base64url)")
    o.add_argument("receipt", help="the receipt text, a file holding it, or - for standard input")
    o.add_argument("--json", action="store_true", help="print the receipt document as JSON")
    o.set_defaults(func=cmd_receipt_open)
    k = rsub.add_parser("new-key", help="make a receipt key pair as the shopper's app would; prints the rk")
    k.add_argument("--out", type=Path, required=True, help="where to write the private key (mode 0600)")
    k.set_defaults(func=cmd_receipt_new_key)


def cmd_sandbox_processor(args: argparse.Namespace) -> int:
    from appliance.gate.clock import Clock, ManualClock, WallClock
    from appliance.payments.sandbox_server import SandboxProcessor

    if not 1 <= args.port <= 65535:
        raise CliError(f"--port must be 1-65535, got {args.port}")
    clock: Clock = ManualClock(args.manual_clock) if args.manual_clock is not None else WallClock()
    try:
        sandbox = SandboxProcessor(args.state, clock=clock, port=args.port)
    except OSError as err:
        raise CliError(f"cannot listen on 127.0.0.1:{args.port}: {err.strerror or err}") from err
    print(f"sandbox processor on {sandbox.url} (state: {args.state or 'memory'}); Ctrl-C stops it", flush=True)
    sandbox.serve_forever()
    return 0


def _read_box_charges(path: Path) -> list[Any]:
    from appliance.payments.reconcile import BoxCharge

    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from err
    except ValueError as err:
        raise CliError(f"{path} is not JSON: {err}") from err
    if not isinstance(raw, list):
        raise CliError(f"{path}: expected a JSON list of charges")
    out = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict):
            raise CliError(f"{path}[{i}]: expected an object with order_ref, amount, currency, state")
        try:
            out.append(
                BoxCharge(
                    order_ref=str(item["order_ref"]),
                    amount=int(item["amount"]),
                    currency=str(item["currency"]),
                    state=str(item["state"]),
                    refunded=int(item.get("refunded", 0)),
                )
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CliError(f"{path}[{i}]: {err}") from err
    return out


def cmd_reconcile(args: argparse.Namespace) -> int:
    from appliance.config import ConfigError, load_config
    from appliance.config.model import PaymentSettings
    from appliance.payments.gateway import ProcessorError
    from appliance.payments.reconcile import reconcile
    from appliance.payments.stripe_gateway import gateway_from_settings

    box = _read_box_charges(args.charges)
    try:
        if args.config is not None:
            settings = load_config(args.config).payments
        elif args.api_base:
            settings = PaymentSettings(
                processor="stripe" if args.key_file else "sandbox",
                api_base=args.api_base,
                secret_key_file=str(args.key_file or ""),
            )
        else:
            raise CliError("name the processor with --config store.toml, or --api-base URL [--key-file FILE]")
        gateway = gateway_from_settings(settings)
        records = gateway.list_charges(created_from=args.since, created_to=args.until)
    except ConfigError as err:
        raise CliError(str(err)) from err
    except ValueError as err:
        raise CliError(str(err)) from err
    except ProcessorError as err:
        raise CliError(f"could not read the processor's records: {err}") from err
    mismatches = reconcile(box, records)
    if args.json:
        print(
            json.dumps(
                [
                    {"kind": m.kind, "order_ref": m.order_ref, "box": m.box, "processor": m.processor}
                    for m in mismatches
                ],
                indent=2,
            )
        )
    else:
        for m in mismatches:
            print(m)
        print(f"{len(box)} box charges, {len(records)} processor charges, {len(mismatches)} mismatch(es)")
    return 1 if mismatches else 0


def _read_private_key(path: Path) -> Any:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    from appliance.config import decode_b64url

    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as err:
        raise CliError(f"cannot read the key file {path}") from err
    try:
        raw = decode_b64url(text)
    except ValueError as err:
        raise CliError(f"{path} does not hold a base64url key") from err
    if len(raw) != 32:
        raise CliError(f"{path} must hold a 32-byte X25519 private key, got {len(raw)} bytes")
    return X25519PrivateKey.from_private_bytes(raw)


def cmd_receipt_open(args: argparse.Namespace) -> int:
    from appliance.payments.receipts import ReceiptError, format_receipt, open_receipt

    key = _read_private_key(args.key)
    if args.receipt == "-":
        text = sys.stdin.read()
    elif args.receipt.startswith("WR"):
        text = args.receipt
    else:
        try:
            text = Path(args.receipt).read_text(encoding="ascii")
        except (OSError, UnicodeDecodeError) as err:
            raise CliError(f"{args.receipt} is neither a receipt (WR1...) nor a readable file") from err
    try:
        document = open_receipt(text, key)
    except ReceiptError as err:
        raise CliError(f"cannot open the receipt: {err}") from err
    print(json.dumps(document, ensure_ascii=False, indent=2) if args.json else format_receipt(document))
    return 0


def cmd_receipt_new_key(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    from appliance.gate.passes import b64url_encode
    from appliance.gate.sealed import public_bytes

    key = X25519PrivateKey.generate()
    raw = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    try:
        fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise CliError(f"cannot create {args.out}: {err.strerror or err} (it must not exist yet)") from err
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(b64url_encode(raw) + "\n")
    print(b64url_encode(public_bytes(key)))
    return 0
