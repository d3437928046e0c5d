"""`rtrl bench cells` refuses bad input before it measures anything: one clear message (exit 2) naming the
flag, the value and what is accepted."""
from __future__ import annotations

import pytest
import torch

from conftest import run_cli
from rtrl.bench import cells
from rtrl.bench.cells import CellsBenchConfig
from rtrl.settings import SettingError, validate

TINY = ["bench", "cells", "--hidden-sizes", "4", "--input-size", "3", "--batch-size", "2", "--repeats", "1",
        "--copy-mb", "8", "--no-memory"]


def _under_a_file(tmp_path) -> list[str]:
    blocking = tmp_path / "f"
    blocking.write_text("x")
    return ["--lengths", "1", "--record", str(blocking / "r.md")]


CASES = [
    ("lengths-zero", lambda t: ["--lengths", "0"], ["bad --lengths=[0]", "accepted: one or more positive integers"]),
    ("lengths-negative", lambda t: ["--lengths", "-5"], ["bad --lengths=[-5]", "positive integers"]),
    ("lengths-one-bad-of-two", lambda t: ["--lengths", "3", "0"], ["bad --lengths=[3, 0]"]),
    ("device-unknown", lambda t: ["--lengths", "1", "--device", "foo"],
     ["bad --device='foo'", "accepted: cpu, cuda, cuda:N, mps", "this machine has: cpu"]),
    ("record-under-a-file", _under_a_file, ["r.md cannot be written", "is a file, not a directory"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_with_one_clear_message(tmp_path, capsys, case):
    name, extra, pieces = case
    code, text = run_cli(capsys, TINY + extra(tmp_path))
    assert code == 2, text
    assert all(piece in text for piece in pieces), text
    assert "| T |" not in text and "|   T |" not in text   # refused before the table started


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: --device cuda is accepted here")
def test_an_absent_cuda_device_is_refused(capsys):
    code, text = run_cli(capsys, TINY + ["--lengths", "1", "--device", "cuda"])
    assert code == 2 and "bad --device='cuda': CUDA is not available here" in text, text


def test_the_record_path_is_checked_before_any_measurement(tmp_path, monkeypatch):
    """``cells.run`` itself (the library entry, not only the command line) refuses the record path first."""
    measured = []
    monkeypatch.setattr(cells, "measure", lambda args: measured.append(args) or [])
    blocking = tmp_path / "f"
    blocking.write_text("x")
    with pytest.raises(ValueError, match="is a file, not a directory"):
        cells.run(CellsBenchConfig(lengths=[1], record=str(blocking / "r.md")))
    assert not measured


@pytest.mark.parametrize("lengths", [[], [0], [-5], [1.5], [True], [70000]])
def test_the_lengths_check_refuses(lengths):
    with pytest.raises(SettingError, match="lengths"):
        validate(CellsBenchConfig(lengths=lengths))


def test_good_settings_pass():
    validate(CellsBenchConfig(lengths=[1, 10], device="cpu"))
