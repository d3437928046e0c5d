"""`rtrl plot` through the command line, on small metrics.csv files written here."""
from __future__ import annotations

import csv
import struct
from pathlib import Path

import pytest

import rtrl.cli
from rtrl.plotting import PlotError, plot_runs, read_metrics, smooth_series

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
REGISTERED = dict(rtrl.cli.SUBCOMMANDS)  # before the fixture below narrows it
COLUMNS = ["step", "wall_time", "mean_return", "success_rate", "sps", "total_loss", "env"]


@pytest.fixture(autouse=True)
def only_plot_subcommand(monkeypatch):
    # Build the real CLI with just this sub-command, so these tests do not depend on the
    # other sub-commands' modules (which import heavier things and are developed separately).
    monkeypatch.setattr(rtrl.cli, "SUBCOMMANDS", {"plot": "rtrl.plotting"})


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


def test_plot_is_registered_in_the_cli():
    assert REGISTERED["plot"] == "rtrl.plotting"


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
    assert "at least 1" in capsys.readouterr().err


def test_read_metrics_keeps_numeric_columns_only(tmp_path):
    columns = read_metrics(write_run(tmp_path / "run", n_rows=5))
    assert list(columns) == COLUMNS[:-1]  # the text column 'env' is left out
    assert columns["step"] == [0.0, 1000.0, 2000.0, 3000.0, 4000.0]
    assert columns["mean_return"][3] != columns["mean_return"][3]  # blank -> NaN


def test_smooth_series_is_a_trailing_mean():
    assert smooth_series([1.0, 2.0, 3.0], 1) == [1.0, 2.0, 3.0]
    assert smooth_series([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert smooth_series([2.0, 4.0, 6.0, 8.0], 3) == [2.0, 3.0, 4.0, 6.0]
