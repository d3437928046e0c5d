"""`rtrl bench suite`'s bookkeeping on tiny budgets: resume, skip finished runs, normalisation, the report."""
import dataclasses
import json
import signal
import subprocess
import sys
import time

import numpy as np
from pathlib import Path

import pytest
import torch

from conftest import children, running
from rtrl.bench import suite, suite_report, suite_tasks
from rtrl.bench.suite import SuiteConfig
from rtrl.bench.suite_tasks import normalise
from rtrl.cli import main
from rtrl.envs import make_env
from rtrl.settings import SettingError

TINY_TRAIN = dict(hidden_size=4, batch_size=2, envs_per_actor=2, unroll_length=4, log_interval=0.01)
TASKS = "recall-2x30,sequence-4x3x50"


def tiny(tmp_path, **overrides) -> SuiteConfig:
    values = dict(runs=str(tmp_path / "runs"), doc=str(tmp_path / "SUITE.md"), results=str(tmp_path / "results"),
                  tasks=TASKS, total_steps=64, eval_episodes=4)
    values.update(overrides)
    return SuiteConfig(**values).validate()


def test_normalise_maps_chance_to_0_and_maximum_to_1():
    assert normalise(0.5, 0.5, 1.0) == 0 and normalise(1.0, 0.5, 1.0) == 1
    assert normalise(-0.25, -0.5, 1.0) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="maximum 0.2 must exceed chance 0.5"):
        normalise(0.3, 0.5, 0.2)


@pytest.mark.popgym
def test_every_suite_task_is_an_environment_with_a_score():
    for task in suite_tasks.TASKS:
        env = make_env(task.env, seed=0)
        env.reset()
        assert task.score in ("success_rate", "mean_return") and (task.chance is None or task.chance < task.maximum)
        env.close()


def test_plan_covers_the_tier_seed_by_seed():
    jobs = suite.plan(SuiteConfig(tier="full"))
    assert len(jobs) == 8 * (3 + 3 + 1 + 1 + 3 + 3 + 1)
    assert [j.seed for j in jobs] == sorted(j.seed for j in jobs)   # seed 0 of everything first
    assert {(j.core, j.seed) for j in jobs if j.task == "recall-2x300"} == {
        ("rtrl-elstm", 0), ("rtrl-elstm", 1), ("rtrl-elstm", 2), ("tbptt-elstm", 0), ("tbptt-elstm", 1),
        ("tbptt-elstm", 2), ("lstm", 0), ("ff", 0), ("rtrl-rtu", 0), ("rtrl-rtu", 1), ("rtrl-rtu", 2),
        ("rtrl-clru", 0), ("rtrl-clru", 1), ("rtrl-clru", 2), ("2x-exact-rtrl-elstm", 0)}
    three = suite.plan(SuiteConfig(seeds="2,0,1"))
    assert {(j.core, j.seed) for j in three} == {(c, s) for c in ("rtrl-elstm", "tbptt-elstm") for s in (0, 1, 2)}
    assert suite.plan(SuiteConfig(seeds="0"))[0].out == suite.plan(SuiteConfig())[0].out   # shared with the tier
    # an ablation's runs sit under its variant, as its records do: never in a run directory of the tier's own
    ablation = suite.plan(SuiteConfig(seeds="0"), {"chrono_max": 0.0})[0]
    assert Path(ablation.out).parent.parent.name == "quick_chrono_max_0_0" == Path(ablation.record).parent.parent.name
    assert Path(suite.plan(SuiteConfig())[0].out).parent.parent.name == "quick"   # the tier's own, as before
    with pytest.raises(SettingError, match="bad seeds='0,x'; accepted: comma-separated integers"):
        SuiteConfig(seeds="0,x").validate()
    two = suite.plan(SuiteConfig(tier="full", cores="tbptt-elstm,rtrl-elstm"))
    assert [(j.core, j.seed) for j in two if j.task == "recall-2x30"] == [
        (c, s) for s in (0, 1, 2) for c in ("rtrl-elstm", "tbptt-elstm")]
    with pytest.raises(SettingError, match="cores='lstm' names a core not in the quick tier; accepted: rtrl-elstm, "
                                           "tbptt-elstm"):
        SuiteConfig(cores="lstm").validate()
    with_action = suite.plan(SuiteConfig(tasks="RepeatPreviousEasy,recall-2x30", previous_action=True))
    assert [j.settings["env"] for j in with_action][::2] == ["popgym:RepeatPreviousEasy?previous_action=true",
                                                             "memory:delayed_recall?cues=2&delay=30&previous_action=true"]
    assert all(j.settings["total_steps"] == 15_000_000 and j.settings["num_actors"] == 0 for j in jobs)
    # a task named twice is one task: it planned each of its runs twice (two jobs on one run directory)
    twice = suite.plan(SuiteConfig(tasks="recall-2x30,AutoencodeEasy,recall-2x30"))
    assert [(j.task, j.core) for j in twice] == [(t, c) for t in ("recall-2x30", "AutoencodeEasy")
                                                 for c in ("rtrl-elstm", "tbptt-elstm")]


