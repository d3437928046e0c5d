"""``rtrl copy-task``: train and test one model on the copy task (``rtrl.tasks.copy_task``).

One flag per setting of ``CopyTaskConfig`` (its help, its check), plus ``--no-progress``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys

from rtrl.cli.flags import add_flags, config_from_flags, render_error
from rtrl.settings import SettingError
from rtrl.tasks.copy_task import CopyTaskConfig, check_config, train

DESCRIPTION = ("Copy task: read L' random bits (L' uniform in 1..L), then L' blanks, and output the bits. "
               "Vocabulary: 0, 1, 2=blank, 3=padding. Scored on the output phase only: sequence accuracy "
               "(all bits right) and bit accuracy. Writes metrics.csv, checkpoint.pt (best validation), "
               "learning_curve.png and results.json to --out.")


def register(subcommands) -> None:
    parser = subcommands.add_parser("copy-task", help="the copy-task diagnostic (Irie et al. 2024, Sec. 4.1)",
                                    description=DESCRIPTION)
    add_flags(parser, CopyTaskConfig)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--force", action="store_true",
                        help="replace a finished run of other settings in --out (the same settings run again over it)")
    parser.set_defaults(func=run, _parser=parser)


def default_out(config: CopyTaskConfig) -> str:
    layers = "" if config.num_layers == 1 else f"-{config.num_layers}layers" + (
        f"-{config.multilayer}" if config.learning == "rtrl" else "")
    return f"runs/copy-{config.label}{layers}-L{config.length}-s{config.seed}"


def run(args: argparse.Namespace) -> int:
    out = getattr(args, "out", None)
    if out is not None and not out.strip():
        args._parser.error(f"bad --out={out!r}; accepted: a directory path (not empty)")
    try:
        config = config_from_flags(args, CopyTaskConfig)
        config = check_config(dataclasses.replace(config, out=config.out or default_out(config)))
    except SettingError as error:
        args._parser.error(render_error(error))
    results = train(config, progress=not args.no_progress, force=args.force)
    test = results["test"]
    if getattr(args, "model", None):
        print(f"--model {args.model} is spelled --cell {config.cell} --learning {config.learning} now",
              file=sys.stderr)
    print(f"{config.label} L={config.length}: stopped after {results['sequences']} sequences, "
          f"{results['steps']} steps, {results['train_time_s']:.1f} s ({results['stop_reason']})")
    print(f"best valid sequence acc {100 * results['best_valid']['valid_seq_acc']:.2f}%; "
          f"test sequence acc {100 * test['seq_acc']:.2f}%, bit acc {100 * test['bit_acc']:.2f}%")
    print(f"wrote {config.out}/results.json, metrics.csv, checkpoint.pt, learning_curve.png")
    return 0
