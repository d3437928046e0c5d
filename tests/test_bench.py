"""The benchmark commands: tiny runs print their tables and record them in a markdown file."""
import csv

import pytest

from rtrl.bench import record_section
from rtrl.bench.throughput import steady_rate
from rtrl.cli import main

TINY = ["bench", "cells", "--lengths", "1", "3", "--hidden-sizes", "4", "--input-size", "3", "--batch-size", "2",
        "--repeats", "1"]


def test_bench_cells_prints_and_records_a_table(tmp_path, capsys):
    doc = tmp_path / "BENCH.md"
    doc.write_text("# Benchmarks\n\nintro kept\n")
    assert main(TINY + ["--record", str(doc)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("|   ") and "T |" not in line]
    assert len(rows) == 2 and rows[0].split("|")[1].strip() == "1" and rows[1].split("|")[1].strip() == "3"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        step_ms, segment_ms, bptt_ms = map(float, cells[2:5])
        # the ratios come from unrounded times; the printed times are rounded to 0.1 ms
        assert cells[5].endswith("x") and float(cells[5][:-1]) == pytest.approx(step_ms / segment_ms, rel=0.15, abs=0.1)
        assert float(cells[6]) == pytest.approx(segment_ms / bptt_ms, rel=0.15, abs=0.01)
        assert float(cells[7]) >= 0 and float(cells[8]) >= 0  # peak memory measured in a fresh process
    text = doc.read_text()
    assert "intro kept" in text and "- command: `" in text and "- machine: " in text
    assert main(TINY + ["--no-memory", "--record", str(doc)]) == 0  # a second run replaces its section
    text = doc.read_text()
    assert text.count("<!-- begin rtrl bench cells -->") == 1 and "intro kept" in text


def test_record_section_keeps_other_sections(tmp_path):
    doc = tmp_path / "B.md"
    record_section(doc, "one", "first body", "cmd one")
    record_section(doc, "two", "second body", "cmd two")
    record_section(doc, "one", "replaced body", "cmd one again")
    text = doc.read_text()
    assert "replaced body" in text and "first body" not in text and "second body" in text
    assert text.index("## one") < text.index("## two")


def test_steady_rate_excludes_start_up(tmp_path):
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "wall_time", "sps"])
        writer.writeheader()
        writer.writerows([{"step": 100, "wall_time": 10.0, "sps": 10}, {"step": 300, "wall_time": 12.0, "sps": 100},
                          {"step": 500, "wall_time": 14.0, "sps": 100}])
    rate, median = steady_rate(path)
    assert rate == pytest.approx(100.0) and median == pytest.approx(100.0)
    path.write_text("step,wall_time,sps\n1,1,1\n")
    with pytest.raises(RuntimeError, match="1 rows"):
        steady_rate(path)