def run_dir(runs: Path, task: str, core: str, seed: int = 0) -> Path:
    """The one run directory of ``core`` on ``task`` under ``runs`` (they sit under the variant's name)."""
    found = list(runs.glob(f"*/{task}/{core}-seed{seed}"))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.rliable
def test_runs_finish_once_resume_when_stopped_and_are_reported(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    calls = []
    real_train = suite.train
    monkeypatch.setattr(suite, "train", lambda *a, **k: calls.append(a[1]) or real_train(*a, **k))
    results = suite.run(cfg, TINY_TRAIN, say=lambda *_: None)
    assert len(results) == 4 and len(calls) == 4
    first = json.loads((run_dir(tmp_path / "runs", "recall-2x30", "rtrl-elstm") / "result.json").read_text())
    assert first["score_name"] == "success_rate" and 0 <= first["score"] <= 1 and first["eval_episodes"] == 4
    assert "rtrl train --preset memory-suite" in first["command"] and "--core=rtrl-elstm" in first["command"]

    calls.clear()   # everything finished: nothing runs again
    assert len(suite.run(cfg, TINY_TRAIN, say=lambda *_: None)) == 4 and calls == []

    # a run stopped before its evaluation (no result.json) resumes from its checkpoint: no steps are redone
    stopped = run_dir(tmp_path / "runs", "sequence-4x3x50", "tbptt-elstm")
    (stopped / "result.json").unlink()
    next((tmp_path / "results").rglob("sequence-4x3x50/tbptt-elstm-seed0.json")).unlink()   # and its record
    rows_before = (stopped / "metrics.csv").read_text()
    checkpoint = torch.load(stopped / "checkpoint.pt", weights_only=False)
    torch.save(dict(checkpoint, wall_time=600.0), stopped / "checkpoint.pt")   # as if its first piece took 10 min
    suite.run(cfg, TINY_TRAIN, say=lambda *_: None)
    assert calls == [str(stopped)] and (stopped / "result.json").exists()
    assert json.loads((stopped / "result.json").read_text())["train_minutes"] == pytest.approx(10, abs=0.02)
    assert (stopped / "metrics.csv").read_text() == rows_before

    # another budget or setting is another variant, with run directories of its own
    other = tiny(tmp_path, total_steps=128)
    assert {j.out for j in suite.plan(other, TINY_TRAIN)}.isdisjoint(j.out for j in suite.plan(cfg, TINY_TRAIN))
    # and a directory that holds a run of other settings all the same is an error, not a finished run
    parts = suite.variant_parts(cfg, TINY_TRAIN)
    monkeypatch.setattr(suite, "variant_parts", lambda *args, **kwargs: parts)   # as if the variant were the same
    with pytest.raises(SettingError, match="holds a run of preset 'memory-suite' with settings .*'total_steps': 64"):
        suite.run(other, TINY_TRAIN, say=lambda *_: None)
    with pytest.raises(SettingError, match="'hidden_size': 4.*not preset='memory-suite' with .*'hidden_size': 5"):
        suite.run(cfg, dict(TINY_TRAIN, hidden_size=5), say=lambda *_: None)
    monkeypatch.undo()

    text = suite_report.write_report(cfg, "rtrl bench suite ...", "# header kept\n", TINY_TRAIN)
    assert "4 of 4 runs finished" in text and "| recall-2x30 | success rate | 0.500 |" in text
    assert "IQM" in text and len(list(tmp_path.glob("suite_quick_64_steps_tasks_recall_2x30_sequence_4x3x50_*.png")))
    assert suite_report.section_name(SuiteConfig(), {"hidden_size": 4}) == "quick, hidden_size=4"
    assert suite_report.section_name(cfg) == f"quick, 64 steps, tasks {TASKS}"
    assert suite_report.section_name(SuiteConfig(preset="memory")) == "quick, preset memory"
    doc = (tmp_path / "SUITE.md").read_text()
    marker = f"<!-- begin tier {suite_report.section_name(cfg, TINY_TRAIN)} -->"
    assert doc.startswith("# header kept") and doc.count(marker) == 1
    suite_report.write_report(cfg, "again", "", TINY_TRAIN)
    assert (tmp_path / "SUITE.md").read_text().count(marker) == 1


def test_max_minutes_stops_before_the_next_run(tmp_path):
    results = suite.run(tiny(tmp_path, max_minutes=1e-9), TINY_TRAIN, say=lambda *_: None)
    assert results == []


@pytest.mark.rliable
def test_the_report_says_what_is_missing_and_aggregates_only_complete_cores(tmp_path):
    cfg = tiny(tmp_path, tasks="recall-2x30")
    job = suite.plan(cfg)[0]
    suite.run_job(cfg.preset, suite.Job(job.task, job.core, job.seed, job.out, dict(job.settings, **TINY_TRAIN)), 4)
    text = suite_report.write_report(cfg, "cmd", "")
    assert "1 of 2 runs finished" in text and "not run" in text and "recall-2x30/tbptt-elstm-seed0" in text
    assert "| rtrl-elstm | 1 |" in text and "| tbptt-elstm | 1 |" not in text
    only_rtrl = suite_report.write_report(dataclasses.replace(cfg, cores="rtrl-elstm"), "cmd", "")
    assert "1 of 2 runs finished" in only_rtrl and "recall-2x30/tbptt-elstm-seed0" in only_rtrl   # the tier's report


@pytest.mark.rliable
def test_an_unfinished_core_is_aggregated_over_the_seeds_finished_on_every_task(tmp_path):
    cfg = tiny(tmp_path, seeds="0,1", total_steps=192)   # long enough for episodes of both tasks to end
    jobs = {(j.task, j.core, j.seed): j for j in suite.plan(cfg)}
    done = [("recall-2x30", "rtrl-elstm", 0), ("sequence-4x3x50", "rtrl-elstm", 0), ("recall-2x30", "rtrl-elstm", 1)]
    for key in done:   # seed 1 has one task of two: only seed 0 is finished on every task
        job = jobs[key]
        suite.run_job(cfg.preset, suite.Job(job.task, job.core, job.seed, job.out, dict(job.settings, **TINY_TRAIN)), 4)
    table = suite_report.collect(cfg)
    scores = {task: table[(task, "rtrl-elstm")]["scores"][0] for task in ("recall-2x30", "sequence-4x3x50")}
    chance = suite_tasks.chance_levels(cfg.runs, [t for t in suite_tasks.TASKS if t.name in cfg.task_names()])
    _, arrays, interim = suite_report.task_table(cfg, table, chance)
    expected = [normalise(scores[t.name], chance[t.name]["chance"], t.maximum)
                for t in suite_tasks.TASKS if t.name in scores]
    assert arrays["rtrl-elstm"].shape == (1, 2) and arrays["rtrl-elstm"][0].tolist() == pytest.approx(expected)
    assert interim == {"rtrl-elstm": "1 of 2 (seed 0; interim)"} and "tbptt-elstm" not in arrays
    text = suite_report.write_report(cfg, "cmd", "")
    assert "| rtrl-elstm | 1 of 2 (seed 0; interim) |" in text and "an interim row covers only those seeds" in text
    auc = text[text.index("How soon the cores learn"):]
    assert auc.count("| rtrl-elstm | 1 of 2 (seed 0; interim) |") == 1 and "| tbptt-elstm |" not in auc


@pytest.mark.rliable
def test_aggregates_are_rliable_iqm_with_stratified_bootstrap_cis():
    rng = np.random.default_rng(0)
    good, bad = rng.uniform(0.8, 1.0, (5, 8)), rng.uniform(0.0, 0.2, (5, 8))
    result = suite_report.aggregates({"good": good, "bad": bad})
    (iqm, mean), cis = result["good"]
    flat = np.sort(good.ravel())
    assert iqm == pytest.approx(flat[10:30].mean()) and mean == pytest.approx(good.mean())
    assert cis[0, 0] <= iqm <= cis[1, 0] and cis[1, 0] - cis[0, 0] > 0
    assert result["bad"][1][1, 0] < cis[0, 0]   # non-overlapping
    # reproducible: the same arrays give the same CIs, in any company and order, and the caller's global
    # numpy generator is left where it was
    np.random.seed(7)
    expected_draw = np.random.rand()
    np.random.seed(7)
    again = suite_report.aggregates({"bad": bad, "good": good})
    assert np.random.rand() == expected_draw
    assert all(np.array_equal(a, b) for key in ("good", "bad") for a, b in zip(result[key], again[key]))


def test_cli_rejects_settings_the_suite_sets_and_unknown_tasks(tmp_path, capsys):
    base = ["bench", "suite", "--runs", str(tmp_path), "--doc", "", "--results", ""]
    with pytest.raises(SystemExit):
        main(base + ["--", "--cell", "lstm"])
    assert "--cell='lstm' is set by the suite for each run; accepted: other training settings" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(base + ["--tasks", "recall-2x31"])
    err = capsys.readouterr().err
    assert "recall-2x31" in err and "recall-2x30" in err


@pytest.mark.slow
def test_jobs_run_side_by_side_in_their_own_processes(tmp_path):
    results = suite.run(tiny(tmp_path, tasks="recall-2x30", jobs=2), TINY_TRAIN, say=lambda *_: None)
    assert sorted(r["core"] for r in results) == ["rtrl-elstm", "tbptt-elstm"]
    assert all((run_dir(tmp_path / "runs", "recall-2x30", r["core"]) / "checkpoint.pt").exists() for r in results)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL])
