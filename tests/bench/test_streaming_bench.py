"""bench/streaming.py: the report is rewritten from the records alone, and a run with a record is not run again."""
import json
from pathlib import Path

import pytest

from conftest import load_bench_script


@pytest.fixture
def bench():
    return load_bench_script("streaming")


def _result(agent, task, seed, greedy, wall, success, steps=1000):
    delay = int(task[len("delay"):]) if task.startswith("delay") else None
    curve = {"step": [steps // 2, steps], "wall_time": [wall / 2, wall], "success_rate": success,
             "mean_return": [s - 1 for s in success]}
    return {"agent": agent, "task": task, "delay": delay, "seed": seed, "steps": steps, "episodes": 50,
            "greedy_success": greedy if delay is not None else None, "greedy_return": greedy if delay is None else None,
            "wall_time": wall, "steps_per_s": steps / wall, "curve": curve}


def _write(records: Path, result: dict) -> None:
    path = records / result["task"] / f"{result['agent']}-seed{result['seed']}-{result['steps']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def test_the_delay_table_gives_medians_every_seed_and_the_score_at_the_fastest_runs_wall_time(bench):
    results = [_result("stream-rtrl", "delay30", 0, 1.0, 100.0, [0.5, 0.9]),
               _result("stream-rtrl", "delay30", 2, 0.5, 120.0, [0.6, 0.5]),
               _result("stream-rtrl", "delay30", 1, 0.9, 110.0, [0.7, 0.95]),
               _result("impala-rtrl", "delay30", 0, 0.4, 10.0, [0.45, 0.55])]
    lines = bench._table(results, "delay", popgym=False)
    rows = {line.split("|")[3].strip(): line for line in lines[2:]}
    assert list(rows) == ["stream-rtrl", "impala-rtrl"]   # the agents in AGENTS' order
    assert "| 3 | 0.900 | 0: 1.000, 1: 0.900, 2: 0.500 | – |" in rows["stream-rtrl"]   # no sampled score recorded
    results[0]["sampled_success"], results[1]["sampled_success"] = 0.7, 0.6
    rows = {line.split("|")[3].strip(): line for line in bench._table(results, "delay", popgym=False)[2:]}
    assert "| 0: 1.000, 1: 0.900, 2: 0.500 | 0.650 |" in rows["stream-rtrl"]   # the median of those recorded
    # the fastest run (impala's, 10 s) sets the wall time: its last row; streaming RTRL had logged nothing by then
    assert "| – (10) |" in rows["stream-rtrl"] and "| 0.550 (10) |" in rows["impala-rtrl"]
    assert rows["stream-rtrl"].endswith("| 9 |")   # median of 10, 9.09, 8.33 steps/s


def test_a_record_of_an_agent_the_table_does_not_name_keeps_its_row_after_the_named_ones(bench):
    results = [_result("stream-rtrl-someday", "delay8", 0, 0.7, 50.0, [0.5, 0.6]),
               _result("stream-rtrl", "delay8", 0, 1.0, 40.0, [0.5, 0.9])]
    lines = bench._table(results, "delay", popgym=False)
    assert [line.split("|")[3].strip() for line in lines[2:]] == ["stream-rtrl", "stream-rtrl-someday"]
    assert "| 1 | 0.700 | 0: 0.700 |" in lines[3]


def test_the_report_replaces_only_its_own_section_and_runs_nothing_that_has_a_record(bench, tmp_path, monkeypatch):
    records, doc = tmp_path / "records", tmp_path / "STREAMING.md"
    settings = bench.learned_settings(bench.train_args("stream-rtrl", "delay4", 0, 1000))
    del settings["critic"]   # a record made before a setting existed: made with its default, so still current
    _write(records, dict(_result("stream-rtrl", "delay4", 0, 1.0, 8.0, [0.5, 1.0]), settings=settings))
    _write(records, _result("stream-tbptt", "RepeatPreviousEasy", 0, -0.3, 9.0, [0.6, 0.7]))
    doc.write_text("# Written by hand\n\n<!-- begin bench/streaming.py -->\nold\n<!-- end bench/streaming.py -->\n"
                   "\nAfter the section.\n")
    bench.report(records, doc, "python bench/streaming.py --report-only")
    text = doc.read_text()
    assert text.startswith("# Written by hand\n") and text.endswith("\nAfter the section.\n") and "\nold\n" not in text
    assert "### The delay sweep" in text and "### POPGym" in text
    assert "| 4 | 1,000 | stream-rtrl | 1 | 1.000 | 0: 1.000 |" in text
    assert "| RepeatPreviousEasy | 1,000 | stream-tbptt | 1 | -0.300 | 0: -0.300 | -0.300 |" in text

    def no_child(*args):
        raise AssertionError(f"ran {args} although the record exists")
    monkeypatch.setattr(bench, "rtrl", no_child)
    kept = bench.run_one("stream-rtrl", "delay4", 0, 1000, tmp_path / "runs", records, 50)
    assert kept["greedy_success"] == 1.0


def test_bad_arguments_are_refused_by_name(bench, monkeypatch, capsys):
    for argv, named in ((["--delays", "0"], "bad --delays [0]"), (["--tasks", "Pong"], "unknown --tasks ['Pong']")):
        monkeypatch.setattr("sys.argv", ["streaming.py", *argv])
        with pytest.raises(SystemExit) as exited:
            bench.main()
        assert exited.value.code == 2 and named in capsys.readouterr().err


def test_a_record_of_other_settings_is_made_again_beside_a_run_directory_of_other_settings(bench, tmp_path,
                                                                                          monkeypatch):
    """A record (and a run directory) made before a preset changed is not taken for the new preset's: the run is
    made again, in a directory of its own, and its record replaces the old one with the new settings."""
    records, runs = tmp_path / "records", tmp_path / "runs"
    settings = bench.learned_settings(bench.train_args("stream-rtrl", "delay4", 0, 1000))
    assert settings["learner"] == "stream" and settings["env"] == "memory:delayed_recall?cues=2&delay=4"
    assert "num_actors" not in settings and "resumed_at_step" not in settings   # where a run executes: not keyed
    _write(records, dict(_result("stream-rtrl", "delay4", 0, 0.5, 8.0, [0.5, 0.5]),
                         settings=dict(settings, stream_lr=settings["stream_lr"] / 2)))
    old_run = runs / "delay4" / "stream-rtrl-seed0-1000"
    old_run.mkdir(parents=True)
    (old_run / "config.json").write_text(json.dumps(dict(settings, stream_lr=settings["stream_lr"] / 2)))
    made = []

    def fake_rtrl(command, *args):
        if command == "train":
            out = Path(args[args.index("--out") + 1])
            made.append(out)
            out.mkdir(parents=True)
            (out / "metrics.csv").write_text("step,wall_time,success_rate,mean_return\n1000,5.0,0.9,0.9\n")
        else:
            (Path(args[0]) / "eval.json").write_text(json.dumps({"success_rate": 1.0, "mean_return": 1.0}))
    monkeypatch.setattr(bench, "rtrl", fake_rtrl)
    result = bench.run_one("stream-rtrl", "delay4", 0, 1000, runs, records, 50)
    assert len(made) == 1 and made[0] != old_run and made[0].name.startswith(old_run.name + "-")
    assert result["greedy_success"] == 1.0 and result["settings"] == settings
    assert json.loads((records / "delay4" / "stream-rtrl-seed0-1000.json").read_text())["settings"] == settings
    bench.run_one("stream-rtrl", "delay4", 0, 1000, runs, records, 50)   # now the record is the current one
    assert len(made) == 1


def test_extend_from_continues_a_copy_of_the_finished_shorter_run_and_refuses_what_it_cannot(bench, tmp_path,
                                                                                            monkeypatch, capsys):
    """A streaming run given more steps is the same run continued: ``--extend-from`` starts the longer run as a copy
    of the finished shorter one (kept as it was) and trains it on; R2AC (its learning rate follows its budget), a
    shorter run with no record or no run directory, and a bad value are refused by name."""
    records, runs = tmp_path / "records", tmp_path / "runs"
    settings = bench.learned_settings(bench.train_args("stream-rtrl", "delay4", 0, 1000))
    _write(records, dict(_result("stream-rtrl", "delay4", 0, 0.5, 8.0, [0.5, 0.5]), settings=settings))
    short = runs / "delay4" / "stream-rtrl-seed0-1000"
    short.mkdir(parents=True)
    (short / "config.json").write_text(json.dumps(settings))
    (short / "checkpoint.pt").write_bytes(b"the short run's")
    made = []

    def fake_rtrl(command, *args):
        if command == "train":
            out = Path(args[args.index("--out") + 1])
            made.append((out, (out / "checkpoint.pt").read_bytes(), args[args.index("--total-steps") + 1]))
            (out / "metrics.csv").write_text("step,wall_time,success_rate,mean_return\n3000,15.0,0.9,0.9\n")
        else:
            evaluated.append([a for a in args if a == "--sample"])
            score = 0.75 if "--sample" in args else 1.0
            (Path(args[0]) / "eval.json").write_text(json.dumps({"success_rate": score, "mean_return": score}))
    evaluated = []
    monkeypatch.setattr(bench, "rtrl", fake_rtrl)
    result = bench.run_one("stream-rtrl", "delay4", 0, 3000, runs, records, 50, extend_from=1000)
    assert made == [(runs / "delay4" / "stream-rtrl-seed0-3000", b"the short run's", "3000")]
    assert evaluated == [["--sample"], []]   # sampled, then greedy: eval.json ends as the greedy one's
    assert result["steps"] == 3000 and not (short / "metrics.csv").exists()   # the short run is left as it was
    assert result["greedy_success"] == 1.0 and result["sampled_success"] == 0.75
    with pytest.raises(bench.ExtendError, match="impala-rtrl is R2AC, whose learning rate decays"):
        bench.run_one("impala-rtrl", "delay4", 0, 3000, runs, records, 50, extend_from=1000)
    with pytest.raises(bench.ExtendError, match="no finished run of stream-rtrl on delay4, seed 1, at 1000 steps"):
        bench.run_one("stream-rtrl", "delay4", 1, 3000, runs, records, 50, extend_from=1000)
    (short / "checkpoint.pt").unlink()
    with pytest.raises(bench.ExtendError, match="holds no checkpoint to continue"):
        bench.run_one("stream-rtrl", "delay4", 0, 5000, runs, records, 50, extend_from=1000)
    monkeypatch.setattr("sys.argv", ["streaming.py", "--steps", "1000", "--extend-from", "1000"])
    with pytest.raises(SystemExit) as exited:
        bench.main()
    assert exited.value.code == 2 and "bad --extend-from 1000" in capsys.readouterr().err


def test_add_sampled_scores_an_old_record_from_its_run_directory_and_puts_its_eval_back(bench, tmp_path, monkeypatch):
    records, runs = tmp_path / "records", tmp_path / "runs"
    settings = bench.learned_settings(bench.train_args("stream-rtrl", "delay4", 0, 1000))
    for seed in (0, 1):
        _write(records, dict(_result("stream-rtrl", "delay4", seed, 0.5, 8.0, [0.5, 0.5]), settings=settings))
    first = json.loads((records / "delay4" / "stream-rtrl-seed0-1000.json").read_text())
    del first["task"]   # the first records named only the delay
    (records / "delay4" / "stream-rtrl-seed0-1000.json").write_text(json.dumps(first))
    run = runs / "delay4" / "stream-rtrl-seed0-1000"   # seed 1's run directory is not on this machine
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps(settings))
    (run / "checkpoint.pt").write_bytes(b"weights")
    (run / "eval.json").write_text('{"success_rate": 0.5}')
    calls = []

    def fake_rtrl(command, *args):
        calls.append((command, *args))
        (Path(args[0]) / "eval.json").write_text(json.dumps({"success_rate": 0.7}))
    monkeypatch.setattr(bench, "rtrl", fake_rtrl)
    done = bench.add_sampled(records / "delay4" / "stream-rtrl-seed0-1000.json", runs, 50)
    assert done.endswith("sampled success 0.700") and calls[0][-1] == "--sample"
    assert json.loads((records / "delay4" / "stream-rtrl-seed0-1000.json").read_text())["sampled_success"] == 0.7
    assert (run / "eval.json").read_text() == '{"success_rate": 0.5}'   # the greedy evaluation, as it was
    assert "not on this machine" in bench.add_sampled(records / "delay4" / "stream-rtrl-seed1-1000.json", runs, 50)
    assert "sampled_success" not in json.loads((records / "delay4" / "stream-rtrl-seed1-1000.json").read_text())
    assert "nothing to add" in bench.add_sampled(records / "delay4" / "stream-rtrl-seed0-1000.json", runs, 50)
    assert len(calls) == 1


