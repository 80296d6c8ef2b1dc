"""Core-loop commands: check-config, replay, score, sim, import, demo and their benchmarks."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from appliance.config import ConfigError, StoreConfig, describe, load_config


def register(commands: Any, bench: Any) -> None:
    p = commands.add_parser("check-config", help="validate a store.toml and print every problem with its fix")
    p.add_argument("file", help="the store.toml to check")
    p.add_argument("--explain", action="store_true", help="also list every setting with its default and help")
    p.set_defaults(func=cmd_check_config)


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
