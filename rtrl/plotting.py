"""`rtrl plot`: learning curves from run directories.

Each run directory holds ``metrics.csv`` (a header, then one row per log point; columns such as
``step``, ``wall_time``, ``mean_return``, ``success_rate``, ``sps``, ``total_loss``). Any numeric column can
be plotted against any other; several runs go on one set of axes, labelled by directory name.
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

__all__ = ["PlotError", "read_metrics", "smooth_series", "plot_runs", "add_parser"]

METRICS_FILE = "metrics.csv"


class PlotError(ValueError):
    """A run directory or column that cannot be plotted; the message says which and why."""


def _to_float(cell: str) -> float:
    return math.nan if cell.strip() == "" else float(cell)


def read_metrics(run_dir: str | Path) -> dict[str, list[float]]:
    """The numeric columns of ``run_dir/metrics.csv`` as {column: values}; blank cells become NaN.

    Columns holding any non-numeric text are left out (they cannot be plotted).
    """
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise PlotError(f"no metrics file at {path} (is {run_dir} a run directory?)")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise PlotError(f"{path} is empty; expected a header row of column names")
        rows = list(reader)
    if not rows:
        raise PlotError(f"{path} has a header but no rows yet")
    columns: dict[str, list[float]] = {}
    for name in reader.fieldnames:
        try:
            columns[name] = [_to_float(row[name] or "") for row in rows]
        except ValueError:
            continue  # a text column, e.g. an env id
    return columns


def smooth_series(values: list[float], window: int) -> list[float]:
    """Trailing moving average over the last ``window`` points (fewer at the start); window 1 = as is."""
    if window < 1:
        raise PlotError(f"smoothing window must be at least 1; got {window}")
    smoothed, running = [], 0.0
    for i, v in enumerate(values):
        running += v
        if i >= window:
            running -= values[i - window]
        smoothed.append(running / min(i + 1, window))
    return smoothed


def _column(columns: dict[str, list[float]], name: str, run_dir: Path) -> list[float]:
    if name not in columns:
        available = ", ".join(columns) or "(none)"
        raise PlotError(
            f"unknown column '{name}' in {run_dir / METRICS_FILE}; available numeric columns: {available}"
        )
    return columns[name]


def _labels(run_dirs: list[Path]) -> list[str]:
    names = [d.resolve().name for d in run_dirs]
    # fall back to the paths as given when two runs share a directory name
    return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]


def plot_runs(
    run_dirs: list[str | Path],
    metric: str = "mean_return",
    x: str = "step",
    out: str | Path | None = None,
    smooth: int = 1,
) -> Path:
    """Plot ``metric`` against ``x`` for every run into one PNG and return its path.

    ``out`` defaults to ``DIR/curve.png`` for a single run and ``./curves.png`` for several. ``smooth`` is
    the trailing moving-average window in log points. Rows where either value is blank are skipped.
    Raises PlotError naming the bad directory or column.
    """
    run_dirs = [Path(d) for d in run_dirs]
    if not run_dirs:
        raise PlotError("no run directories given")
    if smooth < 1:
        raise PlotError(f"smoothing window must be at least 1; got {smooth}")
    series = []
    for run_dir in run_dirs:  # read everything first, so a bad run fails before any drawing
        columns = read_metrics(run_dir)
        xs, ys = _column(columns, x, run_dir), _column(columns, metric, run_dir)
        points = [(a, b) for a, b in zip(xs, ys) if not (math.isnan(a) or math.isnan(b))]
        series.append(([a for a, _ in points], smooth_series([b for _, b in points], smooth)))

    if out is None:
        out = run_dirs[0] / "curve.png" if len(run_dirs) == 1 else Path("curves.png")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)

    # The object-oriented API with an explicit Agg canvas: no display, no pyplot global state.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for label, (xs, ys) in zip(_labels(run_dirs), series):
        ax.plot(xs, ys, label=label, linewidth=1.5)
    ax.set_xlabel(x)
    ax.set_ylabel(metric if smooth == 1 else f"{metric} (moving average of {smooth})")
    ax.grid(True, alpha=0.3)
    if len(run_dirs) > 1:
        ax.legend()
    else:
        ax.set_title(_labels(run_dirs)[0])
    fig.tight_layout()
    fig.savefig(out, format="png")
    return out


def _run(args: argparse.Namespace) -> int:
    try:
        out = plot_runs(args.run_dirs, metric=args.metric, x=args.x, out=args.out, smooth=args.smooth)
    except PlotError as error:
        print(f"rtrl plot: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {out}")
    return 0


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot",
        help="plot learning curves from run directories",
        description="Plot a column of DIR/metrics.csv against another, one line per run directory.",
    )
    parser.add_argument("run_dirs", nargs="+", metavar="DIR", help="run directories holding metrics.csv")
    parser.add_argument("--metric", default="mean_return", help="column to plot (default: mean_return)")
    parser.add_argument("--x", default="step", help="column for the x axis (default: step)")
    parser.add_argument(
        "--out", default=None, metavar="PNG",
        help="output file (default: DIR/curve.png for one run, ./curves.png for several)",
    )
    parser.add_argument(
        "--smooth", type=int, default=1, metavar="N",
        help="trailing moving average over N log points (default: 1, no smoothing)",
    )
    parser.set_defaults(func=_run)
