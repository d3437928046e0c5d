"""The one plotter (``plot_panels``) and `rtrl plot` through the command line, on small metrics.csv files."""
from __future__ import annotations

import csv
import struct
from pathlib import Path

import pytest

import numpy as np
from PIL import Image

import rtrl.cli
from rtrl.records.metrics import read_metrics
from rtrl.records.plots import Panel, PlotError, Series, plot_panels, plot_runs, smooth_series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
COLUMNS = ["step", "wall_time", "mean_return", "success_rate", "sps", "total_loss", "env"]


def write_run(run_dir: Path, n_rows: int = 30, offset: float = 0.0) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    with (run_dir / "metrics.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for i in range(n_rows):
            mean_return = "" if i == 3 else f"{offset + i * 0.1:.3f}"  # a blank cell is skipped
            writer.writerow([i * 1000, i * 2.5, mean_return, min(1.0, i / n_rows), 400 + i,
                             1.0 / (i + 1), "memory:delayed_recall"])
    return run_dir


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 100 and height > 100
    assert len(data) > 5000  # axes, ticks, a line: not a blank image


def colour_pixels(path: Path, rgb: tuple[int, int, int]) -> int:
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(image - np.array(rgb)).sum(-1) < 30).sum())


def test_plot_panels_draws_every_series_of_every_panel(tmp_path):
    blue, orange = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)   # matplotlib's first two line colours
    xs = list(range(10))
    two = Panel([Series("a", xs, xs), Series("b", xs, [9 - x for x in xs])], "x", "y", title="two lines")
    one = Panel([Series("a", xs, xs)], "x", "y", log_y=True, ylim=(1, 10))
    path = plot_panels([two, one], tmp_path / "sub" / "fig.png", title="figure")
    assert_png(path)
    assert Image.open(path).size == (1400, 450)                 # two panels side by side
    assert colour_pixels(path, blue) > 200 and colour_pixels(path, orange) > 100
    single = plot_panels([one], tmp_path / "one.png")
    assert colour_pixels(single, orange) == 0 and colour_pixels(single, blue) > 100
    assert not list(tmp_path.glob("**/*.tmp"))


def test_plot_one_run_defaults_to_curve_png(tmp_path, capsys):
    run = write_run(tmp_path / "run_a")
    assert rtrl.cli.main(["plot", str(run)]) == 0
    out = run / "curve.png"
    assert_png(out)
    assert str(out) in capsys.readouterr().out


def test_plot_several_runs_writes_curves_png_in_cwd(tmp_path, monkeypatch, capsys):
    runs = [write_run(tmp_path / name, offset=k) for k, name in enumerate(["rtrl", "tbptt"])]
    monkeypatch.chdir(tmp_path)
    code = rtrl.cli.main(["plot", *map(str, runs), "--metric", "success_rate", "--x", "wall_time",
                          "--smooth", "5"])
    assert code == 0
    assert_png(tmp_path / "curves.png")
    assert "curves.png" in capsys.readouterr().out


def test_plot_explicit_out_creates_parent_dirs(tmp_path):
    run = write_run(tmp_path / "run")
    out = tmp_path / "figs" / "sub" / "loss.png"
    assert rtrl.cli.main(["plot", str(run), "--metric", "total_loss", "--out", str(out)]) == 0
    assert_png(out)


def test_an_out_path_that_cannot_be_a_file_is_refused_by_name(tmp_path, capsys):
    # it was an OSError naming the temporary file ("x.png.tmp: Is a directory") or the blocking file alone, exit 1
    run = write_run(tmp_path / "run")
    (tmp_path / "figs.png").mkdir()
    (tmp_path / "notes").write_text("mine")
    (run / "curve.png").mkdir()
    for argv, bad, reason in [(["--out", str(tmp_path / "figs.png")], tmp_path / "figs.png", "it is a directory"),
                              (["--out", str(tmp_path / "notes" / "x.png")], tmp_path / "notes" / "x.png",
                               f"{tmp_path / 'notes'} is a file, not a directory"),
                              ([], run / "curve.png", "it is a directory")]:
        assert rtrl.cli.main(["plot", str(run), *argv]) == 2
        err = capsys.readouterr().err
        assert f"cannot write the plot to {bad}: {reason}; accepted: a .png file path" in err, err
    assert (tmp_path / "notes").read_text() == "mine"


def test_plot_runs_function_returns_path(tmp_path):
    run = write_run(tmp_path / "run")
    out = plot_runs([run], metric="sps", x="step", out=tmp_path / "sps.png", smooth=3)
    assert out == tmp_path / "sps.png"
    assert_png(out)


def test_unknown_column_lists_available_columns(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert rtrl.cli.main(["plot", str(run), "--metric", "mean_retrun"]) == 2
    err = capsys.readouterr().err
    assert "unknown column 'mean_retrun'" in err
    for name in ["step", "wall_time", "mean_return", "success_rate", "sps", "total_loss"]:
        assert name in err
    assert not (run / "curve.png").exists()


def test_unknown_x_column(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert rtrl.cli.main(["plot", str(run), "--x", "frames"]) == 2
    assert "unknown column 'frames'" in capsys.readouterr().err


def test_missing_metrics_csv_names_the_path(tmp_path, capsys):
    good = write_run(tmp_path / "good")
    empty_dir = tmp_path / "not_a_run"
    empty_dir.mkdir()
    assert rtrl.cli.main(["plot", str(good), str(empty_dir)]) == 2
    assert str(empty_dir / "metrics.csv") in capsys.readouterr().err


def test_header_only_and_empty_files(tmp_path):
    header_only = tmp_path / "header_only"
    header_only.mkdir()
    (header_only / "metrics.csv").write_text(",".join(COLUMNS) + "\n")
    with pytest.raises(PlotError, match="no rows"):
        plot_runs([header_only])
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "metrics.csv").write_text("")
    with pytest.raises(PlotError, match="empty"):
        plot_runs([empty])


def test_bad_smoothing_window(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    assert rtrl.cli.main(["plot", str(run), "--smooth", "0"]) == 2
    assert "bad --smooth=0; accepted: a positive integer" in capsys.readouterr().err
    with pytest.raises(PlotError, match="at least 1"):
        plot_runs([run], smooth=0)


def test_read_metrics_keeps_numeric_columns_only(tmp_path):
    columns = read_metrics(write_run(tmp_path / "run", n_rows=5))
    assert list(columns) == COLUMNS[:-1]  # the text column 'env' is left out
    assert columns["step"] == [0.0, 1000.0, 2000.0, 3000.0, 4000.0]
    assert columns["mean_return"][3] != columns["mean_return"][3]  # blank -> NaN


def test_smooth_series_is_a_trailing_mean():
    assert smooth_series([1.0, 2.0, 3.0], 1) == [1.0, 2.0, 3.0]
    assert smooth_series([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth_series([2.0, 4.0, 6.0, 8.0], 3) == [2.0, 3.0, 4.0, 6.0]
