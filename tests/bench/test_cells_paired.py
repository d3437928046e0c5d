"""`rtrl bench cells --cells`: the paired cells' rows beside the eLSTM's, at the eLSTM's parameter count."""
import pytest
import torch

from rtrl.bench import cells_memory
from rtrl.bench.cells import equal_parameter_size, parameter_count
from rtrl.cli import main

TINY = ["bench", "cells", "--lengths", "1", "--hidden-sizes", "4", "--input-size", "3", "--batch-size", "2",
        "--repeats", "1", "--copy-mb", "8"]


@pytest.mark.parametrize("cell", ["rtu", "clru"])
def test_the_paired_cells_size_has_the_elstms_parameter_count(cell):
    assert equal_parameter_size("elstm", 128, 257) == 128
    for N, D in ((32, 257), (128, 257), (512, 257), (4, 3)):
        size = equal_parameter_size(cell, N, D)
        per_unit = parameter_count(cell, 2, D) - parameter_count(cell, 1, D)
        assert abs(parameter_count(cell, size, D) - parameter_count("elstm", N, D)) <= per_unit / 2
    assert [equal_parameter_size(cell, N, 257) for N in (32, 128, 512)] == {
        "rtu": [50, 224, 1278], "clru": [50, 224, 1276]}[cell]   # as the bench's docstring states


def test_bench_cells_prints_a_table_per_cell_with_its_size(tmp_path, capsys):
    doc = tmp_path / "BENCH.md"
    assert main(TINY + ["--cells", "elstm", "rtu", "clru", "--no-memory", "--record", str(doc)]) == 0
    out = capsys.readouterr().out
    for cell in ("rtu", "clru"):
        assert f"{cell}, at the eLSTM's parameter count: N = {equal_parameter_size(cell, 4, 3)} (eLSTM 4: " in out
    tables = out.split("eLSTM:")[1].split(", at the eLSTM's parameter count")
    sizes = [[int(line.split("|")[2]) for line in table.splitlines() if line.startswith("|   1 |")] for table in tables]
    assert sizes == [[4], [equal_parameter_size("rtu", 4, 3)], [equal_parameter_size("clru", 4, 3)]]
    for line in (line for line in out.splitlines() if line.startswith("|   1 |")):
        assert min(float(c) for c in line.strip("|").split("|")[7:11]) > 0   # every method timed
    assert out.count("T=1, N=") == 1   # issue 24's verdicts are the eLSTM's
    assert doc.read_text().count("| (a) step ms |") == 3 and "rtu, at the eLSTM's parameter count" in doc.read_text()
    assert "<!-- begin rtrl bench cells: elstm, rtu, clru -->" in doc.read_text()
    assert main(TINY + ["--no-memory", "--record", str(doc)]) == 0   # the eLSTM's own section, beside it
    text = doc.read_text()
    assert "<!-- begin rtrl bench cells -->" in text and "<!-- begin rtrl bench cells: elstm, rtu, clru -->" in text


def test_the_paired_cells_peak_memory_is_measured(capsys):
    assert cells_memory.main(["in_place", "1", "4", "3", "2", "float32", "cpu", "1", "rtu"]) == 0
    assert float(capsys.readouterr().out) >= 0
    assert cells_memory.peak_memory_in_fresh_process("segment", 1, 4, 3, 2, "float32", "cpu", 1, "clru") >= 0
    cell, x, state, upstream = cells_memory.make_case("bptt", 1, 4, 3, 2, torch.float32, "cpu", cell="clru")
    assert upstream.shape == (1, 2, 8)   # a paired cell's output: 2N
    with pytest.raises(ValueError, match="unknown cell 'gru'; accepted: elstm, rtu, clru"):
        cells_memory.make_case("segment", 1, 4, 3, 2, torch.float32, "cpu", cell="gru")


def test_a_bad_cell_names_the_accepted_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(TINY + ["--cells", "elstm", "gru"])
    assert exit_info.value.code == 2
    assert "gru" in (err := capsys.readouterr().err) and "one or more of elstm, rtu, clru" in err


@pytest.mark.parametrize("sizes", [["0"], ["4", "-3"]])
def test_a_bad_hidden_size_is_refused_by_its_flag_before_anything_is_timed(sizes, capsys):
    # it was refused at its own row, after the machine's probes and the rows before it, as "hidden_size must be ..."
    with pytest.raises(SystemExit) as exit_info:
        main(TINY[:4] + ["--hidden-sizes", *sizes] + TINY[6:] + ["--no-memory"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert "--hidden-sizes" in captured.err and "one or more positive integers" in captured.err
    assert "|" not in captured.out   # no table was started
