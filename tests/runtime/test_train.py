"""`rtrl train`: checkpoint-resume, settings from presets, files and flags (and their errors), and
end-to-end runs of every core through training and evaluation."""
import csv
import json
import logging

import pytest
import torch

from conftest import MEMORY, small_config
from rtrl.cli import main
from rtrl.models import CORES
from rtrl.runtime.backends import InlineBackend
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.envs import EnvSpec
from rtrl.runtime.config import build_agent, resolve_config
from rtrl.runtime.run_dir import RunDirectory
from rtrl.runtime.learners import ImpalaLearner
from rtrl.runtime.session import Progress
from rtrl.runtime.train import train
from rtrl.settings import SettingError


class InterruptingBackend(InlineBackend):
    """The inline backend, but Ctrl-C arrives after ``limit`` batches."""

    limit = 3

    def __init__(self, cfg, spec, model):
        super().__init__(cfg, spec, model)
        self.count = 0

    def next_batch(self):
        self.count += 1
        if self.count > self.limit:
            raise KeyboardInterrupt
        return super().next_batch()


def test_checkpoint_resume_keeps_step_counters_and_optimizer_state(tmp_path, caplog):
    cfg = small_config(total_steps=200)  # 10 updates of T·B = 20 steps
    summary = train(cfg, tmp_path, backend_factory=InterruptingBackend, progress=False)
    assert not summary["finished"] and summary["steps"] == 60
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["steps"] == 60 and ckpt["updates"] == 3
    assert all(s["step"] == 3 for s in ckpt["learner"]["optimizer"]["state"].values())
    summary = train(cfg, tmp_path, progress=False)  # resume
    assert summary["finished"] and summary["steps"] == 200
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert ckpt["updates"] == 10
    assert all(s["step"] == 10 for s in ckpt["learner"]["optimizer"]["state"].values())  # optimizer state carried over
    with open(tmp_path / "metrics.csv") as f:
        steps = [int(float(r["step"])) for r in csv.DictReader(f)]
    assert steps == sorted(steps) and steps[-1] == 200 and len(set(steps)) == len(steps)
    assert json.loads((tmp_path / "config.json").read_text()) == cfg.to_dict()
    # a different config in the same directory is an error unless --force
    with pytest.raises(SettingError, match="hidden_size: 8 -> 16"):
        train(small_config(total_steps=200, hidden_size=16), tmp_path, progress=False)
    # the learning rate decays over total_steps: a longer budget is another run, refused with the reason
    with pytest.raises(SettingError, match=r"\(total_steps: 200 -> 300\); this learner's steps follow total_steps"):
        train(small_config(total_steps=300), tmp_path, progress=False)
    summary = train(small_config(total_steps=300), tmp_path, force=True, progress=False)
    assert summary["steps"] == 300
    # a finished run given other settings with force: nothing is trained, and it says so (it said nothing, the
    # settings that were to "win" recorded nowhere)
    before = (tmp_path / "config.json").read_text()
    with caplog.at_level(logging.INFO, logger="rtrl"):
        summary = train(small_config(total_steps=300, lr=1e-3), tmp_path, force=True, progress=False)
    assert summary["steps"] == 300 and (tmp_path / "config.json").read_text() == before
    assert f"{tmp_path} holds a finished run (300 steps of total_steps=300): nothing was trained; the forced " \
           "settings were not applied (its config.json is unchanged)" in caplog.text


