"""The `rtrl` command line: one entry point, one module per command.

Every command module has ``register(subcommands)``, which adds its parser (flags generated from
the library's config dataclass by ``rtrl.cli.flags``) and sets ``func``: called with the parsed
namespace, it returns the exit code. A new command is a new module here and one line below.
"""
from __future__ import annotations

import argparse
import sys

from rtrl.cli import bench, copy_task, evaluate, plot, train

COMMANDS = (train, evaluate, copy_task, bench, plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtrl", description="Exact real-time recurrent learning (RTRL) for recurrent RL agents (R2AC).")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subcommands.required = True
    for command in COMMANDS:
        command.register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)
