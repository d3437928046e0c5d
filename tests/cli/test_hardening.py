"""Issue 27's hostile cases, by kind: each ends with one clear message (exit 2) or the right behaviour, and
no traceback, no internal error, no data lost, no hang. The style of ``test_faults.py``: a case is an argv
built from (tmp_path, a finished training run), its exit code, and pieces its message must hold."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import run_cli, train_argv
from rtrl.cli import main
from rtrl.records.lock import DirectoryLock
from rtrl.records.run_guard import RunGuard, held_kind

COPY = ["--length", "3", "--hidden-size", "8", "--max-steps", "2", "--train-size", "60", "--valid-size", "20",
        "--test-size", "20", "--no-progress"]



def copy_argv(out, *extra) -> list[str]:
    return ["copy-task", "--out", str(out), *COPY, *extra]



@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_argv(path)) == 0
    return path


def copy_of(run: Path, tmp: Path) -> Path:
    shutil.copytree(run, tmp / "run")
    return tmp / "run"


def files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}


def with_checkpoint(run: Path, tmp: Path, **changes) -> Path:
    """A copy of the run whose checkpoint has ``changes`` (a key set to ``...`` is removed)."""
    run = copy_of(run, tmp)
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    for key, value in changes.items():
        if value is ...:
            checkpoint.pop(key)
        else:
            checkpoint[key] = value
    torch.save(checkpoint, run / "checkpoint.pt")
    return run


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


CASES = [
    # --- checkpoints validated on load (resume and eval)
    *[(f"checkpoint-{key}-{label}", lambda t, r, key=key, value=value: train_argv(
        with_checkpoint(r, t, **{key: value}), "--total-steps", "60"), 2,
       ["checkpoint.pt holds a bad " + key, accepted])
      for key, value, label, accepted in [
          ("steps", -40, "negative", "a non-negative integer"), ("steps", 40.5, "fractional", "a non-negative integer"),
          ("updates", -1, "negative", "a non-negative integer"),
          ("wall_time", float("nan"), "nan", "a non-negative finite number"),
          ("nonfinite_updates", "3", "text", "a non-negative integer"),
          ("actor_restarts", True, "bool", "a non-negative integer"),
          ("recent_episodes", "lots", "text", "a list of episodes"),
          ("optimizer", [1, 2], "list", "a table")]],
    ("checkpoint-episode-of-a-wrong-type", lambda t, r: train_argv(
        with_checkpoint(r, t, recent_episodes=[{"return": "high", "length": 3, "success": None}]), "--total-steps",
        "60"), 2, ["bad episode in recent_episodes", "return and length (numbers)"]),
    ("checkpoint-model-not-tensors", lambda t, r: ["eval", str(with_checkpoint(r, t, model={"w": 3}))], 2,
     ["checkpoint.pt holds a bad model (a dict)", "a table of named tensors"]),
    ("eval-checkpoint-negative-steps", lambda t, r: ["eval", str(with_checkpoint(r, t, steps=-1))], 2,
     ["checkpoint.pt holds a bad steps (-1)"]),
    # a setting of the checkpoint's config is named as the checkpoint's, not as a flag `rtrl eval` does not have
    *[(f"eval-checkpoint-config-{key}", lambda t, r, key=key, value=value: ["eval", str(with_checkpoint(
        r, t, config={**torch.load(r / "checkpoint.pt", weights_only=True)["config"], key: value}))], 2,
       [f"checkpoint.pt holds a bad setting: bad {key}={value!r}", accepted])
      for key, value, accepted in [("cell", "gru", "accepted: elstm"), ("hidden_size", -3, "a positive integer")]],
    # --- run directories of the other kind, and their files
    ("copy-task-onto-a-training-run", lambda t, r: copy_argv(copy_of(r, t)), 2,
     ["holds a training run (`rtrl train`)", "not a copy-task run", "nothing in it was changed", "--out"]),
    ("copy-task-out-a-file", lambda t, r: copy_argv(write(t / "file", "x")), 2,
     ["is a file, not a run directory", "--out"]),
    ("copy-task-out-under-a-file", lambda t, r: copy_argv(write(t / "file", "x") / "run"), 2,
     ["cannot create the run directory", "/file is a file"]),
    ("copy-task-out-cannot-be-created", lambda t, r: copy_argv("/sys/rtrl-fault-test/run"), 2,
     ["cannot create the run directory /sys/rtrl-fault-test/run"]),
    ("copy-task-out-empty", lambda t, r: ["copy-task", "--out", "", *COPY], 2, ["bad --out=''", "a directory path"]),
    # --save-data '' wrote nothing, silently; a file there was an OSError naming no flag, exit 1
    ("copy-task-save-data-empty", lambda t, r: copy_argv(t / "o", "--save-data", ""), 2,
     ["bad --save-data=''", "accepted: a directory path (made if missing), or none"]),
    ("copy-task-save-data-a-file", lambda t, r: copy_argv(t / "o", "--save-data", str(write(t / "file", "x"))), 2,
     ["bad --save-data=", "/file is a file, not a directory; accepted: a directory path"]),
    ("copy-task-save-data-under-a-file", lambda t, r: copy_argv(t / "o", "--save-data", str(write(t / "file", "x") / "d")),
     2, ["bad --save-data=", "/file is a file, not a directory"]),
    ("train-out-empty", lambda t, r: train_argv(""), 2, ["bad --out=''", "a directory path"]),
    ("train-onto-a-copy-task-run", lambda t, r: train_argv(write(t / "c" / "run.json", '{"kind": "copy-task"}').parent),
     2, ["holds a copy-task run (`rtrl copy-task`)", "run.json", "not a training run"]),
    ("train-onto-an-old-copy-task-run", lambda t, r: train_argv(write(t / "c" / "metrics.csv",
                                                                      "step,sequences,epoch\n1,2,3\n").parent),
     2, ["holds a copy-task run", "metrics.csv"]),
    ("eval-a-copy-task-run", lambda t, r: ["eval", str(write(t / "c" / "run.json", '{"kind": "copy-task"}').parent)],
     2, ["holds a copy-task run", "not a training run"]),
    ("run-json-garbage", lambda t, r: train_argv(write(copy_of(r, t) / "run.json", "[1]").parent), 2,
     ["run.json does not say which kind of run", "accepted: a JSON table"]),
    ("run-lock-a-directory", lambda t, r: train_argv((copy_of(r, t) / "run.lock").mkdir() or t / "run"), 2,
     ["run.lock is a directory, not a lock file"]),
    ("metrics-a-directory", lambda t, r: train_argv(_metrics_directory(copy_of(r, t)), "--total-steps", "60"), 2,
     ["metrics.csv cannot be read: a directory, not a file", "left as it is"]),
    ("metrics-a-huge-field", lambda t, r: train_argv(
        write(copy_of(r, t) / "metrics.csv", "step,frames\n" + "1," + "9" * 200_000 + "\n").parent,
        "--total-steps", "60"), 2, ["metrics.csv is not a metrics file", "field larger than field limit"]),
    ("metrics-not-utf8", lambda t, r: train_argv(write(copy_of(r, t) / "metrics.csv", b"step\n\xff\xfe\n").parent,
                                                 "--total-steps", "60"), 2, ["metrics.csv is not a metrics file",
                                                                             "not UTF-8"]),
    ("plot-metrics-not-utf8", lambda t, r: ["plot", str(write(t / "p" / "metrics.csv", b"step\n\xff\n").parent)], 2,
     ["metrics.csv is not a metrics file", "not UTF-8"]),
    ("plot-metrics-a-directory", lambda t, r: ["plot", str(_metrics_directory(write(t / "p" / "x", "").parent))], 2,
     ["metrics.csv cannot be read: a directory"]),
    # --- sizes refused before allocating, with the estimate and the limit
    *[(f"size-{name}", lambda t, r, extra=extra: train_argv(t / "o", *extra), 2,
       ["this run would need at least", "over the memory available now (MemAvailable) of", "refused before allocating"])
      for name, extra in [("hidden-size", ["--hidden-size", "100000"]),
                          ("stem-hidden-size", ["--stem", "mlp", "--stem-hidden-size", "100000000"]),
                          ("unroll-length", ["--unroll-length", "100000000", "--total-steps", "1000000000"]),
                          ("lstm-batch", ["--core", "lstm", "--batch-size", "100000000", "--envs-per-actor", "1",
                                          "--total-steps", "1000000000"])]],
    # an exact stack's O(N^3) sensitivities: the hint names per-layer RTRL, which keeps O(N^2) per layer
    ("size-exact-stack", lambda t, r: train_argv(t / "o", "--num-layers", "3", "--hidden-size", "2048"), 2,
     ["this run would need at least", "RTRL sensitivities", "or --multilayer='per-layer' (each layer's own RTRL"]),
    ("size-copy-task-hidden", lambda t, r: copy_argv(t / "o", "--hidden-size", "100000"), 2,
     ["this run would need at least", "parameters", "--hidden-size=100000"]),
    ("size-copy-task-train-size", lambda t, r: copy_argv(t / "o", "--train-size", "1000000000"), 2,
     ["this run would need at least", "data set", "--train-size=1000000000"]),
    # --- values whose checks state a range the code can run
    *[(f"range-{flag}", lambda t, r, flag=flag, value=value: train_argv(t / "o", f"--{flag}", value), 2,
       [f"bad --{flag}=", accepted])
      for flag, value, accepted in [("lr", "1e300", "up to 1e30"), ("forget-bias", "1e308", "from -100 to 100"),
                                    ("chrono-max", "1e300", "at most 1e7"), ("init-std", "1e300", "up to 100"),
                                    ("sensitivity-memory-gib", "1e300", "below 2**20"),
                                    ("num-buffers", "100000", "up to 4096"),
                                    ("learner-threads", "100000", "the CPUs of this machine"),
                                    # above float32's range the stream learner crashed (an 'unexpected RuntimeError')
                                    ("entropy-cost", "1e39", "a finite number >= 0 up to 1e30"),
                                    ("baseline-cost", "1e39", "a finite number >= 0 up to 1e30")]],
    ("range-copy-task-lr", lambda t, r: copy_argv(t / "o", "--lr", "1e300"), 2, ["bad --lr=1e+300", "up to 1e30"]),
    # --- devices this machine has
    *[(f"device-{value}", lambda t, r, value=value: train_argv(t / "o", "--device", value), 2,
       [f"bad --device='{value}'", "this machine has: cpu"])
      for value in ["cpu-foo", "cuda:abc", "cpu:3"] + ([] if torch.cuda.is_available() else ["cuda", "cuda:1"]) +
      ([] if torch.backends.mps.is_available() else ["mps"])],
    # --- flags that would do nothing
    ("ray-address-with-local", lambda t, r: train_argv(t / "o", "--ray-address", "127.0.0.1:1"), 2,
     ["--ray-address='127.0.0.1:1' does nothing with --backend='local'"]),
]


def _metrics_directory(run: Path) -> Path:
    (run / "metrics.csv").unlink(missing_ok=True)
    (run / "metrics.csv").mkdir()
    return run


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_ends_with_one_clear_message(tmp_path, trained, capsys, case):
    name, make_argv, expected_code, pieces = case
    if "cannot-be-created" in name and not Path("/sys").is_dir():
        pytest.skip("needs Linux's /sys")
    code, text = run_cli(capsys, make_argv(tmp_path, trained))
    assert code == expected_code, text
    for piece in pieces:
        assert piece in text, text
    assert len([line for line in text.splitlines() if "error:" in line]) == 1, text
    if name.startswith("eval-checkpoint-config-"):   # rtrl eval has no such flag
        assert "--" not in text, text


@pytest.mark.parametrize("name, content", [("metrics.csv", "loss,accuracy\n0.5,0.9\n"), ("curve.png", "mine")])
def test_a_directory_holding_files_of_no_run_is_left_as_it_was(tmp_path, capsys, name, content):
    """A directory with no run of rtrl in it (no run.json, nothing only rtrl writes) holding a file a training run
    would replace: it was overwritten (metrics.csv at the start, curve.png at the end)."""
    mine = tmp_path / "mine"
    write(mine / name, content)
    write(mine / "notes.txt", "notes")
    before = files(mine)
    code, text = run_cli(capsys, train_argv(mine, "--total-steps", "60"))
    assert code == 2 and f"{mine} holds {name} but no run of rtrl (no run.json)" in text, text
    assert "nothing in it was changed" in text and f"move {name} out of it" in text, text
    assert files(mine) == before


@pytest.mark.parametrize("learner", ["impala", "stream"])
def test_the_environments_widths_are_counted_before_the_model_is_allocated(tmp_path, capsys, monkeypatch, learner):
    """The config's size check counts an observation of one value; the run's real model was built (allocated) before
    the check with its real sizes: memory:delayed_recall?cues=10**9 (an observation of 10**9 values) was an
    'unexpected RuntimeError' of the allocator (exit 1), and sizes that fit the allocator could exhaust the memory.
    Here: 10**5 observation values (with the identity stem, the core's input), 64 MiB available."""
    import rtrl.runtime.session as session_module
    import rtrl.runtime.sizes as sizes_module

    monkeypatch.setattr(sizes_module, "available_memory", lambda: 64 * 2 ** 20)
    monkeypatch.setattr(session_module, "build_agent", lambda *a: pytest.fail("the model was built before the check"))
    env = "memory:delayed_recall?cues=100000"
    argv = (train_argv(tmp_path / "o", "--env", env) if learner == "impala" else
            ["train", "--out", str(tmp_path / "o"), "--learner", "stream", "--env", env, "--stem", "identity",
             "--hidden-size", "8", "--total-steps", "40", "--no-progress", "--no-plot"])
    code, text = run_cli(capsys, argv)
    assert code == 2 and "this run would need at least" in text and "refused before allocating" in text, text


def test_copy_task_leaves_a_training_run_as_it_was(tmp_path, trained, capsys):
    run = copy_of(trained, tmp_path)
    before = files(run)
    code, _ = run_cli(capsys, copy_argv(run))
    assert code == 2 and files(run) == before


def test_every_command_takes_the_lock_of_a_running_training(tmp_path, trained, capsys):
    """A run holds run.lock (here: this process, through another file description): train, copy-task and eval
    are all refused with its pid, and nothing in the directory changes."""
    run = copy_of(trained, tmp_path)
    with DirectoryLock(run / "run.lock"):
        before = files(run)
        for argv in (train_argv(run, "--total-steps", "60"), copy_argv(run), ["eval", str(run)]):
            code, text = run_cli(capsys, argv)
            assert code == 2 and f"is in use by another run (pid {os.getpid()}" in text, (argv, text)
        assert files(run) == before


def test_each_command_records_its_kind_and_runs_again_on_its_own_directory(tmp_path, capsys):
    assert run_cli(capsys, copy_argv(tmp_path / "c"))[0] == 0
    assert held_kind(tmp_path / "c")[0] == "copy-task"
    assert run_cli(capsys, copy_argv(tmp_path / "c"))[0] == 0   # its own kind: runs again
    assert run_cli(capsys, train_argv(tmp_path / "t"))[0] == 0
    assert json.loads((tmp_path / "t" / "run.json").read_text()) == {"kind": "train"}
    assert run_cli(capsys, ["eval", str(tmp_path / "t"), "--episodes", "2"])[0] == 0
    assert not (tmp_path / "t" / "run.lock").exists() and not (tmp_path / "c" / "run.lock").exists()


def test_the_guard_refuses_another_kind_and_leaves_no_directory_it_created(tmp_path):
    with RunGuard(tmp_path / "a", "train") as guard:
        guard.record()
    with pytest.raises(ValueError, match="holds a training run"):
        RunGuard(tmp_path / "a", "copy-task").acquire()
    with pytest.raises(ValueError, match="in use by another run"):
        with RunGuard(tmp_path / "b", "train"):
            RunGuard(tmp_path / "b", "train").acquire()
    assert not (tmp_path / "b").exists()


def test_a_checkpoint_of_the_learner_form_still_loads(tmp_path, trained):
    """The learner's state under "learner" (the optimizer's moved there) is accepted as "optimizer" was."""
    from rtrl.runtime.checkpoints import load_checkpoint
    run = with_checkpoint(trained, tmp_path, learner={"optimizer": {}})
    assert "learner" in load_checkpoint(run / "checkpoint.pt")


def test_copy_task_threads_beyond_the_machine_are_clamped_with_a_warning(tmp_path, capsys):
    code, text = run_cli(capsys, copy_argv(tmp_path / "c", "--threads", "100000"))
    assert code == 0 and f"threads=100000 is more than the {os.cpu_count()} CPUs of this machine" in text, text


def test_non_finite_initial_weights_are_refused_before_anything_is_written(tmp_path):
    from rtrl.runtime.config import check_initial_weights
    from rtrl.settings import SettingError
    model = torch.nn.Linear(2, 2)
    check_initial_weights(model)
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(SettingError, match=r"initial weights are not finite \(NaN or infinity in weight\)"):
        check_initial_weights(model)


def test_load_stem_with_the_identity_stem_says_it_does_nothing(tmp_path, trained, capsys):
    code, text = run_cli(capsys, train_argv(tmp_path / "o", "--load-stem", str(trained)))
    assert code == 0 and "warning: load_stem=" in text and "does nothing with stem=identity" in text, text


def _started(argv, **kwargs):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    return subprocess.Popen([sys.executable, "-m", "rtrl", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 1.2])
def test_a_ctrl_c_while_the_command_starts_exits_130_at_once(tmp_path, delay):
    process = _started(train_argv(tmp_path / "run", "--total-steps", "100000000"))
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=20)
    assert process.returncode == 130 and "Traceback" not in err, err
    assert "interrupted" in err


