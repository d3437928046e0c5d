"""One plotter for every figure the project draws: panels of labelled lines, written as a PNG.

``plot_panels`` draws; ``plot_runs`` is ``rtrl plot``: a column of several runs' metrics.csv against
another. The object-oriented matplotlib API with an explicit Agg canvas is used: no display and no
pyplot global state.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rtrl.records.files import why_no_file_there, write_atomically
from rtrl.records.metrics import MetricsError, read_metrics
from rtrl.settings import POSITIVE_INT, Check, setting

__all__ = ["PlotConfig", "Series", "Panel", "plot_panels", "plot_runs", "smooth_series", "PlotError"]


# the plotter writes PNG bytes: a path of another image type would hold PNG under a misleading name
PNG_PATH = Check("a path ending in .png, or none", lambda v: v is None or (v.lower().endswith(".png") and v[:-4].strip()))


@dataclass
class PlotConfig:
    """What ``plot_runs`` draws (`rtrl plot`'s flags)."""

    metric: str = setting("mean_return", "column to plot")
    x: str = setting("step", "column for the x axis")
    out: str | None = setting(None, "output PNG (none: DIR/curve.png for one run, ./curves.png for several)",
                              flag={"metavar": "PNG"}, check=PNG_PATH)
    smooth: int = setting(1, "trailing moving average over N log points (1: no smoothing)", check=POSITIVE_INT,
                          flag={"metavar": "N"})


class PlotError(MetricsError):
    """A run directory, column or option that cannot be plotted; the message says which and why."""


@dataclass
class Series:
    label: str
    x: list[float]
    y: list[float]
    marker: str | None = None
    color: str | None = None       # a matplotlib colour (None: the next of the cycle)
    linestyle: str = "-"


@dataclass
class Panel:
    series: list[Series]
    xlabel: str
    ylabel: str
    title: str | None = None
    ylim: tuple[float, float] | None = None
    log_y: bool = False
    legend: bool = True
    legend_loc: str = "best"


def plot_panels(panels: list[Panel], path: str | Path, title: str | None = None,
                panel_size: tuple[float, float] = (7.0, 4.5)) -> Path:
    """Draw ``panels`` side by side into the PNG ``path`` (parents created; written atomically)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(panel_size[0] * len(panels), panel_size[1]), dpi=100)
    FigureCanvasAgg(fig)
    for i, panel in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        for s in panel.series:
            ax.plot(s.x, s.y, label=s.label, linewidth=1.5, marker=s.marker, color=s.color, linestyle=s.linestyle)
        ax.set_xlabel(panel.xlabel)
        ax.set_ylabel(panel.ylabel)
        if panel.title:
            ax.set_title(panel.title)
        if panel.ylim:
            ax.set_ylim(*panel.ylim)
        if panel.log_y:
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
        if panel.legend and panel.series:
            ax.legend(loc=panel.legend_loc)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    write_atomically(path, lambda tmp: fig.savefig(tmp, format="png"))
    return path


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
        raise PlotError(f"unknown column '{name}' in {run_dir / 'metrics.csv'}; available numeric columns: {available}")
    return columns[name]


def _labels(run_dirs: list[Path]) -> list[str]:
    names = [d.resolve().name for d in run_dirs]
    # the paths as given when two runs share a directory name
    return names if len(set(names)) == len(names) else [str(d) for d in run_dirs]


def plot_runs(run_dirs: list[str | Path], metric: str = "mean_return", x: str = "step",
              out: str | Path | None = None, smooth: int = 1) -> Path:
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
    for label, run_dir in zip(_labels(run_dirs), run_dirs):  # read all first: a bad run fails before drawing
        try:
            columns = read_metrics(run_dir)
        except MetricsError as error:
            raise PlotError(str(error)) from None
        points = [(a, b) for a, b in zip(_column(columns, x, run_dir), _column(columns, metric, run_dir))
                  if not (math.isnan(a) or math.isnan(b))]
        series.append(Series(label, [a for a, _ in points], smooth_series([b for _, b in points], smooth)))
    if out is None:
        out = run_dirs[0] / "curve.png" if len(run_dirs) == 1 else Path("curves.png")
    why = why_no_file_there(out)
    if why is not None:   # else an OSError naming the temporary file, exit 1
        raise PlotError(f"cannot write the plot to {out}: {why}; accepted: a .png file path (its directories "
                        "are made)")
    panel = Panel(series, xlabel=x, ylabel=metric if smooth == 1 else f"{metric} (moving average of {smooth})",
                  title=series[0].label if len(series) == 1 else None, legend=len(series) > 1)
    return plot_panels([panel], out)
