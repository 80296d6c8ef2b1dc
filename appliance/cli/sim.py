"""Simulator commands: `appliance sim list`, `appliance sim generate`, and `appliance bench sim`."""

from __future__ import annotations

import argparse
import ast
import tempfile
import time
from pathlib import Path
from typing import Any

from appliance.cli import CliError, number, whole

_SHARED_AIFI = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "aifi-benchmark-1" / "plate_data.json"


def register(commands: Any, bench: Any) -> None:
    sim = commands.add_parser("sim", help="the store simulator: scenarios and recordings with truth")
    sub = sim.add_subparsers(dest="sim_command", metavar="ACTION", required=True)
    p = sub.add_parser("list", help="list the scenarios, easiest first")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("generate", help="simulate a scenario and write a recording folder (with truth.json)")
    p.add_argument("--scenario", required=True, help="scenario name (see `appliance sim list`)")
    p.add_argument("--seed", type=whole(0), default=0, help="random seed: each seed is another day of the story")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="override a scenario setting, e.g. --set hand_share=0 --set duration_s=600")
    p.add_argument("--video", action="store_true",
                   help="also film the shop: ceiling cameras in store.toml, video/ and detections.csv (slow)")
    p.add_argument("--cameras", type=whole(1), default=2, help="how many cameras with --video (default 2)")
    p.add_argument("--fps", type=number(0, above=True), default=8.0, help="frames per second with --video (default 8)")
    p.add_argument("out", help="the recording folder to write (an earlier recording there is replaced atomically; "
                   "a folder holding anything else is refused)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("show", help="draw a recording as a PNG: the floor with tracks, plates around each event")
    p.add_argument("recording", help="a recording folder")
    p.add_argument("--out", help="PNG to write (default: beside the folder, RECORDING.png)")
    p.add_argument("--events", type=whole(1), default=8, help="how many moments to zoom in on (default 8)")
    p.set_defaults(func=cmd_show)

    b = bench.add_parser("sim", help="how fast the simulator writes a shop day, and how big it is")
    b.add_argument("--scenario", default="day", help="scenario to generate (default: the one-hour day)")
    b.add_argument("--seed", type=whole(0), default=1)
    b.add_argument("--aifi", default=str(_SHARED_AIFI),
                   help="AiFi plate_data.json to compare plate noise with (real data, measured in the same run)")
    b.set_defaults(func=cmd_bench_sim)


def cmd_list(args: argparse.Namespace) -> int:
    from appliance.sim.scenarios import SCENARIOS, STANDARD_SUITE

    print(f"{'scenario':<20} {'single':<7} {'level':<6} {'suite':<6} description")
    for sc in sorted(SCENARIOS.values(), key=lambda s: s.difficulty):
        print(f"{sc.name:<20} {'yes' if sc.single_shopper else 'no':<7} {sc.difficulty:<6} "
              f"{'yes' if sc.name in STANDARD_SUITE else 'no':<6} {sc.description}")
    return 0


def overrides(items: list[str]) -> dict[str, Any]:
    """`--set NAME=VALUE` options as scenario overrides (values read as Python literals, else text)."""
    out: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise CliError(f"--set expects NAME=VALUE, got {item!r}")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out


def cmd_generate(args: argparse.Namespace) -> int:
    from appliance.sim.recording import check_destination
    from appliance.sim.scenarios import SCENARIOS
    from appliance.sim.simulator import generate

    if args.scenario not in SCENARIOS:
        raise CliError(f"no scenario {args.scenario!r}; known: {', '.join(SCENARIOS)}")
    try:
        check_destination(args.out)  # before minutes of simulating, not after
        dest = generate(args.scenario, args.seed, args.out, cameras=args.cameras if args.video else 0,
                        fps=args.fps, **overrides(args.set))
    except (ValueError, TypeError) as err:
        raise CliError(str(err)) from err
    print(f"wrote {dest} ({args.scenario}, seed {args.seed})")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from appliance.sim.recording import RecordingError, read_recording

    try:
        import matplotlib  # noqa: F401

        from appliance.sim.picture import draw
    except ImportError as err:
        raise CliError("drawing needs matplotlib, which the dev install brings (./install/dev.sh setup)") from err
    folder = Path(args.recording)
    try:
        rec = read_recording(folder)
    except RecordingError as err:
        raise CliError(str(err)) from err
    dest = draw(rec, Path(args.out) if args.out else folder.with_name(folder.name + ".png"), args.events)
    print(f"wrote {dest}")
    return 0


def cmd_bench_sim(args: argparse.Namespace) -> int:
    from appliance.sim.realism import aifi_readings, window_noise
    from appliance.sim.scenarios import SCENARIOS
    from appliance.sim.simulator import simulate, write_recording

    if args.scenario not in SCENARIOS:
        raise CliError(f"no scenario {args.scenario!r}; known: {', '.join(SCENARIOS)}")
    t0 = time.perf_counter()
    out = simulate(args.scenario, args.seed)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        dest = write_recording(out, Path(tmp) / "rec")
        t2 = time.perf_counter()
        sizes = {f.name: f.stat().st_size for f in dest.iterdir()}
    span = out.end - out.start
    n = len(out.t)
    mb = sizes["weights.csv"] / 1e6
    print(f"sim {args.scenario} seed {args.seed}: {span / 60:.1f} min of shop, {len(out.truth['visits'])} visits, "
          f"{len(out.people)} people, {len(out.config_raw['sensors'])} load cells")
    print(f"  readings: {n:,} ({n / span:,.0f}/s of shop time); weights.csv {mb:,.1f} MB "
          f"({mb * 3600 / span:,.0f} MB per shop hour); tracks.csv {sizes['tracks.csv'] / 1e6:.1f} MB")
    print(f"  simulate {t1 - t0:.1f} s, write {t2 - t1:.1f} s: {span / (t2 - t0):,.0f}x real time")
    print(f"  plate noise, std in 1 s windows (median / p90 / max): sim {window_noise(out.t, out.sensor, out.grams)}")
    aifi = Path(args.aifi)
    if aifi.exists():
        real = window_noise(*aifi_readings(aifi))
        print(f"  the same figure on real data, AiFi BENCHMARK-1 (one shopper, 17 s): {real}")
    else:
        print(f"  (no AiFi data at {aifi} to compare with)")
    return 0