USER_ENVS = '''
import gymnasium as gym, numpy as np

class Ctor(gym.Env):
    def __init__(self):
        raise ValueError("boom in the constructor")

class Reset(gym.Env):
    observation_space = gym.spaces.Box(-1, 1, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        raise RuntimeError("boom in reset")

gym.register("RtrlCtor-v0", entry_point="rtrl_user_envs:Ctor")
gym.register("RtrlReset-v0", entry_point="rtrl_user_envs:Reset")
'''


@pytest.mark.parametrize("module, env_id, pieces", [
    ("rtrl_raises_at_import", "RtrlX-v0", ["the module 'rtrl_raises_at_import'", "raised when imported",
                                           "RuntimeError: boom at import"]),
    ("rtrl_user_envs", "RtrlCtor-v0", ["the env 'rtrl_user_envs:Ctor'", "raised in its constructor",
                                       "ValueError: boom in the constructor"]),
    ("rtrl_user_envs", "RtrlReset-v0", ["the env 'rtrl_user_envs.Reset'", "raised in reset() at start-up",
                                        "RuntimeError: boom in reset"]),
])
def test_a_users_env_that_raises_is_named_with_its_error_and_traceback_file(tmp_path, capsys, monkeypatch, module,
                                                                           env_id, pieces):
    write(tmp_path / "mods" / "rtrl_raises_at_import.py", "raise RuntimeError('boom at import')\n")
    write(tmp_path / "mods" / "rtrl_user_envs.py", USER_ENVS)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    code, text = run_cli(capsys, train_argv(tmp_path / "run", "--env", f"gym:{module}:{env_id}"))
    assert code == 2 and all(piece in text for piece in pieces), text
    trace = Path(text.split("(traceback: ")[1].split(")")[0])
    assert "Traceback" in trace.read_text() and "boom" in trace.read_text()
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text, pieces", [
    ("max-nonfinite = 16\nmax_nonfinite = 32\n", ["sets max_nonfinite twice", "'max-nonfinite' = 16",
                                                  "'max_nonfinite' = 32"]),
    ("max_nonfinite = true\n", ["bad max_nonfinite=True (in ", "c.toml); accepted: a positive integer"]),
])
def test_settings_files_two_spellings_and_values_of_the_wrong_type(tmp_path, capsys, text, pieces):
    code, out = run_cli(capsys, train_argv(tmp_path / "run", "--config", str(write(tmp_path / "c.toml", text))))
    assert code == 2 and all(piece in out for piece in pieces), out


