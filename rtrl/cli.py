"""The `rtrl` command line: one entry point, one sub-command per module.

Each sub-command lives in the module that owns it and exposes ``add_parser(subparsers)``, which
registers its arguments and sets ``func`` (called with the parsed namespace, returns an exit code).
"""
from __future__ import annotations

import argparse
import importlib
import sys

# sub-command name -> module that defines add_parser(subparsers)
SUBCOMMANDS = {
    "train": "rtrl.runtime.train",
    "eval": "rtrl.runtime.evaluate",
    "bench": "rtrl.bench",
    "copy-task": "rtrl.tasks.copy_task",
    "plot": "rtrl.plotting",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtrl",
        description="Exact real-time recurrent learning (RTRL) for recurrent RL agents (R2AC).",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module_name in SUBCOMMANDS.values():
        importlib.import_module(module_name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
