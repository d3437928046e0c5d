"""The learner seam: a second learner, with an experience source of its own that steps the environments in
the learner's process and an update at every step, runs through ``train`` unchanged — metrics.csv gets its
columns, the checkpoint its state, an interrupted run resumes it — and the old names and run directories
of the IMPALA learner still work."""
import csv
import json

import numpy as np
import pytest
import torch

from conftest import MEMORY, small_config
from rtrl.cli import main
from rtrl.envs import EnvBatch, env_seeds, episodes_from
from rtrl.models import sample_actions
from rtrl.runtime.checkpoints import checkpoint_bytes, load_checkpoint
from rtrl.runtime.config import LEARNERS as LEARNER_CHOICES
from rtrl.runtime.experience import Experience
from rtrl.runtime.backends import InlineBackend
from rtrl.runtime.learners import LEARNERS
from rtrl.runtime.train import train


class StepSource:
    """Steps ``envs_per_actor`` environments one step per ``next()`` with the published weights."""

    def __init__(self, cfg, spec, model):
        E = cfg.envs_per_actor
        self.model, self.actor_restarts = model, 0
        self.envs = EnvBatch(cfg.env, cfg.env_options, env_seeds(cfg.seed, 0, E), env_fn=spec.env_fn)
        self.obs = torch.as_tensor(self.envs.obs).clone()
        self.reward, self.done = torch.zeros(E), torch.ones(E, dtype=torch.bool)
        self.state = model.initial_step_state(E)
        self.published = 0

    def next(self) -> Experience:
        with torch.no_grad():
            out, self.state = self.model(self.obs[None], self.reward[None], self.done[None], self.state)
        action = sample_actions(out.policy_logits[0])
        obs, reward, done, episodes = self.envs.step(action.numpy())
        step = (self.obs, torch.as_tensor(reward), torch.as_tensor(done))
        self.obs, self.reward, self.done = torch.as_tensor(obs).clone(), step[1], step[2]
        ended = ~np.isnan(episodes[:, 0])
        return Experience(step, len(action), episodes_from(*episodes[ended].T), {"published": float(self.published)})

    def publish(self, model) -> None:
        self.published += 1

    def close(self) -> None:
        self.envs.close()


class RewardLearner:
    """Regresses the baseline head on the immediate reward by SGD, one update per step (no recurrence needed:
    the point is the seam, not the algorithm); counts its updates in its own state."""

    metrics = ("reward_error", "published")

    def __init__(self, model, cfg):
        self.model, self.count = model, 0
        self.optimizer = torch.optim.SGD(model.baseline.parameters(), lr=0.01)

    def update(self, experience: Experience, steps_done: int) -> dict:
        obs, reward, done = experience.data
        with torch.no_grad():
            x = self.model.core_input(obs[None], torch.zeros_like(reward)[None], done[None])
            y = self.model.core(x, self.model.initial_step_state(len(reward)), None)[0]
        error = self.model.baseline(y[0]).squeeze(-1) - reward
        loss = (error ** 2).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.count += 1
        return {"reward_error": loss.item(), **experience.stats, "nonfinite": []}

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.count = state["count"]


class StopAfter(StepSource):
    """Ctrl-C after ``limit`` steps of this session."""

    limit = 30

    def next(self):
        self.limit -= 1
        if self.limit < 0:
            raise KeyboardInterrupt
        return super().next()


def test_a_second_learner_with_its_own_source_runs_through_train_unchanged(tmp_path):
    cfg = small_config(env="gym:CartPole-v1", total_steps=100, envs_per_actor=2, batch_size=4, log_interval=1e-9)
    learners = []

    def make_learner(model, cfg):
        learners.append(RewardLearner(model, cfg))
        return learners[-1]

    summary = train(cfg, tmp_path, backend_factory=StopAfter, learner_factory=make_learner, progress=False)
    assert not summary["finished"] and summary["steps"] == 60   # 30 steps of 2 environments, then Ctrl-C
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["learner"]["count"] == 30 and checkpoint["updates"] == 30 and checkpoint["steps"] == 60
    summary = train(cfg, tmp_path, backend_factory=StepSource, learner_factory=make_learner, progress=False)
    assert summary["finished"] and summary["steps"] == 100
    assert learners[-1].count == 50   # restored from the checkpoint, then 20 more updates
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["step", "frames", "wall_time", "sps", "updates", "episodes", "mean_return",
                             "mean_length", "success_rate", "reward_error", "published", "nonfinite_updates",
                             "actor_restarts"]
    assert [int(r["step"]) for r in rows] == list(range(2, 101, 2))   # one row per update (log_interval ~0)
    assert float(rows[-1]["published"]) == 19 and float(rows[-1]["reward_error"]) >= 0
    assert float(rows[-1]["episodes"]) > 0   # CartPole episodes end within 100 steps of 2 environments


def test_every_learner_choice_is_a_registered_learner():
    assert tuple(LEARNERS) == LEARNER_CHOICES
    with pytest.raises(Exception, match="bad learner='bogus'; accepted: impala, stream"):
        small_config(learner="bogus")


@pytest.mark.parametrize("cell, learning", [("indrnn", "rtrl"), ("indrnn", "tbptt"), ("lru", "rtrl"),
                                            ("lru", "tbptt"), ("elstm", "tbptt"), ("rtu", "rtrl"), ("rtu", "tbptt"),
                                            ("clru", "rtrl")])
