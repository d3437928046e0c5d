"""`rtrl train`: one flag per ``TrainConfig`` setting, plus the run directory and how to treat it."""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from rtrl.cli.errors import interrupted_exit_code
from rtrl.cli.flags import add_flags, given
from rtrl.models import CORE_ALIASES
from rtrl.records.plots import plot_runs
from rtrl.runtime.config import PRESETS, TrainConfig, resolve_config
from rtrl.runtime.train import train


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "train", help="train an agent: R2AC (IMPALA actor-learner with an RTRL core), a baseline, or the streaming "
                     "learner (--learner stream)",
        description="Train R2AC (--learner impala, the default) or a streaming agent that updates at every step "
                    "(--learner stream). Settings resolve as: defaults < --preset < --config FILE < flags. "
                    "Running again with the same --out resumes the run from its checkpoint.")
    add_flags(parser, TrainConfig, default_note="; a preset may change it")
    parser.add_argument("--core", choices=list(CORE_ALIASES), default=None,
                        help="the old name of a --cell and --learning pair: " + ", ".join(
                            f"{core} = --cell {cell} --learning {learning}"
                            for core, (cell, learning) in CORE_ALIASES.items()))
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="start from a named set of settings (flags still override)")
    parser.add_argument("--config", default=None, metavar="FILE",
                        help="TOML, YAML or JSON file of settings (keys as the flags, '-' or '_'); flags override it")
    parser.add_argument("--out", required=True, help="run directory (created; resumed if it holds a run)")
    parser.add_argument("--force", action="store_true",
                        help="resume a run directory even though its config differs (the new settings win, but for a "
                             "--phase under which the saved weights would mean others; a streaming run's larger "
                             "--total-steps needs no --force)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plot", action="store_true", help="do not draw curve.png at the end")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Errors end up in ``rtrl.cli.main``, which prints them as one message with their exit code."""
    overrides = given(args, TrainConfig)
    if args.core:
        cell, learning = CORE_ALIASES[args.core]
        print(f"--core {args.core} is spelled --cell {cell} --learning {learning} now", file=sys.stderr)
        overrides["core"] = args.core
    cfg = resolve_config(args.preset, args.config, overrides)
    summary = train(cfg, args.out, force=args.force, progress=not args.no_progress)
    if summary["episodes_in_window"]:
        line = f"steps {summary['steps']}: mean return {summary['mean_return']:.3f}"
        if not math.isnan(summary["success_rate"]):
            line += f", success rate {summary['success_rate']:.3f}"
        print(line + f" over the last {summary['episodes_in_window']} training episodes")
    else:   # no return to average yet (a short run, or episodes longer than it)
        print(f"steps {summary['steps']}: no training episode has ended yet")
    if summary["nonfinite_updates"]:
        print(f"{summary['nonfinite_updates']} updates were skipped for a non-finite loss or gradient "
              "(nonfinite_updates in metrics.csv)")
    if not summary["finished"]:
        print(f"interrupted at {summary['steps']} steps; checkpoint written; resume with the same command "
              f"(--out {args.out})")
    if summary["steps"] > 0 and not args.no_plot:
        metric = "success_rate" if not math.isnan(summary["success_rate"]) else "mean_return"
        try:
            print(f"learning curve: {plot_runs([args.out], metric=metric, x='step', out=Path(args.out) / 'curve.png')}")
        except Exception as error:  # a plot must never cost the run
            print(f"could not draw the learning curve: {error}")
    return 0 if summary["finished"] else interrupted_exit_code()