def test_sigterm_to_the_suite_stops_its_parallel_runs_with_checkpoints(tmp_path, stop):
    """`kill PID` of `rtrl bench suite --jobs 2` reaches only the suite's process: it must tell its pool's
    processes, whose runs checkpoint and end, and exit 143 instead of waiting for the runs to finish. Killed
    outright (SIGKILL) it can tell nobody: each pool process notices, stops its run with a checkpoint and ends
    (before, they went on training as orphans)."""
    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "rtrl", "bench", "suite", "--tasks", "recall-2x30", "--jobs", "2",
           "--total-steps", "100000000", "--runs", str(runs), "--results", "", "--doc", "", "--",
           "--hidden-size", "4", "--batch-size", "2", "--envs-per-actor", "2", "--unroll-length", "4",
           "--log-interval", "0.2"]

    def logging_runs() -> list[Path]:   # the run directories (under the variant's name) with a metrics row
        return [d for d in runs.glob("*/recall-2x30/*-seed0")
                if (d / "metrics.csv").exists() and len((d / "metrics.csv").read_text().splitlines()) > 1]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(logging_runs()) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the two runs did not both log within 120 s"
            time.sleep(0.5)
        pool = children(proc.pid)
        assert len(pool) >= 2
        proc.send_signal(stop)   # to the suite's process alone, as `kill PID` does
        out, err = proc.communicate(timeout=240)   # each run writes its checkpoint: slow on a loaded machine
    finally:
        proc.kill()
    if stop == signal.SIGTERM:
        assert proc.returncode == 143, err
        assert "stopped; the runs in progress keep their checkpoints" in out
        assert "Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 40
    while running(pool) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not running(pool), f"pool processes left running: {running(pool)}"
    dirs = logging_runs()
    assert sorted(d.name for d in dirs) == ["rtrl-elstm-seed0", "tbptt-elstm-seed0"]
    for run in dirs:
        assert torch.load(run / "checkpoint.pt", weights_only=False)["steps"] > 0
        assert not (run / "result.json").exists()


