"""The `rtrl` command line: one entry point, one module per command.

Every command module has ``register(subcommands)``, which adds its parser (flags generated from
the library's config dataclass by ``rtrl.cli.flags``) and sets ``func``: called with the parsed
namespace, it returns the exit code. A new command is a new module here and one line below.
Errors end a command with one message and a documented exit code (``rtrl.cli.errors``).
"""
from __future__ import annotations

from rtrl.cli import early

if early.is_command_line():   # before the heavy imports below: a Ctrl-C while they run stops the command
    early.install()

import argparse  # noqa: E402
import sys  # noqa: E402

import rtrl  # noqa: E402
from rtrl.cli import bench, copy_task, evaluate, plot, train  # noqa: E402
from rtrl.cli.errors import interrupted_exit_code, log_to_stderr, report, signals_as_interrupt  # noqa: E402

COMMANDS = (train, evaluate, copy_task, bench, plot)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtrl", description="Exact real-time recurrent learning (RTRL) for recurrent RL agents (R2AC).",
        epilog="exit codes: 0 done, 1 the run failed, 2 bad input, 130 interrupted (SIGINT), 143 terminated "
               "(SIGTERM)")
    parser.add_argument("--version", action="version", version=f"rtrl {rtrl.__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND")
    subcommands.required = True
    for command in COMMANDS:
        command.register(subcommands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)   # a bad flag: argparse's usage message and exit 2
    command = f"rtrl {args.command}"
    with signals_as_interrupt(), log_to_stderr(command):
        try:
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            print(f"{command}: interrupted", file=sys.stderr)
            return interrupted_exit_code()
        except Exception as error:
            return report(command, error, trace_dir=getattr(args, "out", None))
