"""Payment commands: the sandbox processor, the owner's payments status, reconciliation, reading a sealed receipt."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from appliance.cli import CliError, number, whole


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "sandbox-processor", help="run the local sandbox payment processor (Stripe's API subset, fault injection)"
    )
    p.add_argument("--port", type=whole(1, 65535), default=12111, help="loopback port to listen on (default 12111)")
    p.add_argument("--state", type=Path, help="state file (SQLite); default: keep everything in memory")
    p.add_argument(
        "--manual-clock",
        type=number(0),
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
        type=whole(0),
        help="only processor charges created at or after this unix time (give the box's charges of the same period)",
    )
    r.add_argument("--until", type=whole(0), help="only processor charges created before this unix time")
    r.add_argument("--json", action="store_true", help="print the mismatches as JSON")
    r.set_defaults(func=cmd_reconcile)

    st = sub.add_parser(
        "status", help="charges per state, and the visits not paid (awaiting shopper, declined, failed)"
    )
    st.add_argument("--config", type=Path, required=True, help="store.toml whose [vault] section names the vault")
    st.add_argument("--json", action="store_true", help="print the status as JSON")
    st.set_defaults(func=cmd_status)

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

    b = bench.add_parser("gateway", help="charge round trips through StripeGateway to the sandbox processor")
    b.add_argument("--charges", type=whole(1), default=300, help="how many charges (default 300)")
    b.set_defaults(func=cmd_bench_gateway)
    q = bench.add_parser("qr", help="QR read rate and time per frame over rotated, scaled, noisy camera views")
    q.add_argument("--frames", type=whole(1), default=120, help="how many frames (default 120)")
    q.add_argument("--seed", type=whole(0), default=1, help="seed of the views (default 1)")
    q.set_defaults(func=cmd_bench_qr)


def cmd_sandbox_processor(args: argparse.Namespace) -> int:
    from appliance.gate.clock import Clock, ManualClock, WallClock
    from appliance.payments.sandbox_server import SandboxProcessor

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


def cmd_status(args: argparse.Namespace) -> int:
    import time

    from appliance.config import ConfigError, load_config
    from appliance.payments.status import format_status, payments_status
    from appliance.vault import VaultError
    from appliance.vault.opening import open_vault

    try:
        config = load_config(args.config)
    except ConfigError as err:
        raise CliError(str(err)) from err
    except OSError as err:
        raise CliError(f"cannot read {args.config}: {err.strerror or err}") from err
    try:
        with open_vault(config.vault, config_dir=args.config.resolve().parent, read_only=True) as vault:
            status = payments_status(vault, time.time())
    except VaultError as err:
        raise CliError(f"cannot read the vault: {err}") from err
    print(json.dumps(status.as_json(), indent=2) if args.json else format_status(status))
    return 0


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


def _percentiles(samples: list[float]) -> str:
    import numpy as np

    p50, p99 = np.percentile(np.array(samples) * 1000.0, [50, 99])
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {max(samples) * 1000.0:.1f} ms"


def cmd_bench_gateway(args: argparse.Namespace) -> int:
    import tempfile
    import time
    import urllib.parse
    import urllib.request

    from appliance.payments.gateway import ChargeRequest, new_idempotency_key, new_order_ref
    from appliance.payments.sandbox_server import SandboxProcessor
    from appliance.payments.stripe_gateway import StripeGateway

    if args.charges < 10:
        raise CliError("--charges must be at least 10")
    with tempfile.TemporaryDirectory() as folder, SandboxProcessor(Path(folder) / "processor.db") as sandbox:
        gateway = StripeGateway("sk_test_bench", sandbox.url)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        library: list[float] = []
        plain: list[float] = []
        for i in range(args.charges):
            charge = ChargeRequest(new_order_ref(), "cus_bench/pm_card_visa", 1000 + i, "KRW", new_idempotency_key())
            start = time.perf_counter()
            gateway.charge(charge)
            library.append(time.perf_counter() - start)
            form = urllib.parse.urlencode(
                {"amount": 1000 + i, "currency": "krw", "customer": "cus_bench", "payment_method": "pm_card_visa",
                 "off_session": "true", "confirm": "true", "metadata[order_ref]": new_order_ref()}
            ).encode()  # fmt: skip
            request = urllib.request.Request(f"{sandbox.url}/v1/payment_intents", data=form, method="POST")
            request.add_header("Authorization", "Bearer sk_test_bench")
            request.add_header("Idempotency-Key", new_idempotency_key())
            start = time.perf_counter()
            with opener.open(request, timeout=10) as response:
                response.read()
            plain.append(time.perf_counter() - start)
            if (i + 1) % 100 == 0:
                print(f"  {i + 1}/{args.charges} charges", file=sys.stderr, flush=True)
        gateway.close()
    print(f"charge round trip, StripeGateway -> sandbox:          {_percentiles(library)}")
    print(f"peer, a plain urllib POST of the same form, same box: {_percentiles(plain)}")
    print(
        f"conditions: {args.charges} sequential charges each, interleaved, loopback, sandbox state in SQLite "
        f"(WAL, fsync per charge), {os.cpu_count()} CPUs, same run"
    )
    return 0


def cmd_bench_qr(args: argparse.Namespace) -> int:
    import time

    import cv2
    import numpy as np

    from appliance.gate.qr import QrReader, synthetic_view

    text = "WO1." + "eyJpc3MiOiJkZW1vLXBheSIsInRvayI6ImN1c19kZW1vL3BtX2NhcmRfdmlzYSJ9" * 5 + ".sig" + "A" * 82
    rng = np.random.default_rng(args.seed)
    reader, classic = QrReader(), cv2.QRCodeDetector()
    ours: list[float] = []
    theirs: list[float] = []
    ok_ours = ok_theirs = 0
    for i in range(args.frames):
        frame = synthetic_view(
            text, angle=float(rng.uniform(0, 360)), module_px=float(rng.uniform(3.0, 5.0)),
            noise=float(rng.uniform(0, 20)), rng=rng,
        )  # fmt: skip
        start = time.perf_counter()
        ok_ours += reader.read(frame) == text
        ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        ok_theirs += classic.detectAndDecode(frame)[0] == text
        theirs.append(time.perf_counter() - start)
        if (i + 1) % 50 == 0:
            print(f"  {i + 1}/{args.frames} frames", file=sys.stderr, flush=True)
    n = args.frames
    rate_ours, rate_theirs = f"{100 * ok_ours / n:.0f}%", f"{100 * ok_theirs / n:.0f}%"
    print(f"QrReader (classic, ArUco, both at 2x): read {ok_ours}/{n} ({rate_ours}), {_percentiles(ours)}")
    print(f"peer, cv2.QRCodeDetector alone:        read {ok_theirs}/{n} ({rate_theirs}), {_percentiles(theirs)}")
    print(
        f"conditions: 960x720 grey frames, a {len(text)}-character pass, rotation 0-360 deg, 3-5 px per module, "
        f"noise sigma 0-20 grey levels, seed {args.seed}, {os.cpu_count()} CPUs, same run"
    )
    return 0