def test_best_training_return_counts_only_full_windows(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,episodes,mean_return\n100,3,0.9\n200,200,0.2\n300,200,0.5\n"
                                          "400,200,\n500,200,0.4\n")
    curve = suite.training_curve(tmp_path, "mean_return")
    assert curve["mean_return"][3] is None
    assert suite_report.best_training_return(curve) == 0.5   # 0.9 came from 3 episodes only
    assert suite.training_curve(tmp_path / "no-run", "mean_return") is None
    assert suite_report.best_training_return(None) is None


def test_training_curve_is_thinned_evenly_and_keeps_the_last_row(tmp_path):
    rows = "".join(f"{100 * (i + 1)},{i},{i / 7:.10f}\n" for i in range(1000))
    (tmp_path / "metrics.csv").write_text("step,episodes,success_rate\n" + rows)
    curve = suite.training_curve(tmp_path, "success_rate", points=10)
    assert curve["step"] == [100 * (i + 1) for i in np.linspace(0, 999, 10).round().astype(int)]
    assert curve["step"][-1] == 100_000 and curve["success_rate"][-1] == pytest.approx(999 / 7, rel=5e-5)
    assert curve["success_rate"][1] == float(f"{111 / 7:.5g}") and "mean_return" not in curve


def test_training_mean_is_the_area_under_the_training_curve_per_step(tmp_path):
    (tmp_path / "metrics.csv").write_text("step,episodes,success_rate\n200,1,0.5\n400,1,\n600,1,1.0\n1000,1,1.0\n")
    curve = suite.training_curve(tmp_path, "success_rate")
    # read at steps 1..1000: 0.5 up to 200, linear to 1.0 at 600 (the empty row skipped), then 1.0
    steps = np.arange(1, 1001)
    expected = np.where(steps <= 200, 0.5, np.minimum(1.0, 0.5 + (steps - 200) / 800)).mean()
    assert suite_report.training_mean(curve, "success_rate", 1000, points=1000) == pytest.approx(expected)
    assert suite_report.training_mean(curve, "success_rate", 2000, points=2000) == pytest.approx(
        (expected * 1000 + 1000) / 2000)   # a run that stops early counts its last value to the budget
    assert suite_report.training_mean(None, "success_rate", 1000) is None
    text = suite_report.write_report(tiny(tmp_path, tasks="recall-2x30"), "cmd", "")
    assert "How soon the cores learn" not in text   # nothing finished, nothing to aggregate


