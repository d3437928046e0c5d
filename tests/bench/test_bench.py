"""The benchmark commands: tiny runs print their tables and record them in a markdown file."""
import csv
from pathlib import Path

import pytest

from rtrl.bench import throughput
from rtrl.bench.throughput import ThroughputBenchConfig, read_run
from rtrl.cli import main
from rtrl.settings import validate

TINY = ["bench", "cells", "--lengths", "1", "3", "--hidden-sizes", "4", "--input-size", "3", "--batch-size", "2",
        "--repeats", "1"]


def printed_ratio_is_consistent(ratio: float, ratio_digits: int, numerator: float, denominator: float,
                                time_digits: int = 1) -> bool:
    """The printed ratio comes from unrounded times, the printed times are rounded to ``time_digits``: the
    ratio must lie between the extremes those roundings allow (widened by the ratio's own rounding)."""
    half = 0.5 * 10 ** -time_digits
    low = (numerator - half) / (denominator + half)
    high = (numerator + half) / max(denominator - half, 1e-9)
    slack = 0.5 * 10 ** -ratio_digits
    return low - slack <= ratio <= high + slack


def test_bench_cells_prints_and_records_a_table(tmp_path, capsys):
    """Two rows timed (without the memory children), then one row with them (a fresh process per method)."""
    doc = tmp_path / "BENCH.md"
    doc.write_text("# Benchmarks\n\nintro kept\n")
    assert main(TINY + ["--copy-mb", "8", "--no-memory", "--record", str(doc)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("|   ") and "T |" not in line]
    assert len(rows) == 2 and rows[0].split("|")[1].strip() == "1" and rows[1].split("|")[1].strip() == "3"
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[15:18] == ["-", "-", "-"]   # memory not measured
        cells = [float(c) for c in cells[:15]]
        floor, step_ms, segment_ms, in_place_ms, bptt_ms = cells[6:11]
        assert floor > 0 and min(cells[2:6]) > 0   # printed to 3 significant digits
        for ratio, numerator in zip(cells[11:14], (segment_ms, in_place_ms, bptt_ms)):
            assert ratio == pytest.approx(numerator / floor, rel=0.02, abs=0.01 / floor + 0.01)
        assert printed_ratio_is_consistent(cells[14], 2, in_place_ms, bptt_ms, time_digits=2)
    assert "T=1, N=4: (b') = " in out and "x its floor (target <= 2.0x)" in out
    text = doc.read_text()
    assert "intro kept" in text and "- command: `" in text and "- machine: " in text and "T=1, N=4" in text
    one_row = TINY[:4] + TINY[5:]   # --lengths 1
    assert main(one_row + ["--copy-mb", "8", "--record", str(doc)]) == 0  # replaces its section
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|   1 |")]
    assert len(row) == 1 and min(float(c) for c in row[0].strip("|").split("|")[15:18]) >= 0  # peak MB, measured
    text = doc.read_text()
    assert text.count("<!-- begin rtrl bench cells -->") == 1 and "intro kept" in text


def test_bench_cells_has_no_hidden_child_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "cells", "--peak-memory-of", "segment", "1", "4"])
    assert exit_info.value.code == 2


def test_printed_ratio_check_rejects_an_inconsistent_ratio():
    assert printed_ratio_is_consistent(2.0, 1, 0.2, 0.1)
    assert not printed_ratio_is_consistent(9.0, 1, 0.2, 0.1)      # 0.25 / 0.05 = 5 at most


def test_bad_bench_setting_names_the_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "cells", "--repeats", "0"])
    assert exit_info.value.code == 2 and "bad --repeats=0; accepted: a positive integer" in capsys.readouterr().err


def test_read_run_excludes_start_up(tmp_path):
    path = tmp_path / "metrics.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["step", "wall_time", "sps", "policy_lag"])
        writer.writeheader()
        writer.writerows([{"step": 100, "wall_time": 10.0, "sps": 10, "policy_lag": 9.0},
                          {"step": 300, "wall_time": 12.0, "sps": 100, "policy_lag": 1.0},
                          {"step": 500, "wall_time": 14.0, "sps": 100, "policy_lag": 2.0}])
    rate, median, lag = read_run(path)
    assert rate == pytest.approx(100.0) and median == pytest.approx(100.0) and lag == pytest.approx(1.5)
    path.write_text("step,wall_time,sps\n1,1,1\n")
    with pytest.raises(ValueError, match="1 rows"):
        read_run(path)


def test_throughput_compares_backends_by_medians_of_interleaved_runs(tmp_path, monkeypatch, capsys):
    rates = {"local": iter([100.0, 300.0, 200.0]), "ray": iter([90.0, 150.0, 170.0])}
    order = []

    def fake_measure(args, backend, core, train_args):
        order.append(backend)
        return {"rate": next(rates[backend]), "median_row": 0.0, "lag": 1.0 if backend == "ray" else 0.0, "wall": 5.0}

    monkeypatch.setattr(throughput, "measure", fake_measure)
    doc = tmp_path / "BENCH.md"
    cfg = ThroughputBenchConfig(cores=["rtrl-elstm"], backends=["local", "ray"], repeats=3, record=str(doc))
    result = throughput.run(cfg)
    assert order == ["local", "ray"] * 3   # interleaved
    assert result == {("local", "rtrl-elstm"): 200.0, ("ray", "rtrl-elstm"): 150.0}
    out = capsys.readouterr().out
    assert "| ray | rtrl-elstm | 150 | 150 | 90, 150, 170 | 1.00 | 5 |" in out
    assert "ray / local (rtrl-elstm) = 0.75 (target >= 0.8)" in out
    assert "<!-- begin rtrl bench throughput: memory:delayed_recall?cues=2&delay=30 (local, ray) -->" in doc.read_text()


