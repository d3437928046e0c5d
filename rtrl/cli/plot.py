"""`rtrl plot DIR...`: a column of metrics.csv against another, one line per run directory."""
from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass

from rtrl.cli.flags import add_flags, given
from rtrl.records.plots import plot_runs
from rtrl.settings import POSITIVE_INT, Check, from_dict, setting, validate

# the plotter writes PNG bytes: a path of another image type would hold PNG under a misleading name
PNG_PATH = Check("a path ending in .png, or none", lambda v: v is None or (v.lower().endswith(".png") and v[:-4].strip()))


@dataclass
class PlotConfig:
    metric: str = setting("mean_return", "column to plot")
    x: str = setting("step", "column for the x axis")
    out: str | None = setting(None, "output PNG (none: DIR/curve.png for one run, ./curves.png for several)",
                              flag={"metavar": "PNG"}, check=PNG_PATH)
    smooth: int = setting(1, "trailing moving average over N log points (1: no smoothing)", check=POSITIVE_INT,
                          flag={"metavar": "N"})


def register(subcommands) -> None:
    parser = subcommands.add_parser(
        "plot", help="plot learning curves from run directories",
        description="Plot a column of DIR/metrics.csv against another, one line per run directory.")
    parser.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories holding metrics.csv")
    add_flags(parser, PlotConfig)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = validate(from_dict(PlotConfig, given(args, PlotConfig)))   # errors (PlotError too): rtrl.cli.main
    out = plot_runs(args.run_dirs, **asdict(cfg))
    print(f"wrote {out}")
    return 0
