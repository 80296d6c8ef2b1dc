"""The `appliance` command line: one subcommand per job, registered by the module that owns it."""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import sys
from collections.abc import Callable, Sequence

# Each module has register(commands, bench) adding its subcommands and its `appliance bench` targets.
COMMAND_MODULES = (
    "appliance.cli.core",
    "appliance.cli.sim",
    "appliance.cli.payments",
    "appliance.cli.vault",
    "appliance.cli.vision",
    "appliance.cli.app",
)


class CliError(Exception):
    """A failure to report to the user in one line, with exit status 1 (or `status`)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def whole(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse type for a whole number in [minimum, maximum], with the bound named when broken."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"at least {minimum}" if maximum is None else f"between {minimum} and {maximum}"
            raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
        return value

    return parse


def number(minimum: float, above: bool = False) -> Callable[[str], float]:
    """An argparse type for a finite number at least `minimum` (greater than it, when `above`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (above and value == minimum):
            raise argparse.ArgumentTypeError(
                f"must be {'greater than' if above else 'at least'} {minimum:g}, got {text}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="appliance", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug detail")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench_parser = commands.add_parser("bench", help="measure speed, accuracy and robustness; prints figures")
    bench = bench_parser.add_subparsers(dest="bench", metavar="TARGET", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands, bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except CliError as err:
        print(f"appliance {args.command}: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