def test_the_popgym_tasks_are_reported_beside_their_published_scores(tmp_path):
    runs = [{"curve": {"step": [1, 2], "episodes": [200, 200], "mean_return": [best, 0.1]}} for best in (0.3, 0.5)]
    table = {("AutoencodeEasy", "rtrl-elstm"): {"results": runs}, ("AutoencodeEasy", "tbptt-elstm"): {"results": []}}
    rows = suite_report.published_rows(SuiteConfig(tasks="AutoencodeEasy,recall-2x30"), table)
    assert rows[0].startswith("| task | rtrl-elstm (ours) | tbptt-elstm (ours) | POPGym GRU | POPGym LSTM")
    assert rows[2] == ("| AutoencodeEasy | 0.400 ± 0.100 (n=2) | not run | -0.283 ± 0.029 | -0.312 ± 0.008 | "
                       "-0.470 ± 0.004 | – | – |")
    assert suite_report.published_rows(SuiteConfig(tasks="recall-2x30"), table) == []   # no published counterpart
    table[("AutoencodeEasy", "rtrl-elstm")]["results"] = runs[:1]
    one_seed = suite_report.published_rows(SuiteConfig(tasks="AutoencodeEasy"), table)
    assert "| AutoencodeEasy | 0.300 (n=1) | not run |" in one_seed[2]   # no spread from one seed
    assert set(suite_report.PUBLISHED) <= set(suite_tasks.TASK_NAMES)