def test_passes_of_minibatches_take_their_steps_and_resume_with_the_shuffle(tmp_path):
    """2 passes of 2 minibatches: 4 optimizer steps per update, through an interruption and a resume."""
    cfg = small_config(total_steps=200, update_epochs=2, minibatches=2, policy_clip=0.2)
    summary = train(cfg, tmp_path, backend_factory=InterruptingBackend, progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert not summary["finished"] and ckpt["updates"] == 3
    assert all(s["step"] == 12 for s in ckpt["learner"]["optimizer"]["state"].values())
    shuffle = ckpt["learner"]["shuffle"]
    assert not torch.equal(shuffle, torch.Generator().manual_seed(cfg.seed).get_state())   # it has moved
    summary = train(cfg, tmp_path, progress=False)
    ckpt = load_checkpoint(tmp_path / "checkpoint.pt")
    assert summary["finished"] and ckpt["updates"] == 10
    assert all(s["step"] == 40 for s in ckpt["learner"]["optimizer"]["state"].values())


@pytest.mark.parametrize("backend", ["inline", "local"])
def test_a_separate_critic_trains_resumes_and_evaluates(tmp_path, backend):
    """``--critic separate`` with the impala learner: the value tower's weights are trained, saved and resumed with
    the rest (inline and the local actor processes, which step both cores), and ``rtrl eval`` rebuilds the agent."""
    extra = {} if backend == "inline" else {"num_actors": 1}
    cfg = small_config(total_steps=200, critic="separate", **extra)
    summary = train(cfg, tmp_path, backend_factory=InterruptingBackend if backend == "inline" else None,
                    progress=False)
    first = load_checkpoint(tmp_path / "checkpoint.pt")
    tower = {k: v for k, v in first["model"].items() if k.startswith("value_tower.core.")}
    assert len(tower) == 5 and "baseline.weight" in first["model"]
    if backend == "inline":   # interrupted after 3 updates: resumed, the tower trained on
        assert not summary["finished"]
        summary = train(cfg, tmp_path, progress=False)
        last = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
        assert all(not torch.equal(last[k], v) for k, v in tower.items())
    assert summary["finished"] and summary["steps"] == 200
    assert main(["eval", str(tmp_path), "--episodes", "2"]) == 0


@pytest.mark.parametrize("argv, message", [
    (["--env", "atar:Pong"], "known prefixes"),
    (["--env", "mujoco:Hopper-v5?observe=speed"], "option observe='speed'"),
    (["--batch-size", "5", "--envs-per-actor", "2"], "--batch-size=5 must be a multiple of --envs-per-actor=2"),
    (["--unroll-length", "0"], "bad --unroll-length=0; accepted: a positive integer"),
    (["--lr", "-1"], "bad --lr=-1.0; accepted: a positive finite number"),
    (["--device", "tpu"], "bad --device='tpu'; accepted: cpu, cuda, cuda:N, mps"),
    (["--freeze-stem"], "--freeze-stem and --load-fc act on a stem copied with --load-stem; give --load-stem too"),
    (["--preset", "memory", "--config", "/nonexistent.toml"], "config file '/nonexistent.toml' does not exist"),
])
def test_bad_ids_and_flags_give_clear_errors(tmp_path, capsys, argv, message):
    code = main(["train", "--out", str(tmp_path / "run"), "--total-steps", "1000", "--num-actors", "0"] + argv)
    assert code == 2
    assert message in capsys.readouterr().err


def test_bad_flag_values_are_rejected_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--core", "gru"])
    assert "invalid choice: 'gru'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--reward-clip", "maybe"])


def test_config_file_and_preset(tmp_path):
    (tmp_path / "c.toml").write_text('hidden-size = 12\ncore = "lstm"\n')   # an old core name, in a file
    (tmp_path / "c.yaml").write_text("unroll_length: 7\nbogus: 1\n")
    cfg = resolve_config("memory", tmp_path / "c.toml", {"core": "ff"})
    assert (cfg.hidden_size, cfg.cell, cfg.learning, cfg.env) == (12, "ff", "tbptt", "memory:delayed_recall?cues=2&delay=30")
    assert cfg.total_steps == 2_000_000   # the preset's, under the file's and the flag's
    with pytest.raises(SettingError, match="unknown settings \\['bogus'\\]"):
        resolve_config(None, tmp_path / "c.yaml")
    (tmp_path / "broken.json").write_text('{"lr": ')
    with pytest.raises(SettingError, match="broken.json' is not valid JSON"):
        resolve_config(None, tmp_path / "broken.json")


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("env", ["gym:CartPole-v1", MEMORY])
def test_end_to_end_every_core_trains_and_evaluates(tmp_path, core, env):
    cfg = small_config(core=core, env=env, total_steps=100)
    torch.manual_seed(cfg.seed)
    initial = build_agent(cfg, EnvSpec.probe(cfg.env, {})).state_dict()
    summary = train(cfg, tmp_path, progress=False)
    assert summary["steps"] == 100 and summary["finished"]
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["updates"] == 5 and checkpoint["steps"] == 100      # 100 steps of T·B = 20
    changed = [k for k, v in checkpoint["model"].items() if not torch.equal(v, initial[k])]
    assert "policy.weight" in changed and any(k.startswith("core.") for k in changed)   # the core trains too
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[-1]["step"] == "100" and rows[-1]["updates"] == "5" and float(rows[-1]["grad_norm"]) > 0
    assert any(p.name.startswith("events") for p in (tmp_path / "tensorboard").iterdir())
    assert main(["eval", str(tmp_path), "--episodes", "3", "--sample"]) == 0
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["episodes"] == 3 and result["checkpoint_steps"] == 100
    assert (result["core"], result["cell"], result["learning"]) == (cfg.label, cfg.cell, cfg.learning)
    if env == MEMORY:   # delay 6: every episode lasts 8 steps and pays 0 or 1
        assert result["lengths"] == [8, 8, 8] and set(result["returns"]) <= {0.0, 1.0}
    else:               # CartPole pays 1 per step
        assert result["returns"] == result["lengths"]




