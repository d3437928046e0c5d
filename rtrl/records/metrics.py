"""metrics.csv: one writer and one reader for every run (training, the copy task, benchmarks).

A metrics file is a CSV with a header of column names and one row per log point; a blank cell is
a value not measured at that point. The writer appends (and flushes) a row at a time, so a run that
is killed keeps every row written before; it can mirror the numbers to TensorBoard and to Weights & Biases
(``rtrl.records.wandb_log``).
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from rtrl.records.files import read_user_text, write_text_atomically

__all__ = ["MetricsLog", "MetricsError", "read_metrics", "keep_rows_up_to", "complete_rows"]


class MetricsError(ValueError):
    """A metrics file or column that cannot be read; the message says which and why."""


class MetricsLog:
    """Appends rows of ``columns`` to ``path``; ``fresh=True`` starts the file anew.

    ``tensorboard``: a directory for TensorBoard event files of every numeric column, each against
    the row's ``step_column``. ``wandb``: a :class:`rtrl.records.wandb_log.WandbWriter` (anything with
    ``write(row)``, ``flush()`` and ``close()``) that gets every row too; the log closes it.
    """

    def __init__(self, path: str | Path, columns: tuple[str, ...], fresh: bool = False,
                 tensorboard: str | Path | None = None, step_column: str = "step", purge_step: int | None = None,
                 wandb=None):
        """``purge_step``: a resumed run's first new step; TensorBoard hides the events an earlier session
        wrote at that step or later (its rows in this file are trimmed by :func:`keep_rows_up_to`)."""
        self.path, self.columns, self.step_column = Path(path), tuple(columns), step_column
        new = fresh or not self.path.exists() or self.path.stat().st_size == 0
        self.file = self.path.open("w" if new else "a", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.columns)
        if new:
            self._write(self.writer.writeheader)
        self.tensorboard, self.wandb = None, wandb
        if tensorboard is not None:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(tensorboard), purge_step=purge_step)

    def _write(self, write, *args) -> None:
        try:
            write(*args)
            self.file.flush()
        except OSError as error:  # name the file: a full disk's error alone does not say which
            raise OSError(error.errno, error.strerror, str(self.path)) from error

    def write(self, row: dict) -> None:
        self._write(self.writer.writerow, {k: row.get(k, "") for k in self.columns})
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != self.step_column and isinstance(value, (int, float)) and math.isfinite(value):
                    self.tensorboard.add_scalar(key, value, row[self.step_column])
        if self.wandb is not None:
            self.wandb.write(row)

    def flush(self) -> None:
        """Everything written so far on the disk, TensorBoard's buffered events included."""
        self.file.flush()
        if self.tensorboard is not None:
            self.tensorboard.flush()
        if self.wandb is not None:
            self.wandb.flush()

    def close(self) -> None:
        self.file.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb is not None:
            self.wandb.close()

    def __enter__(self) -> "MetricsLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def keep_rows_up_to(path: str | Path, columns: tuple[str, ...], step: float, step_column: str = "step") -> None:
    """Drop the rows written after ``step`` (a run resumed from an earlier checkpoint writes them again),
    and rows cut short by a crash: a last line without its newline, a row with missing cells. The kept
    rows get the header ``columns`` (columns added since the file was written stay blank in old rows).
    The file is replaced atomically."""
    path = Path(path)
    if not path.exists():
        return
    complete = [r for r in complete_rows(path) if None not in r and None not in r.values()]
    kept = [r for r in complete if _number(r.get(step_column)) <= step]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(kept)
    write_text_atomically(path, buffer.getvalue())


def _read_text(path: Path) -> str:
    """The text of a metrics file; a :class:`MetricsError` naming it if it cannot be read as text."""
    return read_user_text(path, "a metrics file", "a CSV file of numbers", MetricsError, newline="")


def _rows(path: Path, lines: list[str]) -> tuple[list[str] | None, list[dict]]:
    try:
        reader = csv.DictReader(lines)
        return reader.fieldnames, list(reader)
    except csv.Error as error:   # a field past csv's limit (128 kB), a NUL byte...
        raise MetricsError(f"{path} is not a metrics file the runs write ({error}); accepted: a CSV file of "
                           "numbers") from None


def complete_rows(path: str | Path) -> list[dict]:
    """The rows of a metrics file, without a last row the writer did not finish (a :class:`MetricsError`
    naming the file if it cannot be read: not text, a directory, not CSV)."""
    path = Path(path)
    text = _read_text(path)
    if text and not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]     # a row the writer did not finish
    return _rows(path, text.splitlines(keepends=True))[1]


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.inf   # not a step: the row is dropped


def read_metrics(run_dir: str | Path, file_name: str = "metrics.csv") -> dict[str, list[float]]:
    """The numeric columns of ``run_dir/metrics.csv`` as {column: values}; blank cells become NaN.

    Columns holding any non-numeric text are left out (they cannot be plotted).
    """
    path = Path(run_dir) / file_name
    if not path.exists():
        raise MetricsError(f"no metrics file at {path} (is {run_dir} a run directory?)")
    fieldnames, rows = _rows(path, _read_text(path).splitlines(keepends=True))
    if not fieldnames:
        raise MetricsError(f"{path} is empty; expected a header row of column names")
    if not rows:
        raise MetricsError(f"{path} has a header but no rows yet")
    columns: dict[str, list[float]] = {}
    for name in fieldnames:
        try:
            columns[name] = [math.nan if not (row[name] or "").strip() else float(row[name]) for row in rows]
        except ValueError:
            continue  # a text column, e.g. an env id
    return columns
