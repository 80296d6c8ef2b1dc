"""Appliance commands: `appliance run`, and the charge path's benchmarks `bench crash` and `bench payments`."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from appliance.cli import CliError, number, whole

logger = logging.getLogger(__name__)


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser(
        "run",
        help="run the appliance: vault, outbox, shop floor, and the shop's devices over MQTT (or a recording)",
    )
    p.add_argument("--config", type=Path, required=True, help="the store.toml ([vault], [payments], [mqtt] ...)")
    p.add_argument(
        "--recording",
        type=Path,
        help="play this recording folder instead of listening to the devices; played again from its start "
        "after a crash (the vault recognises what it already stored)",
    )
    p.add_argument(
        "--speed", type=number(0), default=0.0, help="with --recording: times real time; 0 = as fast as possible"
    )
    p.add_argument(
        "--card-gate", action="append", default=[], metavar="GATE", help="a gate with a card terminal (repeatable)"
    )
    p.add_argument(
        "--sandbox-state",
        type=Path,
        help="with processor = \"sandbox\": run the sandbox processor inside this process on api_base's port, "
        "its state in this file (otherwise one must already listen there: `appliance sandbox-processor`)",
    )
    p.add_argument(
        "--settle-timeout", type=number(0, above=True), default=600.0,
        help="with --recording: how long to wait after its end for every charge to be answered (default 600 s)",
    )  # fmt: skip
    p.set_defaults(func=cmd_run)

    b = bench.add_parser(
        "crash", help="kill -9 the appliance at each named point of the charge path and at random, restart, check"
    )
    b.add_argument("--runs", type=whole(1), default=100, help="runs per named point (default 100)")
    b.add_argument("--random", type=whole(0), help="runs killed at a random moment (default 10 x --runs)")
    b.add_argument("--point", action="append", help="only this named point (repeatable); 'none' for random only")
    b.add_argument("--seed", type=whole(0), default=1, help="seed of the simulated day and of the kill times")
    b.add_argument("--shoppers", type=whole(2), default=5, help="visits in the simulated day (default 5)")
    b.add_argument("--workers", type=whole(1), default=2, help="runs at once (default 2)")
    b.add_argument("--keep-failures", type=Path, help="copy the folder of any run with a problem here")
    b.set_defaults(func=cmd_bench_crash)

    b = bench.add_parser("faults", help="simulated days charged through a faulty processor: charged once, none lost")
    b.add_argument("--scenario", default="rush", help="simulated day (default: rush, 12 visits in 10 minutes)")
    b.add_argument("--seeds", type=whole(1), default=3, help="days, seeds 1..N (default 3)")
    b.set_defaults(func=cmd_bench_faults)

    b = bench.add_parser("payments", help="latency from a shopper's exit to the charge request leaving the box")
    b.add_argument("--scenario", default="day", help="simulated day (default: day, one hour with 20 visits)")
    b.add_argument("--seeds", type=whole(1), default=3, help="simulated days, seeds 1..N (default 3)")
    b.add_argument("--speed", type=number(0), default=0.0, help="times real time; 0 = as fast as possible (default)")
    b.set_defaults(func=cmd_bench_payments)


def _load(path: Path) -> Any:
    from appliance.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as err:
        raise CliError(str(err)) from err
    except OSError as err:
        raise CliError(f"cannot read {path}: {err.strerror or err}") from err


def _same_shop(config: Any, recording: Any) -> None:
    ours = ([s.id for s in config.sensors], [(p.sku, p.price) for p in config.products])
    theirs = ([s.id for s in recording.config.sensors], [(p.sku, p.price) for p in recording.config.products])
    if ours != theirs:
        raise CliError("the recording was made in another store: its sensors or products differ from --config's")


def cmd_run(args: argparse.Namespace) -> int:
    from appliance.app import Appliance, LiveSource, RecordingSource, RestartSafeReplayCache, VaultAdmissions
    from appliance.app.sources import Source
    from appliance.vault import VaultError

    config = _load(args.config)
    source: Source
    app_holder: list[Appliance] = []
    if args.recording is not None:
        from appliance.sim.recording import RecordingError, read_recording

        try:
            recording = read_recording(args.recording)
        except RecordingError as err:
            raise CliError(str(err)) from err
        _same_shop(config, recording)
        try:
            source = RecordingSource(recording, speed=args.speed)
        except ValueError as err:
            raise CliError(str(err)) from err
    else:
        if not config.mqtt.password_file:
            raise CliError("live operation needs [mqtt] password_file (the appliance's broker password)")
        try:
            password = Path(config.mqtt.password_file).read_text(encoding="utf-8").strip()
        except OSError as err:
            raise CliError(f"cannot read [mqtt] password_file: {err.strerror or err}") from err
        admissions = VaultAdmissions(lambda: app_holder[0].vault)
        source = LiveSource(
            config, password=password, cache=RestartSafeReplayCache(admissions), card_gates=args.card_gate
        )
    sandbox = None
    if args.sandbox_state is not None:
        sandbox = _own_sandbox(config, args.sandbox_state)
    app = Appliance(config, source, config_dir=args.config.resolve().parent)
    app_holder.append(app)
    try:
        if args.recording is not None:
            try:
                app.start()
            except (VaultError, ValueError, ConnectionError, OSError) as err:
                raise CliError(f"the appliance could not start: {err}") from err
            print("appliance started", flush=True)
            try:
                settled = app.wait(args.settle_timeout) and app.source_error is None
            finally:
                app.stop()
            if not settled:
                raise CliError(
                    "the recording was played but charges are still waiting for the processor; "
                    "they are sent again at the next start"
                )
            print(f"played {args.recording}: {app.loop.charges if app.loop else 0} visits charged or closed")
            return 0
        return _run_live(app)
    finally:
        if sandbox is not None:
            sandbox.stop()


def _own_sandbox(config: Any, state: Path) -> Any:
    import urllib.parse

    from appliance.payments.sandbox_server import SandboxProcessor

    if config.payments.processor != "sandbox":
        raise CliError('--sandbox-state needs [payments] processor = "sandbox"')
    port = urllib.parse.urlsplit(config.payments.api_base).port or 80
    try:
        return SandboxProcessor(state, port=port).start()
    except OSError as err:
        raise CliError(f"cannot run the sandbox processor on port {port}: {err.strerror or err}") from err


def _run_live(app: Any) -> int:
    from appliance.vault import VaultError

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        app.start()
    except (VaultError, ValueError, ConnectionError, OSError) as err:
        raise CliError(f"the appliance could not start: {err}") from err
    logger.info("the appliance is running; SIGTERM or Ctrl-C stops it")
    try:
        while not stop.wait(1.0):
            if app.source_error is not None:
                raise CliError(f"the source stopped: {app.source_error}")
    finally:
        app.stop()
    return 0


def cmd_bench_crash(args: argparse.Namespace) -> int:
    from appliance.bench.crash import CHARGE_PATH_POINTS, run_bench

    points = list(CHARGE_PATH_POINTS) if not args.point else [p for p in args.point if p != "none"]
    unknown = [p for p in points if p not in CHARGE_PATH_POINTS]
    if unknown:
        raise CliError(f"no crash point {unknown[0]!r}; points are {', '.join(CHARGE_PATH_POINTS)}")
    randoms = args.random if args.random is not None else 10 * args.runs
    result = run_bench(points, args.runs, randoms, seed=args.seed, shoppers=args.shoppers, workers=args.workers,
                       keep_failures=args.keep_failures)  # fmt: skip
    for line in result.lines():
        print(line)
    return 0 if result.clean else 1


def cmd_bench_faults(args: argparse.Namespace) -> int:
    import os
    import tempfile

    from appliance.bench.faults import OUTAGE_S, SLOW_ANSWER_S, TRANSPORT_FAULTS, run_faulty_day

    clean = True
    for seed in range(1, args.seeds + 1):
        with tempfile.TemporaryDirectory(prefix="walkout-faults-") as folder:
            day = run_faulty_day(args.scenario, seed, Path(folder))
        clean &= day.clean
        print(day.line(), flush=True)
    faults = ", ".join(f"{kind} x{n}" for kind, n in TRANSPORT_FAULTS)
    print(
        f"conditions: the whole appliance (vault, outbox thread, shop floor) over loopback to the sandbox; {faults}, "
        f"one answer slower ({SLOW_ANSWER_S:.0f} s) than the read timeout, then down {OUTAGE_S / 60:.0f} min after "
        f"the third visit left; one hand-moved clock for box and processor; {os.cpu_count()} CPUs"
    )
    print("every visit charged once, none lost" if clean else "FAIL: see the figures above")
    return 0 if clean else 1


def cmd_bench_payments(args: argparse.Namespace) -> int:
    from appliance.bench.payments import run_latency_bench

    for line in run_latency_bench(args.scenario, args.seeds, args.speed):
        print(line)
    return 0