def test_the_sweep_figures_draw_each_delay_at_the_longest_budget_four_panels_to_a_figure(bench, tmp_path,
                                                                                        monkeypatch):
    results = [_result(agent, f"delay{d}", seed, 1.0, 10.0, [0.5, 0.9], steps=steps)
               for d in (2, 4, 8, 16, 32) for agent in ("stream-rtrl", "stream-tbptt") for seed in (0, 1)
               for steps in (1000, 2000)]
    drawn = []
    monkeypatch.setattr("rtrl.records.plots.plot_panels",
                        lambda panels, path, **kw: drawn.append((panels, path)) or path)
    written = bench.sweep_figures(results, tmp_path)
    assert [p.name for p in written] == ["sweep_1.png", "sweep_2.png"]
    assert [[panel.title for panel in panels] for panels, _ in drawn] == [
        ["delay 2", "delay 4", "delay 8", "delay 16"], ["delay 32"]]
    lines = drawn[0][0][0].series
    assert [(s.label, s.linestyle, s.x[-1]) for s in lines] == [   # one line per (agent, seed), at 2000 steps
        ("stream-rtrl", "-", 2000), ("_stream-rtrl", "--", 2000), ("stream-tbptt", "-", 2000),
        ("_stream-tbptt", "--", 2000)]
    monkeypatch.undo()
    png = bench.sweep_figures(results[:4], tmp_path / "real")[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_rows_written_before_the_first_episode_ended_do_not_turn_the_popgym_scores_into_nan(bench):
    """A curve's first rows hold nan (no episode had ended yet): the best training mean and the score at equal wall
    time skip them, so one such record does not make its row's medians nan."""
    nan = float("nan")
    early = _result("impala-rtrl", "ConcentrationEasy", 1, -0.7, 10.0, [0.0, 0.0])
    early["curve"]["mean_return"] = [nan, -0.3]
    late = _result("impala-rtrl", "ConcentrationEasy", 0, -0.8, 10.0, [0.0, 0.0])
    late["curve"]["mean_return"] = [-0.2, -0.25]
    assert bench.best_training_mean(early) == -0.3
    row = bench._table([early, late], "task", popgym=True)[2]
    assert "nan" not in row and "| -0.250 |" in row   # the median of the best means -0.3 and -0.2
    early["curve"]["mean_return"] = [nan, nan]
    assert bench.best_training_mean(early) is None and bench.success_at_wall_time(early, 10.0, "mean_return") is None
