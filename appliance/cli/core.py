"""Core-loop commands: check-config, replay, score, import and their benchmarks."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appliance.cli import CliError, number, whole
from appliance.config import ConfigError, StoreConfig, describe, load_config


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser("check-config", help="validate a store.toml and print every problem with its fix")
    p.add_argument("file", help="the store.toml to check")
    p.add_argument("--explain", action="store_true", help="also list every setting with its default and help")
    p.set_defaults(func=cmd_check_config)

    p = commands.add_parser("replay", help="run a recording through the appliance and write the receipts")
    p.add_argument("recording", help="a recording folder (shared/spec/recording.md)")
    p.add_argument("--out", default="receipts.json", help="where to write the receipts (default receipts.json)")
    p.add_argument("--from", dest="level", choices=("video", "detections", "tracks"),
                   help="input level to start from (default: the lowest the recording has)")
    p.add_argument("--decisions", action="store_true", help="print every shelf event and what became of it")
    p.set_defaults(func=cmd_replay)

    p = commands.add_parser("score", help="compare receipts with the truth (spec/recording.md, Scoring)")
    p.add_argument("receipts")
    p.add_argument("truth")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.set_defaults(func=cmd_score)

    p = commands.add_parser("demo", help="play a simulated shop through the appliance in the terminal")
    p.add_argument("--scenario", default="rush", help="simulator scenario (see `appliance sim list`)")
    p.add_argument("--seed", type=whole(0), default=1)
    p.add_argument("--speed", type=number(0), default=1.0, help="times real time; 0 = as fast as possible")
    p.add_argument("--recording", help="play this recording folder instead of simulating one")
    p.add_argument("--video", action="store_true",
                   help="film the simulated shop and track people from the footage with the real detector")
    p.set_defaults(func=cmd_demo)

    b = bench.add_parser("accuracy", help="the scenario suite over several seeds: F1, exact receipts, overcharge")
    b.add_argument("--seeds", type=whole(1), default=5, help="seeds per scenario (1..N)")
    b.add_argument("--first-seed", type=whole(0), default=1)
    b.add_argument("--scenario", action="append", help="only these scenarios (repeatable)")
    b.add_argument("--workers", type=whole(1), default=2)
    b.add_argument("--from", dest="level", choices=("video", "detections", "tracks"), default="tracks",
                   help="input level: tracks (default), or film each scenario and replay from detections or video")
    b.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="change a sensor or tracker setting in every scenario, e.g. --set hand_share=1.0 "
                   "(the tracker reports the hand in every reach); see `appliance sim generate --set`")
    b.set_defaults(func=cmd_bench_accuracy)

    b = bench.add_parser("replay", help="time the replay of a one-hour, 20-shopper simulated day from tracks")
    b.add_argument("--recording", help="replay this recording instead of simulating the day")
    b.add_argument("--seed", type=whole(0), default=1)
    b.set_defaults(func=cmd_bench_replay)

    b = bench.add_parser("shelves", help="weight pipeline throughput on one core (850 load cells at 60 Hz)")
    b.add_argument("--sensors", type=whole(1), default=850)
    b.add_argument("--hz", type=number(0, above=True), default=60.0)
    b.add_argument("--seconds", type=number(0, above=True), default=60.0, help="data time to process")
    b.add_argument("--picks-per-second", type=number(0), default=1.0)
    b.set_defaults(func=cmd_bench_shelves)

    p = commands.add_parser("import", help="convert another dataset into a recording")
    sub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    a = sub.add_parser("aifi", help="an AiFi AutoCheckout test case folder")
    a.add_argument("src")
    a.add_argument("out")
    a.set_defaults(func=cmd_import_aifi)


def cmd_check_config(args: argparse.Namespace) -> int:
    if args.explain:
        for doc in describe(StoreConfig):
            extra = ", ".join(x for x in (doc.unit and f"unit {doc.unit}", doc.bounds) if x)
            print(f"{doc.path} ({doc.type}, default {doc.default}{', ' + extra if extra else ''}): {doc.help}")
        print()
    try:
        cfg = load_config(args.file)
    except ConfigError as err:
        print(f"{args.file}: {len(err.issues)} problem(s)", file=sys.stderr)
        for issue in err.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    print(
        f"{args.file}: ok: {len(cfg.products)} products, {len(cfg.sensors)} sensors, "
        f"{len(cfg.stock)} stock entries, {len(cfg.cameras)} cameras, {len(cfg.issuers)} pass issuers"
    )
    return 0


def _progress(label: str) -> Any:
    def report(share: float) -> None:
        print(f"\r{label}: {share:6.1%}", end="\n" if share >= 1.0 else "", file=sys.stderr, flush=True)

    return report


def cmd_replay(args: argparse.Namespace) -> int:
    from appliance.replay import ReplayError, receipts_document, replay, write_json_atomic
    from appliance.sim.recording import RecordingError, read_recording

    out = Path(args.out)
    if out.is_dir():
        raise CliError(f"cannot write receipts to {out}: it is a folder")
    if out.parent.exists() and not os.access(out.parent, os.W_OK):
        raise CliError(f"cannot write receipts to {out}: its folder is not writable")
    try:
        rec = read_recording(args.recording)
        result = replay(rec, args.level, progress=_progress("replay") if sys.stderr.isatty() else None)
    except (RecordingError, ReplayError) as err:
        raise CliError(str(err)) from err
    try:
        write_json_atomic(out, receipts_document(result))
    except OSError as err:
        raise CliError(f"cannot write receipts to {out}: {err.strerror or err}") from err
    if args.decisions:
        for d in result.decisions:
            e = d.event
            print(f"{e.t_start:.2f}-{e.t_end:.2f} {','.join(e.sensors)} {e.delta_g:+.1f} g: {d.outcome} "
                  f"{d.visit[:8]} {list(d.items)} p_product={d.product_confidence:.2f} "
                  f"p_person={d.person_confidence:.2f}")
    held = sum(len(r.review) for r in result.receipts)
    print(f"{len(result.receipts)} visits, {sum(len(r.lines) for r in result.receipts)} receipt lines, "
          f"{held} review items, {len(result.restock)} restock alerts (from {result.level}) -> {args.out}")
    return 0


def _load_json(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise CliError(f"{path}: cannot read: {err.strerror or err}") from err
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CliError(f"{path}: not JSON: {err}") from err


def cmd_score(args: argparse.Namespace) -> int:
    from appliance.sim.score import ScoreError, score

    try:
        s = score(_load_json(args.receipts), _load_json(args.truth))
    except ScoreError as err:
        raise CliError(str(err)) from err
    if args.json:
        print(json.dumps(s.as_json(), sort_keys=True))
    else:
        print(f"visits {s.visits}  precision {s.precision:.4f}  recall {s.recall:.4f}  F1 {s.f1:.4f}  "
              f"exact receipts {s.exact_share:.1%}  overcharge {s.overcharge_share:.3%} of {s.charged} charged  "
              f"review items {s.review_per_1000:.1f} per 1,000 visits")
    return 0


def cmd_import_aifi(args: argparse.Namespace) -> int:
    from appliance.sim.aifi import AifiImportError, import_aifi
    from appliance.sim.recording import DestinationTakenError, check_destination

    try:
        check_destination(args.out)
        summary = import_aifi(args.src, args.out)
    except (AifiImportError, DestinationTakenError) as err:
        raise CliError(str(err)) from err
    print(f"{args.out}: {summary.sensors} sensors, {summary.products} products, {summary.readings} readings "
          f"over {summary.seconds:.1f} s, {summary.shoppers} shoppers")
    return 0


def pin_one_core() -> str:
    """Run this process on a single CPU so a per-core figure means what it says."""
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        return f"pinned to CPU {cpu}"
    except (AttributeError, OSError):
        return "not pinned (no affinity control here)"


def cmd_bench_shelves(args: argparse.Namespace) -> int:
    from appliance.bench.shelves import report, run_shelf_bench

    pinned = pin_one_core()
    result = run_shelf_bench(args.sensors, args.hz, args.seconds, args.picks_per_second)
    print(report(result) + f"; {pinned}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from appliance.demo import play
    from appliance.sim import SCENARIOS
    from appliance.sim.recording import RecordingError, read_recording

    if not args.recording and args.scenario not in SCENARIOS:
        raise CliError(f"no scenario {args.scenario!r}; known: {', '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory(prefix="walkout-demo-") as tmp:
        try:
            if args.recording:
                rec = read_recording(args.recording)
            elif args.video:
                from appliance.sim.simulator import generate

                print(f"simulating and filming scenario {args.scenario!r} (seed {args.seed}) ...", file=sys.stderr)
                rec = read_recording(generate(args.scenario, args.seed, Path(tmp) / "shop", cameras=2))
            else:
                from appliance.sim.live import simulated_recording

                print(f"simulating scenario {args.scenario!r} (seed {args.seed}) ...", file=sys.stderr)
                rec = simulated_recording(args.scenario, args.seed)
        except (RecordingError, KeyError, ValueError) as err:
            raise CliError(str(err)) from err
        level = "video" if args.video or (args.recording and rec.video) else "tracks"
        play(rec, speed=args.speed, level=level)
    return 0


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Only warnings from the box while a benchmark runs (its figures are the output); the level
    before is restored afterwards, for a caller that goes on in the same process."""
    log = logging.getLogger("appliance")
    before = log.level
    log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        log.setLevel(before)


