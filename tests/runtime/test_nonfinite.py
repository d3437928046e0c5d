"""The non-finite guard: an update whose loss or gradient is NaN or infinite is skipped (the weights and the
optimizer's state stay), counted in metrics.csv and logged with the offending terms; max_nonfinite of them in
a row stop the run with the last good checkpoint kept."""
import csv
import logging
import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from conftest import collect_rollouts, small_config
from rtrl.cli import main
from rtrl.models import sample_actions
from rtrl.runtime.backends import InlineBackend
from rtrl.runtime.checkpoints import load_checkpoint, nonfinite_tensors
from rtrl.runtime.experience import Experience
from rtrl.runtime.learners import ImpalaLearner
from rtrl.runtime.rollout import collate
from rtrl.runtime.train import NonFiniteError, train


def learner_and_batch():
    cfg = small_config()
    spec, worker, rollouts = collect_rollouts(cfg, 2)
    batch, _ = collate(rollouts)
    return ImpalaLearner(worker.model, cfg), batch


def snapshot(learner):
    return ({k: v.clone() for k, v in learner.model.state_dict().items()},
            [{k: v.clone() for k, v in s.items() if torch.is_tensor(v)} for s in learner.optimizer.state.values()])


def assert_unchanged(learner, before):
    weights, optimizer_state = snapshot(learner)
    assert all(torch.equal(weights[k], before[0][k]) for k in weights)
    assert len(optimizer_state) == len(before[1])
    assert all(torch.equal(a[k], b[k]) for a, b in zip(optimizer_state, before[1]) for k in a)


def test_a_nan_loss_skips_the_step_and_names_the_terms():
    learner, batch = learner_and_batch()
    learner.update(Experience(batch, batch.done.numel()), 0)            # a real step first: the optimizer has state to keep
    before = snapshot(learner)
    batch.reward[2, 1] = math.nan
    stats = learner.update(Experience(batch, batch.done.numel()), 20)
    assert "total_loss" in stats["nonfinite"] and all(not math.isfinite(stats[k]) for k in stats["nonfinite"])
    assert math.isnan(stats["grad_norm"])
    assert_unchanged(learner, before)


def test_an_infinite_gradient_skips_the_step():
    learner, batch = learner_and_batch()
    learner.update(Experience(batch, batch.done.numel()), 0)
    before = snapshot(learner)
    hook = learner.model.policy.weight.register_hook(lambda grad: grad * math.inf)
    stats = learner.update(Experience(batch, batch.done.numel()), 20)
    hook.remove()
    assert stats["nonfinite"] == ["grad_norm"] and math.isfinite(stats["total_loss"])
    assert_unchanged(learner, before)
    assert learner.update(Experience(batch, batch.done.numel()), 40)["nonfinite"] == []   # and the next good batch steps again
    assert not torch.equal(learner.model.policy.weight, before[0]["policy.weight"])


def test_actors_act_on_diverged_logits_instead_of_crashing():
    logits = torch.tensor([[0.0, 1.0, 2.0], [math.nan, 0.0, 0.0], [math.inf, 0.0, 0.0]])
    generator = torch.Generator().manual_seed(0)
    actions = torch.stack([sample_actions(logits, generator) for _ in range(300)])
    for row in (1, 2):   # uniform over the actions
        counts = torch.bincount(actions[:, row], minlength=3)
        assert counts.min() > 60, counts
    finite = torch.tensor([[0.0, 1.0, 2.0]])
    assert torch.equal(sample_actions(finite, torch.Generator().manual_seed(3)),
                       torch.multinomial(torch.softmax(finite, -1), 1, generator=torch.Generator().manual_seed(3))[:, 0])


class PoisonedBackend(InlineBackend):
    """The inline backend, with NaN rewards in the batches numbered ``poisoned`` (from 1)."""

    poisoned: range = range(0)

    def __init__(self, cfg, spec, model):
        super().__init__(cfg, spec, model)
        self.count = 0

    def next_batch(self):
        batch, episodes = super().next_batch()
        self.count += 1
        if self.count in self.poisoned:
            batch.reward[1:] = math.nan
        return batch, episodes


