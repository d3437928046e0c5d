"""`rtrl plot DIR...`: a column of metrics.csv against another, one line per run directory."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from rtrl.cli.flags import add_flags, config_from_flags
from rtrl.records.plots import PlotConfig, plot_runs


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "plot", help="plot learning curves from run directories",
        description="Plot a column of DIR/metrics.csv against another, one line per run directory.")
    parser.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories holding metrics.csv")
    add_flags(parser, PlotConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_flags(args, PlotConfig)   # errors (PlotError too): rtrl.cli.main
    out = plot_runs(args.run_dirs, **asdict(cfg))
    print(f"wrote {out}")
    return 0
