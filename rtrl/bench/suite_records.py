"""The files of the memory suite's finished runs: a run's result.json (or its record) read and checked, and its
training curve from its metrics, thinned for the record."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rtrl.records.metrics import MetricsError, read_metrics
from rtrl.settings import SettingError, literal

CURVE_POINTS = 400   # rows of the training curve kept in a run's record


RESULT_FIELDS = {"task": str, "core": str, "seed": int, "preset": str, "score_name": str, "score": (int, float),
                 "train_minutes": (int, float)}


def read_result(path: Path) -> dict:
    """A run's result.json (or its record), checked: a table holding ``RESULT_FIELDS`` of their types; a
    SettingError naming the file otherwise."""
    def bad(why: str) -> SettingError:
        return SettingError(literal(f"{path} is not a result of the suite ({why}); accepted: the result.json a "
                                    "run of the suite writes; move it away to run that run again"))
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise bad("not UTF-8 text") from None
    except OSError as error:
        raise bad("a directory" if path.is_dir() else error.strerror or str(error)) from None
    except ValueError as error:
        raise bad("empty" if not path.stat().st_size else f"not valid JSON: {error}") from None
    if not isinstance(result, dict):
        raise bad(f"it holds a {type(result).__name__}, not a table")
    missing = [k for k in RESULT_FIELDS if k not in result]
    if missing:
        raise bad(f"it has no {', '.join(missing)}")
    wrong = [k for k, kind in RESULT_FIELDS.items() if not isinstance(result[k], kind) or isinstance(result[k], bool)]
    if wrong:
        raise bad(", ".join(f"{k}={result[k]!r}" for k in wrong) + " of the wrong type")
    return result


def training_curve(run: str | Path, score: str, points: int = CURVE_POINTS) -> dict[str, list] | None:
    """The run's training curve from its metrics.csv: step, episodes in the statistics window, mean return
    and ``score`` (recent-episode window, sampled actions), thinned to at most ``points`` rows (evenly
    spaced, the last row kept), scores rounded to 5 significant digits; None without metrics. Blank cells
    (nothing measured yet) are None."""
    try:
        columns = read_metrics(run)
    except MetricsError:
        return None
    names = ["step", "episodes", "mean_return"] + ([score] if score != "mean_return" else [])
    rows = len(columns["step"])
    keep = sorted(set(np.linspace(0, rows - 1, min(points, rows)).round().astype(int).tolist()))

    def value(name: str, x: float):
        if not math.isfinite(x):
            return None
        return int(x) if name in ("step", "episodes") else float(f"{x:.5g}")

    return {name: [value(name, columns[name][i]) for i in keep] for name in names if name in columns}