def metrics(path):
    with open(path / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_skipped_updates_are_counted_logged_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(PoisonedBackend, "poisoned", range(3, 5))   # two bad batches in a row, then good ones
    cfg = small_config(total_steps=200, max_nonfinite=3)              # 10 batches of 20 steps
    with caplog.at_level(logging.WARNING, logger="rtrl"):
        summary = train(cfg, tmp_path, backend_factory=PoisonedBackend, progress=False)
    assert summary["finished"] and summary["steps"] == 200 and summary["nonfinite_updates"] == 2
    skipped = [r.getMessage() for r in caplog.records if "update skipped" in r.getMessage()]
    assert len(skipped) == 2 and skipped[0].startswith("update skipped at step 60: non-finite total_loss=nan")
    assert "(2 in a row; the run stops after 3)" in skipped[1]
    rows = metrics(tmp_path)
    assert [r["nonfinite_updates"] for r in rows][-1] == "2" and rows[-1]["updates"] == "8"
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["nonfinite_updates"] == 2 and checkpoint["updates"] == 8 and not nonfinite_tensors(checkpoint["model"])
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Scalars("nonfinite_updates")[-1].value == 2


def test_k_in_a_row_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(PoisonedBackend, "poisoned", range(4, 1000))   # good, good, good, then NaN for ever
    cfg = small_config(total_steps=400, max_nonfinite=3, checkpoint_interval=1e-6,   # a checkpoint per update
                       log_interval=1e-9)                                         # and a row per update
    with pytest.raises(NonFiniteError) as error:
        train(cfg, tmp_path, backend_factory=PoisonedBackend, progress=False)
    message = str(error.value)
    assert message.startswith("max_nonfinite=3 updates in a row had a non-finite loss or gradient (the last: "
                              "total_loss=nan")
    assert "at step 120); the run stopped and checkpoint.pt keeps the last good state (step 60)" in message
    assert "lr=0.002" in message
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["steps"] == 60 and checkpoint["updates"] == 3 and not nonfinite_tensors(checkpoint["model"])
    assert metrics(tmp_path)[-1]["nonfinite_updates"] == "3" and metrics(tmp_path)[-1]["step"] == "120"
    # a rerun resumes from that checkpoint (and trims the rows written after it)
    monkeypatch.setattr(PoisonedBackend, "poisoned", range(0))
    summary = train(cfg, tmp_path, backend_factory=PoisonedBackend, progress=False)
    assert summary["finished"] and [int(r["step"]) for r in metrics(tmp_path)][:3] == [20, 40, 60]


def test_an_absurd_learning_rate_stops_with_a_finite_checkpoint(tmp_path, capsys):
    """lr=1e30: the first step sends the weights to ~1e30 and every later loss is NaN."""
    run = tmp_path / "run"
    code = main(["train", "--out", str(run), "--env", "memory:delayed_recall?cues=2&delay=6", "--num-actors", "0",
                 "--envs-per-actor", "2", "--batch-size", "4", "--unroll-length", "5", "--hidden-size", "8",
                 "--total-steps", "400", "--lr", "1e30", "--max-nonfinite", "3", "--no-progress", "--no-plot"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert "rtrl train: error: --max-nonfinite=3 updates in a row had a non-finite loss or gradient" in err
    assert "Lower the learning rate (--lr=1e+30)" in err
    assert err.count("rtrl train: warning: update skipped at step") == 3
    checkpoint = load_checkpoint(run / "checkpoint.pt")
    assert not nonfinite_tensors(checkpoint["model"]) and checkpoint["steps"] < 400
    assert main(["eval", str(run), "--episodes", "2"]) == 0   # the kept checkpoint can be evaluated


class NaNObservations(gym.Env):
    """An env whose every observation after the first is NaN: the streaming learner's values, and so its TD errors,
    are NaN from its second step. (A NaN reward is refused at the step as the environment's failure.)"""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.full(2, np.nan, np.float32), 0.0, False, False, {}


def test_a_streaming_run_of_nonfinite_td_errors_stops_naming_the_streams_step_size(tmp_path):
    """The streaming learner steps by ObGD, not by the optimizer's learning rate: the stop names its settings."""
    cfg = small_config(learner="stream", env="python:nan", stem="identity", hidden_size=4, num_envs=1,
                       total_steps=50, max_nonfinite=3, log_interval=1e-9)
    with pytest.raises(NonFiniteError) as error:
        train(cfg, tmp_path, progress=False, env_fn=NaNObservations)
    message = str(error.value)
    assert "(the last: td_error=nan at step" in message
    assert "Lower the step size (stream_lr=1.0) or raise ObGD's overshooting bounds (kappa_value=2.0, " \
           "kappa_policy=3.0)" in message and "lr=0.002" not in message