def cmd_bench_accuracy(args: argparse.Namespace) -> int:
    import time

    from appliance.bench.accuracy import print_progress, run_suite, table
    from appliance.cli.sim import overrides
    from appliance.sim import SCENARIOS, STANDARD_SUITE
    from appliance.sim.simulator import check_overrides

    names = args.scenario or list(STANDARD_SUITE)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        raise CliError(f"unknown scenario(s) {', '.join(unknown)}; see `appliance sim list`")
    changed = overrides(args.set)
    for name in names:
        try:
            check_overrides(name, changed)
        except ValueError as e:
            raise CliError(f"--set: {e}") from None
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    start = time.perf_counter()
    with _quiet():
        results = run_suite(names, seeds, args.workers, print_progress if sys.stderr.isatty() else None,
                            args.level, changed)
    print(table(results, {n: SCENARIOS[n].single_shopper for n in names}))
    settings = ", ".join(f"{k}={v!r}" for k, v in changed.items()) or "each scenario's own"
    print(f"conditions: {len(names)} scenarios x seeds {seeds[0]}..{seeds[-1]}, replay from {args.level}, "
          f"settings {settings}, {time.perf_counter() - start:.0f} s on {args.workers} worker(s); "
          "* = single-shopper scenario; "
          "targets: F1 >= 0.98, exact >= 97%, overcharge <= 0.5%, single-shopper 100% exact")
    return 0