@pytest.mark.parametrize("name, text, pieces", [
    # TOML refuses a repeated key itself; YAML and JSON kept the last one, silently
    ("c.yaml", "max_nonfinite: 16\nseed: 3\nmax_nonfinite: 32\n",
     ["config file", "c.yaml' sets 'max_nonfinite' twice (lines 1 and 3); accepted: each setting once"]),
    ("c.yaml", "env_options:\n  delay: 5\n  delay: 7\n", ["c.yaml' sets 'delay' twice (lines 2 and 3)"]),
    ("c.json", '{"max_nonfinite": 16, "max_nonfinite": 32}',
     ["c.json' sets 'max_nonfinite' twice (16 and 32); accepted: each setting once"]),
])
def test_a_setting_repeated_in_a_settings_file_is_refused(tmp_path, capsys, name, text, pieces):
    code, out = run_cli(capsys, train_argv(tmp_path / "run", "--config", str(write(tmp_path / name, text))))
    assert code == 2 and all(piece in out for piece in pieces), out


def test_yaml_merge_keys_still_override(tmp_path):
    from rtrl.settings import load_settings_file
    text = "base: &base {seed: 1, lr: 0.1}\nenv_options:\n  <<: {delay: 5, cues: 2}\n  delay: 7\n"
    assert load_settings_file(write(tmp_path / "c.yaml", text))["env_options"] == {"delay": 7, "cues": 2}