def test_throughput_puts_the_streaming_learner_beside_r2ac_on_the_same_core(tmp_path, monkeypatch, capsys):
    commands = []

    def fake_run_rtrl(cmd, capture):
        commands.append(cmd)
        out = Path(cmd[cmd.index("--out") + 1])
        rate = 400.0 if "stream" in cmd else 2000.0
        with (out / "metrics.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "wall_time", "sps"])
            writer.writeheader()
            writer.writerows([{"step": 0, "wall_time": 1.0, "sps": rate}, {"step": rate, "wall_time": 2.0, "sps": rate}])

    monkeypatch.setattr(throughput, "run_rtrl", fake_run_rtrl)
    doc = tmp_path / "BENCH.md"
    result = throughput.run(ThroughputBenchConfig(cores=["rtrl-elstm"], learners=["impala", "stream"], record=str(doc)))
    assert result == {("local", "rtrl-elstm"): 2000.0, ("stream learner", "rtrl-elstm"): 400.0}
    impala, stream = commands
    assert "--backend" in impala and impala[impala.index("--preset") + 1] == "memory" and "--learner" not in impala
    assert stream[stream.index("--learner") + 1] == "stream" and stream[stream.index("--preset") + 1] == "stream"
    assert stream[stream.index("--cell") + 1] == "elstm" and stream[stream.index("--learning") + 1] == "rtrl"
    assert stream[stream.index("--env") + 1] == impala[impala.index("--env") + 1] and "--core" not in stream
    out = capsys.readouterr().out
    assert "| stream learner | rtrl-elstm | 400 | 400 | 400 | – |" in out
    assert "stream learner / local (rtrl-elstm) = 0.20" in out
    assert "(local, stream learner) -->" in doc.read_text()


def _fake_train_runs(monkeypatch) -> list[list[str]]:
    """Each `rtrl train` of the throughput bench writes a two-row metrics.csv (100 steps/s) instead of training;
    returns the list its commands go into."""
    commands = []

    def fake_run_rtrl(cmd, capture):
        commands.append(cmd)
        with (Path(cmd[cmd.index("--out") + 1]) / "metrics.csv").open("w", newline="") as f:
            f.write("step,wall_time,sps\n0,1,100\n100,2,100\n")

    monkeypatch.setattr(throughput, "run_rtrl", fake_run_rtrl)
    return commands


def test_throughput_measures_any_suite_label_and_refuses_a_core_given_again_after_the_separator(monkeypatch, capsys):
    """--cores takes the memory suite's labels as well as the old core names, so the paired cells and the stacks
    are measured as `rtrl train --cell rtu --learning rtrl` runs; a core setting after -- would make a row
    train another core than it names, and is refused before anything runs."""
    commands = _fake_train_runs(monkeypatch)
    cfg = ThroughputBenchConfig(cores=["rtrl-rtu", "2x-exact-rtrl-elstm", "rtrl-rtu"], learners=["impala", "stream"],
                                total_steps=1000)
    validate(cfg)   # a core named twice is measured once
    throughput.check_train_args(cfg, {})
    throughput.run(cfg)
    rtu, rtu_stream, stack, _ = commands
    assert rtu[rtu.index("--cell") + 1] == "rtu" and rtu[rtu.index("--learning") + 1] == "rtrl" and "--core" not in rtu
    assert rtu_stream[rtu_stream.index("--cell") + 1] == "rtu" and "stream" in rtu_stream
    assert stack[stack.index("--num-layers") + 1] == "2" and stack[stack.index("--multilayer") + 1] == "exact"
    assert "| local | rtrl-rtu | 100 |" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "throughput", "--cores", "lstm", "--", "--cell", "elstm"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "cell after -- would train another core than its row names" in err and "--cores" in err, err


def test_throughput_gives_a_flag_after_the_separator_to_the_learners_that_read_it(monkeypatch, capsys):
    """With both learners measured, a flag only R2AC reads (--unroll-length) goes to its runs alone and one only
    the stream reads (--stream-lr) to the stream's; a flag both read goes to all; a flag no measured learner
    reads, or a row's own learner or backend, is refused before anything runs."""
    commands = _fake_train_runs(monkeypatch)
    extra = ["--unroll-length", "20", "--stream-lr=0.5", "--hidden-size", "16", "--env-options", "delay=3"]
    cfg = ThroughputBenchConfig(cores=["rtrl-elstm"], learners=["impala", "stream"], total_steps=1000)
    throughput.check_train_args(cfg, {"unroll_length": 20, "stream_lr": 0.5, "hidden_size": 16})
    throughput.run(cfg, extra)
    impala, stream = commands
    assert impala[-6:] == ["--unroll-length", "20", "--hidden-size", "16", "--env-options", "delay=3"], impala
    assert stream[-5:] == ["--stream-lr=0.5", "--hidden-size", "16", "--env-options", "delay=3"], stream
    out = capsys.readouterr().out
    assert "`--unroll-length 20 --hidden-size 16 --env-options delay=3` (impala)" in out
    assert "`--stream-lr=0.5 --hidden-size 16 --env-options delay=3` (stream)" in out
    for argv, pieces in [(["--learners", "impala", "--", "--stream-lr", "0.5"],
                          ["stream_lr after -- is read by none of the learners measured (--learners=['impala'])"]),
                         (["--learners", "impala", "stream", "--", "--backend", "ray"],
                          ["backend after -- would run another backend than its row names; accepted: --backends"]),
                         (["--", "--learner", "stream"], ["accepted: --learners"])]:
        with pytest.raises(SystemExit) as exit_info:
            main(["bench", "throughput", "--cores", "lstm", *argv])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and all(piece in err for piece in pieces), err