def cmd_bench_replay(args: argparse.Namespace) -> int:
    import tempfile
    import time

    from appliance.replay import receipts_document, replay
    from appliance.sim.recording import read_recording
    from appliance.sim.score import score

    with _quiet(), tempfile.TemporaryDirectory(prefix="walkout-day-") as tmp:
        folder = Path(args.recording) if args.recording else None
        if folder is None:
            from appliance.sim.simulator import generate

            print(f"simulating the one-hour day (seed {args.seed}) ...", file=sys.stderr)
            folder = generate("day", args.seed, Path(tmp) / "day")
        size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
        wall0, cpu0 = time.perf_counter(), time.process_time()
        rec = read_recording(folder)
        read_s = time.perf_counter() - wall0
        result = replay(rec, "tracks")
        doc = receipts_document(result)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    hours = (rec.end - rec.start) / 3600
    s = score(doc, rec.truth) if rec.truth else None
    print(f"replay: {hours * 60:.1f} min of shop, {len(rec.gate)} gate events, {len(rec.weights):,} load-cell readings "
          f"({size / 1e6:.0f} MB), {len(rec.tracks or []):,} track points: {wall:.1f} s wall ({read_s:.1f} s reading), "
          f"{cpu:.1f} s CPU; {hours * 3600 / wall:.0f}x real time (target: under 60 s)")
    if s is not None:
        print(f"  receipts: {s.visits} visits, F1 {s.f1:.4f}, exact {s.exact_share:.1%}, "
              f"overcharge {s.overcharge_share:.3%}, review items {s.review_items}")
    return 0