def _suite_run_with_result(tmp: Path, content: str | None) -> list[str]:
    """A suite (quick tier, one run) whose run directory holds ``content`` as result.json (None: a directory)."""
    from rtrl.bench import suite
    argv = ["--tier", "quick", "--cores", "tbptt-elstm", "--seeds", "0", "--runs", str(tmp / "runs"), "--doc", "",
            "--results", ""]
    cfg = suite.SuiteConfig(tier="quick", cores="tbptt-elstm", seeds="0", runs=str(tmp / "runs"), doc="", results="")
    job = suite.plan(cfg)[0]
    argv += ["--tasks", job.task]
    out = Path(job.out)
    out.mkdir(parents=True)
    (out / "result.json").mkdir() if content is None else write(out / "result.json", content)
    return ["bench", "suite", *argv]


BENCH_CASES = [
    ("throughput-env", lambda t: ["bench", "throughput", "--env", "foo:bar"], ["bad --env='foo:bar'", "known prefixes"]),
    ("throughput-preset", lambda t: ["bench", "throughput", "--preset", "nope"], ["bad --preset='nope'", "memory"]),
    ("throughput-train-flag", lambda t: ["bench", "throughput", "--cores", "ff", "--", "--hidden-size", "0"],
     ["bad --hidden-size=0; accepted: a positive integer"]),
    ("layers-hidden-sizes", lambda t: ["bench", "layers", "--hidden-sizes", "0"], ["bad --hidden-sizes=[0]"]),
    ("layers-paper-memory", lambda t: ["bench", "layers", "--paper-memory", "1e300"], ["bad --paper-memory=1e+300"]),
    ("layers-record-under-a-file", lambda t: ["bench", "layers", "--record", str(write(t / "f", "x") / "r.md")],
     ["r.md cannot be written", "is a file, not a directory"]),
    ("layers-record-not-utf8", lambda t: ["bench", "layers", "--record", str(write(t / "r.md", b"\xff\xfe"))],
     ["r.md is not a markdown report: it is not UTF-8 text"]),
    ("suite-doc-not-utf8", lambda t: ["bench", "suite", "--doc", str(write(t / "d.md", b"\xff")), "--runs", str(t)],
     ["--doc: ", "d.md is not a markdown report"]),
    *[(f"suite-result-{label}", lambda t, content=content: _suite_run_with_result(t, content),
       ["result.json is not a result of the suite", why])
      for label, content, why in [("a-list", "[1]", "it holds a list"), ("empty", "", "empty"),
                                  ("invalid", "{oops", "not valid JSON"), ("no-fields", "{}", "it has no task"),
                                  ("a-directory", None, "a directory")]],
    ("plot-out-jpg", lambda t: ["plot", str(t), "--out", "x.jpg"], ["bad --out='x.jpg'", "ending in .png"]),
]


