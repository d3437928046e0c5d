"""Faults and bad input at the command line (issue 14's fault-injection cases, and more).

Every case ends the command with its documented exit code (2: bad input, refused before anything ran;
1: the run failed) and one message without a traceback that names the bad value and, where there is
a list, what is accepted. Crafted files must not run code: the file their unpickling would write must
not appear (``test_the_crafted_files_would_run_code_if_unpickled`` shows that they would).
"""
from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TRAIN_FLAGS, run_cli, train_argv
from rtrl.cli import main
from rtrl.records.lock import DirectoryLock
from rtrl.runtime import run_dir as run_dir_module





@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A finished two-update run of TRAIN_FLAGS (copy it before changing it)."""
    path = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_argv(path)) == 0
    return path


class WritesAFile:
    """Unpickling this calls open(marker, "w"): the marker file appears."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def crafted(path: Path, marker: Path, kind: str) -> Path:
    """A file whose unpickling writes ``marker``: a torch checkpoint with the payload inside, or a plain pickle."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "torch":
        torch.save({"config": {}, "model": {}, "steps": 0, "payload": WritesAFile(marker)}, path)
    else:
        path.write_bytes(pickle.dumps(WritesAFile(marker)))
    return path


@pytest.mark.parametrize("kind", ["torch", "plain"])
def test_the_crafted_files_would_run_code_if_unpickled(tmp_path, kind):
    marker = tmp_path / "ran"
    path = crafted(tmp_path / "evil.pt", marker, kind)
    if kind == "torch":
        torch.load(path, weights_only=False)
    else:
        pickle.loads(path.read_bytes())
    assert marker.exists()


def copy_of(trained: Path, tmp: Path) -> Path:
    shutil.copytree(trained, tmp / "run")
    return tmp / "run"


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def damaged(trained: Path, tmp: Path, how: str) -> Path:
    """A copy of the run whose checkpoint.pt is cut short, random bytes, empty, or a foreign torch file."""
    run = copy_of(trained, tmp)
    data = (run / "checkpoint.pt").read_bytes()
    contents = {"truncated": data[: len(data) // 2], "random": os.urandom(4096), "empty": b""}
    if how == "foreign":
        torch.save({"weights": torch.zeros(3)}, run / "checkpoint.pt")
    else:
        (run / "checkpoint.pt").write_bytes(contents[how])
    return run


def with_nan_weights(trained: Path, tmp: Path) -> Path:
    run = copy_of(trained, tmp)
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=True)
    checkpoint["model"]["policy.weight"].fill_(float("nan"))
    torch.save(checkpoint, run / "checkpoint.pt")
    return run


UNWRITABLE = "/sys/kernel" if os.geteuid() == 0 else None   # root writes anywhere but sysfs

# (id, argv from (tmp_path, trained run), exit code, pieces the message must hold)
CASES = [
    # --- flags
    ("lr-inf", lambda t, r: train_argv(t / "o", "--lr", "inf"), 2, ["bad --lr=inf", "accepted: a positive finite number"]),
    ("lr-nan", lambda t, r: train_argv(t / "o", "--lr", "nan"), 2, ["bad --lr=nan", "accepted: a positive finite number"]),
    ("seed-negative", lambda t, r: train_argv(t / "o", "--seed", "-1"), 2,
     ["bad --seed=-1", "accepted: an integer from 0 to 2**32 - 1"]),
    ("learner-threads-0", lambda t, r: train_argv(t / "o", "--learner-threads", "0"), 2,
     ["bad --learner-threads=0", "accepted: a positive integer"]),
    ("max-nonfinite-0", lambda t, r: train_argv(t / "o", "--max-nonfinite", "0"), 2,
     ["bad --max-nonfinite=0", "accepted: a positive integer"]),
    ("unroll-0", lambda t, r: train_argv(t / "o", "--unroll-length", "0"), 2,
     ["bad --unroll-length=0", "accepted: a positive integer"]),
    ("forget-bias-inf", lambda t, r: train_argv(t / "o", "--forget-bias", "inf"), 2,
     ["bad --forget-bias=inf", "accepted: a finite number"]),
    ("batch-not-a-multiple", lambda t, r: train_argv(t / "o", "--batch-size", "5"), 2,
     ["--batch-size=5 must be a multiple of --envs-per-actor=2"]),
    ("total-steps-below-one-update",
     lambda t, r: train_argv(t / "o", "--envs-per-actor", "100000", "--batch-size", "100000", "--total-steps", "500",
                             "--unroll-length", "10"),
     2, ["--total-steps=500 is less than one learner update", "accepted: at least 1000000"]),
    ("device-tpu", lambda t, r: train_argv(t / "o", "--device", "tpu"), 2,
     ["bad --device='tpu'", "accepted: cpu, cuda, cuda:N, mps"]),
    ("freeze-stem-alone", lambda t, r: train_argv(t / "o", "--freeze-stem"), 2, ["give --load-stem too"]),
    ("core-gru", lambda t, r: train_argv(t / "o", "--core", "gru"), 2, ["invalid choice: 'gru'", "rtrl-elstm"]),
    ("hidden-size-abc", lambda t, r: train_argv(t / "o", "--hidden-size", "abc"), 2, ["invalid int value: 'abc'"]),
    ("reward-clip-maybe", lambda t, r: train_argv(t / "o", "--reward-clip", "maybe"), 2,
     ["expected true or false, got 'maybe'"]),
    ("unknown-flag", lambda t, r: train_argv(t / "o", "--bogus"), 2, ["unrecognized arguments: --bogus"]),
    ("unknown-preset", lambda t, r: train_argv(t / "o", "--preset", "nope"), 2, ["invalid choice: 'nope'", "memory"]),
    ("no-out", lambda t, r: ["train", *TRAIN_FLAGS], 2, ["the following arguments are required: --out"]),
    ("no-command", lambda t, r: [], 2, ["the following arguments are required: COMMAND"]),
    ("eval-num-envs-0", lambda t, r: ["eval", str(r), "--num-envs", "0"], 2,
     ["bad --num-envs=0", "accepted: a positive integer"]),
    ("eval-episodes-0", lambda t, r: ["eval", str(r), "--episodes", "0"], 2,
     ["bad --episodes=0", "accepted: a positive integer, or none"]),
    ("eval-seed-negative", lambda t, r: ["eval", str(r), "--seed", "-5"], 2,
     ["bad --seed=-5", "accepted: an integer from 0 to 2**32 - 1"]),
    ("eval-protocol-mujoco", lambda t, r: ["eval", str(r), "--protocol", "mujoco"], 2,
     ["invalid choice: 'mujoco'", "atari"]),
    ("plot-no-run", lambda t, r: ["plot", str(t / "nowhere")], 2, ["no metrics file at", "nowhere"]),
    # --- config files
    ("yaml-syntax", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.yaml", "lr: [1\n"))), 2,
     ["c.yaml' is not valid YAML", "line 2"]),
    ("yaml-seed-text", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.yaml", "seed: abc\n"))), 2,
     ["bad seed='abc' (in {t}/c.yaml)", "accepted: an integer from 0 to 2**32 - 1"]),
    ("yaml-device-number", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.yaml", "device: 5\n"))), 2,
     ["bad device=5 (in {t}/c.yaml)", "accepted: a string"]),
    ("yaml-env-options-number",
     lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.yaml", "env_options: 5\n"))), 2,
     ["bad env_options=5 (in {t}/c.yaml)", "accepted: a table of key = value"]),
    ("yaml-a-list", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.yaml", "- 1\n- 2\n"))), 2,
     ["c.yaml' must hold a table of settings, got list"]),
    ("toml-syntax", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.toml", "lr = \n"))), 2,
     ["c.toml' is not valid TOML", "line 1"]),
    ("toml-not-text", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.toml", b"\xff\xfe\x00"))), 2,
     ["c.toml' cannot be read", "utf-8"]),
    ("json-syntax", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.json", '{"lr": '))), 2,
     ["c.json' is not valid JSON", "line 1"]),
    ("config-unknown-key", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.toml", "bogus = 1\n"))), 2,
     ["unknown settings ['bogus'] in {t}/c.toml", "accepted: ", "batch_size"]),
    ("config-unknown-format", lambda t, r: train_argv(t / "o", "--config", str(write(t / "c.ini", "[x]\n"))), 2,
     ["unknown format '.ini'", "accepted: .toml, .yaml, .yml, .json"]),
    ("config-is-a-directory", lambda t, r: train_argv(t / "o", "--config", str(t)), 2,
     [f"config file '{{t}}' does not exist or is not a file"]),
    ("config-missing", lambda t, r: train_argv(t / "o", "--config", str(t / "none.toml")), 2,
     ["none.toml' does not exist or is not a file"]),
    # --- env ids and options
    ("env-unknown-prefix", lambda t, r: train_argv(t / "o", "--env", "atar:Pong"), 2,
     ["'atar'", "known prefixes: atari, dmlab, gym"]),
    ("env-without-prefix", lambda t, r: train_argv(t / "o", "--env", "Pong"), 2, ["'Pong'", "prefix:name"]),
    ("env-unknown-mask", lambda t, r: train_argv(t / "o", "--env", "mujoco:Hopper-v5?observe=speed"), 2,
     ["observe='speed'", "accepted: all, position, velocity"]),
    ("env-option-type", lambda t, r: train_argv(t / "o", "--env", "memory:delayed_recall?delay=abc"), 2,
     ["delay='abc'", "must be an integer"]),
    ("env-unknown-option", lambda t, r: train_argv(t / "o", "--env", "memory:delayed_recall?bogus=1"), 2,
     ["'bogus'", "accepted options: cues, delay"]),
    ("env-malformed-option", lambda t, r: train_argv(t / "o", "--env", "memory:delayed_recall?delay"), 2,
     ["malformed option 'delay'", "key=value"]),
    ("env-unknown-gym-id", lambda t, r: train_argv(t / "o", "--env", "gym:CartPol-v1"), 2,
     ["'CartPol-v1'", "close matches: CartPole-v1"]),
    ("env-module-missing", lambda t, r: train_argv(t / "o", "--env", "gym:no_such_module_rtrl:Env-v0"), 2,
     ["cannot import the module 'no_such_module_rtrl'", "PYTHONPATH"]),
    ("env-module-registers-nothing", lambda t, r: train_argv(t / "o", "--env", "gym:json:RtrlNothing-v0"), 2,
     ["unknown Gymnasium env 'RtrlNothing-v0'"]),
    ("env-python-without-env-fn", lambda t, r: train_argv(t / "o", "--env", "python:mine"), 2,
     ["'python:mine'", "env_fn", "gym:<module>:<id>"]),
    ("env-unknown-procgen-game", lambda t, r: train_argv(t / "o", "--env", "procgen:nogame"), 2,
     ["'nogame'", "coinrun"]),
    ("env-dmlab-not-installed", lambda t, r: train_argv(t / "o", "--env", "dmlab:rooms_watermaze"), 2,
     ["'deepmind_lab'", "github.com/deepmind/lab"]),
    # --- run directories
    ("out-is-a-file", lambda t, r: train_argv(write(t / "file", "x")), 2,
     ["is a file, not a run directory", "use another run directory (--out)"]),
    ("out-under-a-file", lambda t, r: train_argv(write(t / "file", "x") / "run"), 2,
     ["cannot create the run directory", "/file is a file"]),
    ("out-cannot-be-created", lambda t, r: train_argv("/sys/rtrl-fault-test/run"), 2,
     ["cannot create the run directory /sys/rtrl-fault-test/run"]),
    ("config-json-corrupt", lambda t, r: train_argv(write(copy_of(r, t) / "config.json", "{oops").parent), 2,
     ["config.json cannot be read", "left as it is", "--force", "another run directory (--out)"]),
    ("config-json-a-list", lambda t, r: train_argv(write(copy_of(r, t) / "config.json", "[1]").parent), 2,
     ["config.json cannot be read", "holds a list", "--force"]),
    ("config-differs", lambda t, r: train_argv(copy_of(r, t), "--hidden-size", "16"), 2,
     ["different config (hidden_size: 8 -> 16)", "--force"]),
    ("force-onto-another-model", lambda t, r: train_argv(copy_of(r, t), "--hidden-size", "16", "--force"), 2,
     ["does not fit these settings (core.weight_x is (16, 5) there, (32, 5) here;", "another run directory (--out)"]),
    ("eval-not-a-directory", lambda t, r: ["eval", str(t / "nowhere")], 2, ["nowhere is not a directory"]),
    ("eval-no-checkpoint", lambda t, r: ["eval", str(t)], 2, ["has no checkpoint.pt"]),
    # --- checkpoints
    *[(f"{through}-checkpoint-{how}", lambda t, r, how=how, argv=argv: argv(t, damaged(r, t, how)), 2,
       ["checkpoint.pt", reason, *extra])
      for how, reason in [("truncated", "not a complete checkpoint file"), ("random", "not a complete checkpoint file"),
                          ("empty", "the file is empty"), ("foreign", "is not a checkpoint of `rtrl train`")]
      for through, argv, extra in [
          ("eval", lambda t, run: ["eval", str(run)], []),
          ("resume", lambda t, run: train_argv(run, "--total-steps", "60"),
           ["use another run directory (--out), or move checkpoint.pt out of it"]),
          ("load-stem", lambda t, run: train_argv(t / "o", "--load-stem", str(run)), ["--load-stem: "])]],
    ("force-onto-another-core", lambda t, r: train_argv(copy_of(r, t), "--core", "lstm", "--force"), 2,
     ["does not fit these settings (", "there", "another run directory (--out)"]),
    ("eval-nan-weights", lambda t, r: ["eval", str(with_nan_weights(r, t))], 2,
     ["holds non-finite weights", "policy.weight"]),
    ("resume-nan-weights", lambda t, r: train_argv(with_nan_weights(r, t), "--total-steps", "60"), 2,
     ["holds non-finite weights", "policy.weight", "another run directory (--out)"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_ends_with_one_clear_message(tmp_path, trained, capsys, case):
    name, make_argv, expected_code, pieces = case
    if name == "out-cannot-be-created" and not Path("/sys").is_dir():
        pytest.skip("needs Linux's /sys")
    code, text = run_cli(capsys, make_argv(tmp_path, trained))
    assert code == expected_code, text
    for piece in pieces:
        assert piece.replace("{t}", str(tmp_path)) in text, text
    assert len([line for line in text.splitlines() if "error:" in line]) == 1, text


def test_a_second_run_on_a_busy_directory_is_refused_with_the_first_ones_pid(tmp_path, trained, capsys):
    """The lock as another process holds it (a second open file description; flock refuses it the same)."""
    run = copy_of(trained, tmp_path)
    with DirectoryLock(run / "run.lock"):
        code, text = run_cli(capsys, train_argv(run, "--total-steps", "60"))
    assert code == 2 and f"is in use by another run (pid {os.getpid()}, started " in text, text
    assert "wait for it to end or stop it; use another run directory (--out)" in text
    assert main(train_argv(run, "--total-steps", "60", "--force")) == 0   # released: the run resumes


def test_a_refused_run_changes_nothing_in_its_directory(tmp_path, trained, capsys):
    """--force onto a model of another shape: refused before config.json (or anything else) is rewritten."""
    run = copy_of(trained, tmp_path)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    code, _ = run_cli(capsys, train_argv(run, "--hidden-size", "16", "--force"))
    assert code == 2
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_an_unwritable_run_directory_is_refused_at_start(tmp_path, capsys):
    directory = Path(UNWRITABLE) if UNWRITABLE else tmp_path / "read-only"
    if UNWRITABLE and not directory.is_dir():
        pytest.skip(f"root can write anywhere here but in sysfs, and there is no {UNWRITABLE}")
    if UNWRITABLE is None:
        directory.mkdir()
        directory.chmod(0o555)
    code, text = run_cli(capsys, train_argv(directory))
    assert code == 2 and f"cannot write in the run directory {directory}" in text, text


@pytest.mark.parametrize("module, prefix, env_id, install", [
    ("ale_py", "atari", "atari:Pong", 'pip install "ale-py==0.12.*"'),
    ("procgen", "procgen", "procgen:coinrun", "pip install procgen2==0.10.7"),
    ("popgym", "popgym", "popgym:RepeatPreviousEasy", "pip install popgym==1.0.7"),
    ("minigrid", "minigrid", "minigrid:MiniGrid-MemoryS7-v0", 'pip install "minigrid==3.2.*"'),
])
def test_a_missing_env_package_names_its_install_command_and_leaves_no_directory(tmp_path, capsys, monkeypatch,
                                                                               module, prefix, env_id, install):
    monkeypatch.setitem(sys.modules, module, None)   # `import <module>` now fails, as if not installed
    code, text = run_cli(capsys, train_argv(tmp_path / "run", "--env", env_id))
    assert code == 2, text
    assert f"{prefix}: environments need the Python package '{module}'" in text and install in text
    assert not (tmp_path / "run").exists()


def test_a_nearly_full_disk_is_refused_at_start(tmp_path, capsys, monkeypatch):
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(run_dir_module.shutil, "disk_usage", lambda path: usage._replace(free=1_000_000))
    code, text = run_cli(capsys, train_argv(tmp_path / "run"))
    assert code == 2 and "only 1.0 MB are free on the file system of" in text and "free some space" in text, text
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("kind", ["torch", "plain"])
@pytest.mark.parametrize("through", ["eval", "load-stem-file", "load-stem-dir", "resume"])
def test_a_crafted_checkpoint_runs_no_code(tmp_path, trained, capsys, kind, through):
    marker = tmp_path / "ran"
    if through == "resume":
        run = copy_of(trained, tmp_path)
        crafted(run / "checkpoint.pt", marker, kind)
        argv = train_argv(run, "--total-steps", "60")
    else:
        path = crafted(tmp_path / "other" / "checkpoint.pt", marker, kind)
        argv = (["eval", str(path.parent)] if through == "eval" else
                train_argv(tmp_path / "o", "--load-stem", str(path if through == "load-stem-file" else path.parent)))
    code, text = run_cli(capsys, argv)
    assert code == 2, text
    # torch's reader stops at the GLOBAL of a crafted checkpoint, and at the first unknown opcode of a plain pickle
    refusal = "loading it could run code; refused" if kind == "torch" else "not written by torch.save); nothing in it was run"
    assert "checkpoint.pt cannot be loaded" in text and refusal in text, text
    assert not marker.exists()


def test_a_full_disk_during_a_checkpoint_ends_the_run_and_keeps_the_last_checkpoint(tmp_path, trained, capsys):
    """checkpoint.pt.tmp points at /dev/full: the kernel's ENOSPC on the write, as on a full disk."""
    if not Path("/dev/full").exists():
        pytest.skip("needs /dev/full")
    run = copy_of(trained, tmp_path)
    before = (run / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt.tmp").symlink_to("/dev/full")
    code, text = run_cli(capsys, train_argv(run, "--total-steps", "80", "--checkpoint-interval", "0.001", "--force"))
    assert code == 1, text
    assert f"{run / 'checkpoint.pt'}: No space left on device; the previous checkpoint.pt is kept" in text, text
    assert (run / "checkpoint.pt").read_bytes() == before and not (run / "checkpoint.pt.tmp").exists()


@pytest.mark.slow
def test_the_real_process_prints_one_line_and_its_exit_code(tmp_path):
    """Through `python -m rtrl`: --version, and a missing package (DeepMind Lab) without a traceback."""
    version = subprocess.run([sys.executable, "-m", "rtrl", "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("rtrl "), version
    result = subprocess.run([sys.executable, "-m", "rtrl", *train_argv(tmp_path / "run", "--env", "dmlab:rooms_watermaze")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("rtrl train: error: dmlab: environments need the Python package 'deepmind_lab'")
    assert not (tmp_path / "run").exists()


def test_an_unexpected_error_is_one_line_and_its_traceback_goes_to_a_file(tmp_path, capsys, monkeypatch):
    import rtrl.cli.train as train_command

    def broken(*args, **kwargs):
        raise RuntimeError("an rtrl bug")

    monkeypatch.setattr(train_command, "train", broken)
    (tmp_path / "run").mkdir()
    code, text = run_cli(capsys, train_argv(tmp_path / "run"), unexpected=True)
    trace = tmp_path / "run" / "rtrl-train-error.txt"
    assert code == 1 and text == f"rtrl train: error: unexpected RuntimeError: an rtrl bug (traceback: {trace})\n"
    assert "Traceback" in trace.read_text() and "an rtrl bug" in trace.read_text()


def test_a_default_that_gives_way_is_a_note_on_stderr(tmp_path, capsys):
    argv = train_argv(tmp_path / "run")
    at = argv.index("--envs-per-actor")
    del argv[at:at + 2]   # batch 4 and the default envs_per_actor 16
    code, text = run_cli(capsys, argv)
    assert code == 0 and "rtrl train: note: envs_per_actor=4 chosen: batch_size=4 is not a multiple of " \
                         "envs_per_actor=16, which was not set" in text, text