def test_every_elementwise_cell_trains_as_an_agent_core(tmp_path, cell, learning):
    cfg = small_config(cell=cell, learning=learning, total_steps=100, hidden_size=6)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["steps"] == 100
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["config"]["cell"] == cell and checkpoint["config"]["learning"] == learning
    assert type(checkpoint["format"]) is int and checkpoint["format"] >= 2
    assert "core.weight_x" in checkpoint["model"]


def test_the_old_core_flag_trains_and_prints_its_new_spelling(tmp_path, capsys):
    assert main(["train", "--core", "tbptt-elstm", "--env", MEMORY, "--total-steps", "40", "--unroll-length", "5",
                 "--batch-size", "4", "--envs-per-actor", "2", "--num-actors", "0", "--hidden-size", "4",
                 "--out", str(tmp_path), "--no-progress", "--no-plot"]) == 0
    assert "--core tbptt-elstm is spelled --cell elstm --learning tbptt now" in capsys.readouterr().err
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["cell"], config["learning"]) == ("elstm", "tbptt") and "core" not in config
    assert main(["train", "--core", "tbptt-elstm", "--learning", "rtrl", "--out", str(tmp_path / "two")]) == 2
    err = capsys.readouterr().err
    assert "--core='tbptt-elstm' means cell='elstm', learning='tbptt', but --learning='rtrl' is also given" in err


class StopAfterTwoBatches(InlineBackend):
    batches = 2

    def next_batch(self):
        self.batches -= 1
        if self.batches < 0:
            raise KeyboardInterrupt
        return super().next_batch()


def test_a_run_directory_of_the_previous_version_resumes(tmp_path):
    """A run written before cell/learning and the learner seam: config "core", checkpoint "optimizer" (no
    "learner", no "format"), metrics.csv in the old column order. The same settings resume it."""
    cfg = small_config(total_steps=80)
    train(cfg, tmp_path, backend_factory=StopAfterTwoBatches, progress=False)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    old_config = {k: v for k, v in checkpoint["config"].items() if k not in ("cell", "learning", "learner")}
    old_config["core"] = "rtrl-elstm"
    old = {k: v for k, v in checkpoint.items() if k not in ("learner", "format", "config")}
    old.update(config=old_config, optimizer=checkpoint["learner"]["optimizer"])
    (tmp_path / "checkpoint.pt").write_bytes(checkpoint_bytes(old))
    (tmp_path / "config.json").write_text(json.dumps(old_config))
    old_columns = ["step", "frames", "wall_time", "sps", "updates", "episodes", "mean_return", "mean_length",
                   "success_rate", "total_loss", "pg_loss", "baseline_loss", "entropy_loss", "grad_norm", "lr",
                   "nonfinite_updates", "policy_lag", "actor_restarts"]
    with open(tmp_path / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "metrics.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, old_columns)
        writer.writeheader()
        writer.writerows(rows)
    summary = train(cfg, tmp_path, progress=False)
    assert summary["finished"] and summary["steps"] == 80
    resumed = load_checkpoint(tmp_path / "checkpoint.pt")
    assert resumed["updates"] == 4 and "learner" in resumed
    assert all(s["step"] == 4 for s in resumed["learner"]["optimizer"]["state"].values())   # RMSprop went on
    with open(tmp_path / "metrics.csv") as f:
        new_rows = list(csv.DictReader(f))
    assert new_rows[0]["step"] == rows[0]["step"] and new_rows[0]["total_loss"] == rows[0]["total_loss"]
    assert new_rows[-1]["step"] == "80"


@pytest.mark.parametrize("first, then", [("stream", "impala"), ("impala", "stream")])
def test_a_run_forced_onto_another_learner_is_refused_naming_both(tmp_path, first, then):
    """The learner's state (RMSprop's, or the streams' traces and return scale) does not carry across learners: a
    run resumed with --force under the other learner is refused naming the checkpoint's learner, not with the
    missing key of the other's state."""
    from rtrl.records.run_guard import RunDirectoryError
    small = dict(env=MEMORY, stem="identity", hidden_size=4, log_interval=1e-9)
    extra = dict(num_envs=1) if first == "stream" else {}
    train(small_config(learner=first, total_steps=20, **small, **extra), tmp_path, progress=False)
    extra = dict(num_envs=1) if then == "stream" else {}
    with pytest.raises(RunDirectoryError, match=f"holds the state of the {first} learner .*which the {then} learner "
                                                f"cannot take up.*resume it under its own learner \\({first}\\)"):
        train(small_config(learner=then, total_steps=40, **small, **extra), tmp_path, progress=False, force=True)


@pytest.mark.parametrize("cell", ["rtu", "clru"])
def test_a_forced_resume_under_another_phase_is_refused_and_other_forced_changes_still_win(tmp_path, cell):
    """Under phase exp a checkpoint stores p = log θ, under direct θ itself: the same shapes, so the weights would load
    and be read as other weights. Even --force refuses it, naming the checkpoint's phase; a forced change that keeps
    the weights' meaning (here the entropy cost) still resumes."""
    from rtrl.records.run_guard import RunDirectoryError
    from rtrl.runtime.checkpoints import load_checkpoint
    small = dict(env=MEMORY, stem="identity", hidden_size=4, log_interval=1e-9, cell=cell)
    train(small_config(total_steps=20, **small), tmp_path, progress=False)
    before = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    with pytest.raises(RunDirectoryError, match="holds weights trained with phase='exp': under phase='direct' the "
                                                "same numbers would be read as other weights.*phase='exp'"):
        train(small_config(total_steps=40, phase="direct", **small), tmp_path, progress=False, force=True)
    after = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)   # nothing was trained or written
    summary = train(small_config(total_steps=40, entropy_cost=0.02, **small), tmp_path, progress=False, force=True)
    assert summary["steps"] == 40