@pytest.mark.parametrize("case", BENCH_CASES, ids=[c[0] for c in BENCH_CASES])
def test_bench_and_plot_input_ends_with_one_clear_message(tmp_path, capsys, case):
    name, make_argv, pieces = case
    code, text = run_cli(capsys, make_argv(tmp_path))
    assert code == 2, text
    assert all(piece in text for piece in pieces), text


def test_an_unreachable_ray_address_fails_fast_naming_it(tmp_path, capsys):
    pytest.importorskip("ray")
    start = time.monotonic()
    code, text = run_cli(capsys, train_argv(tmp_path / "run", "--backend", "ray", "--num-actors", "2",
                                            "--ray-address", "127.0.0.1:1"))
    assert code == 2 and "could not reach a Ray cluster at --ray-address='127.0.0.1:1'" in text, text
    assert "127.0.0.1:1" in text and time.monotonic() - start < 30
    assert not (tmp_path / "run").exists()


def test_ray_addresses_are_parsed_for_the_probe():
    from rtrl.runtime.backends.ray import ray_host_port
    assert ray_host_port("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert ray_host_port("ray://head:10001") == ("head", 10001)
    assert ray_host_port("auto") is None


def _session_processes(session: str) -> list[int]:
    """Processes whose command line or open files name the Ray session ``session`` (Ray renames its agents)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if session in command or any(session in link for link in links):
            found.append(int(pid))
    return found


@pytest.mark.slow
@pytest.mark.ray
def test_no_ray_process_outlives_a_driver_killed_by_sigkill(tmp_path):
    """SIGKILL runs no cleanup in the driver: the private Ray's watchdog stops the session's processes (the
    dashboard and runtime-env agents included, which Ray itself leaves running) within seconds."""
    out = tmp_path / "run"
    driver = subprocess.Popen([sys.executable, "-m", "rtrl", *train_argv(out, "--backend", "ray", "--num-actors", "1",
                                                                         "--total-steps", "100000000")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    session = None
    try:
        deadline = time.monotonic() + 120
        while session is None and time.monotonic() < deadline:   # the driver's session, once Ray has started
            time.sleep(1.0)
            for link in Path(f"/proc/{driver.pid}/fd").iterdir() if driver.poll() is None else []:
                try:
                    target = os.readlink(link)
                except OSError:
                    continue
                if "/session_" in target:
                    session = target.split("/session_")[1].split("/")[0]
                    break
        assert session is not None, "the driver never started its Ray session"
        session = "session_" + session
        while not (out / "metrics.csv").exists() and time.monotonic() < deadline:
            time.sleep(0.5)   # training under way: every Ray process has started
        assert _session_processes(session)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.monotonic() + 60   # Ray's processes: gone within a minute
    while _ray_processes(session) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert _ray_processes(session) == [], _described(_ray_processes(session))
    # the watchdog itself (its own line names the session) sweeps on until 10 sweeps in a row find nothing, at
    # most 2 minutes: on a loaded machine (a fresh clone's make test beside trainings) that took over a minute
    deadline = time.monotonic() + 130
    while _session_processes(session) and time.monotonic() < deadline:
        time.sleep(1.0)
    assert _session_processes(session) == [], _described(_session_processes(session))


def _ray_processes(session: str) -> list[int]:
    """The session's processes but its watchdog (``rtrl.runtime.backends.ray._WATCHDOG``, run with ``python -c``)."""
    def watchdog(pid: int) -> bool:
        try:
            return b"def belongs(pid)" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False
    return [pid for pid in _session_processes(session) if not watchdog(pid)]


def _described(pids: list[int]) -> str:
    """What each process is, for a failure's message: its state and command line."""
    lines = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            state, command = "gone", ""
        lines.append(f"{pid} [{state}] {command[:300]}")
    return "left running:\n" + "\n".join(lines)