def test_metrics_rows_count_frames_and_average_the_window(tmp_path):
    progress = Progress(window=2, checkpoint={"steps": 1600, "updates": 3, "wall_time": 10.0,
                                              "recent_episodes": [{"return": 5.0, "length": 7, "success": None}]})
    progress.recent.extend([{"return": 1.0, "length": 3, "success": 1.0}, {"return": 3.0, "length": 5, "success": 0.0}])
    stats = [{k: float(i) for k in ImpalaLearner.metrics} for i in (1, 3)]
    row = progress.metrics_row(sps=10.0, stats=stats, metrics=ImpalaLearner.metrics, frames_per_step=4)
    assert (row["step"], row["frames"], row["updates"], row["episodes"]) == (1600, 6400, 3, 2)
    assert (row["mean_return"], row["mean_length"], row["success_rate"]) == (2.0, 4.0, 0.5)  # the window of 2
    assert row["total_loss"] == row["policy_lag"] == 2.0 and row["wall_time"] >= 10.0
    assert progress.summary(RunDirectory(tmp_path / "run"), finished=True)["wall_time"] >= 10.0   # earlier sessions


def test_standardised_advantages_with_the_previous_action_are_warned_about(tmp_path, caplog):
    risky = small_config(env=MEMORY + "&previous_action=true", normalize_advantages=True, total_steps=40)
    with caplog.at_level("WARNING", logger="rtrl.runtime.train"):
        train(risky, tmp_path / "risky", progress=False)
        train(small_config(env=MEMORY, normalize_advantages=True, total_steps=40), tmp_path / "plain", progress=False)
        train(small_config(env=MEMORY, env_options={"previous_action": True}, total_steps=40), tmp_path / "raw",
              progress=False)
    warned = [r.getMessage() for r in caplog.records if "previous_action" in r.getMessage()]
    assert len(warned) == 1 and "consider --normalize-advantages false" in warned[0]


def test_passes_without_a_policy_clip_are_warned_about(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="rtrl.runtime.train"):
        train(small_config(total_steps=40, update_epochs=2), tmp_path / "risky", progress=False)
        train(small_config(total_steps=40, update_epochs=2, policy_clip=0.2), tmp_path / "clipped", progress=False)
        train(small_config(total_steps=40, minibatches=2), tmp_path / "one-pass", progress=False)
    warned = [r.getMessage() for r in caplog.records if "policy_clip" in r.getMessage()]
    assert warned == ["update_epochs=2 without policy_clip: nothing bounds how far the passes move the policy from "
                      "the actors' (4 passes of 4 minibatches diverged on Hopper, docs/MUJOCO.md); consider "
                      "--policy-clip 0.2"]


def test_env_options_that_replace_the_env_ids_own_are_noted(tmp_path, caplog):
    """env_options win over the options in the env id (parse_env_id); where they replace one with another value the
    run says so, since the id in its config.json reads otherwise. Options the id does not give, or gives alike, pass
    without a word."""
    with caplog.at_level(logging.INFO, logger="rtrl"):
        train(small_config(total_steps=20, env_options={"delay": 4, "cues": 2}), tmp_path / "a", progress=False)
    notes = [r.getMessage() for r in caplog.records if "env_options replace" in r.getMessage()]
    assert notes == ["env_options replace the env id's delay=6 with delay=4"], notes
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rtrl"):
        train(small_config(total_steps=20, env_options={"delay": 6}), tmp_path / "b", progress=False)
    assert not [r for r in caplog.records if "env_options replace" in r.getMessage()]