@pytest.mark.rliable
def test_records_of_finished_runs_stand_in_for_the_run_directories(tmp_path, monkeypatch):
    cfg = tiny(tmp_path, tasks="recall-2x30")
    suite.run(cfg, TINY_TRAIN, say=lambda *_: None)
    records = sorted((tmp_path / "results").rglob("*.json"))
    variant = "quick_64_steps_" + "_".join(f"{k}_{v}".replace(".", "_") for k, v in sorted(TINY_TRAIN.items()))
    assert [r.relative_to(tmp_path / "results").as_posix() for r in records] == [
        f"{variant}/recall-2x30/{core}-seed0.json" for core in ("rtrl-elstm", "tbptt-elstm")]
    kept = json.loads(records[0].read_text())
    run = json.loads((run_dir(tmp_path / "runs", "recall-2x30", "rtrl-elstm") / "result.json").read_text())
    assert {k: kept[k] for k in run} == run and kept["curve"]["step"] and "success_rate" in kept["curve"]
    before = suite_report.write_report(cfg, "cmd", "", TINY_TRAIN)

    # on a machine without the run directories: nothing runs again, and the report is the same
    import shutil
    shutil.rmtree(tmp_path / "runs")
    monkeypatch.setattr(suite, "train", lambda *a, **k: pytest.fail("a finished run ran again"))
    assert [r["score"] for r in suite.run(cfg, TINY_TRAIN, say=lambda *_: None)] == [
        json.loads(r.read_text())["score"] for r in records]
    after = suite_report.write_report(cfg, "cmd", "", TINY_TRAIN)
    strip = lambda text: [line for line in text.splitlines() if not line.startswith(("- date", "- machine"))]
    assert strip(after) == strip(before)

    # a record of other settings is an error that names the record, not a finished run
    records[0].write_text(records[0].read_text().replace('"hidden_size": 4', '"hidden_size": 5'))
    with pytest.raises(SettingError, match=f"{records[0]} holds a run of preset 'memory-suite' with settings "
                                           ".*'hidden_size': 5.*another runs or results directory"):
        suite.run(cfg, TINY_TRAIN, say=lambda *_: None)


def test_a_report_with_no_finished_runs_leaves_the_doc_as_it_is(tmp_path, capsys):
    doc = tmp_path / "SUITE.md"
    doc.write_text("# kept\n<!-- begin tier quick -->\nwritten from runs elsewhere\n<!-- end tier quick -->\n")
    before = doc.read_text()
    assert main(["bench", "suite", "--runs", str(tmp_path / "none"), "--results", str(tmp_path / "none"),
                 "--doc", str(doc), "--report-only"]) == 0
    assert doc.read_text() == before and "left as it is" in capsys.readouterr().out

