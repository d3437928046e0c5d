"""Continuous control end to end: a Gaussian policy learns a small continuous task in seconds, with the
observation and reward statistics in the checkpoint and greedy evaluation acting with the mean."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rtrl.eval.episodes import load_trained_agent, run_episodes
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.train import train


class PointAtCue(gym.Env):
    """One-step episodes: the observation is a cue c in {-1, +1} (offset by 10 and scaled by 100, which
    --obs-norm must undo); the reward is 100 * (1 - (a - c)^2) for the action a, clipped to [-2, 2].
    The untrained Gaussian's mean action 0 earns 0; acting a = c earns 100."""

    observation_space = spaces.Box(-1000.0, 1000.0, (1,), np.float32)
    action_space = spaces.Box(-2.0, 2.0, (1,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.cue = float(self.np_random.choice([-1.0, 1.0]))
        return np.array([10.0 + 100.0 * self.cue], np.float32), {}

    def step(self, action):
        assert -2.0 <= float(action[0]) <= 2.0
        reward = 100.0 * (1.0 - (float(action[0]) - self.cue) ** 2)
        return np.array([0.0], np.float32), reward, True, False, {}


@pytest.mark.parametrize("critic", ["shared", "separate"])
def test_a_gaussian_policy_learns_a_continuous_task_in_seconds(tmp_path, critic):
    """(With ``critic separate`` the baseline has a stem and core of its own: it learns the task as well.)"""
    cfg = TrainConfig(env="python:point", cell="ff", learning="tbptt", critic=critic, total_steps=12_000,
                      unroll_length=4, batch_size=16, envs_per_actor=16, num_actors=0, hidden_size=16, stem="mlp",
                      stem_hidden_size=16, obs_norm=True, reward_norm=True, reward_clip=False,
                      normalize_advantages=True, entropy_cost=0.0, lr=3e-3, rmsprop_eps=1e-5, seed=1,
                      log_interval=1000.0, checkpoint_interval=1000.0).validate()
    train(cfg, tmp_path, progress=False, env_fn=PointAtCue)
    _, spec, agent, _ = load_trained_agent(tmp_path, env_fn=PointAtCue)
    greedy = [e["return"] for e in run_episodes(cfg, agent, 40, greedy=True, seed=5, env_fn=PointAtCue)]
    assert np.mean(greedy) > 80, np.mean(greedy)   # the untrained agent's greedy return is about 0
    model = load_checkpoint(tmp_path / "checkpoint.pt")["model"]
    assert int(model["obs_norm.count"]) > 0 and int(model["reward_norm.stats.count"]) > 0
    assert float(model["reward_norm.discount"]) == cfg.discounting
    assert model["policy_log_std"].shape == (1,) and float(model["policy_log_std"]) < 0   # the std shrank
    assert spec.distribution.param_size == 2


def test_the_reward_scaler_makes_returns_of_order_one_and_keeps_the_sign():
    from rtrl.models.normalizer import RewardScaler
    scaler = RewardScaler()
    scaler.discount.fill_(0.9)
    assert torch.equal(scaler(torch.tensor([3.0])), torch.tensor([3.0]))   # identity before any update
    rewards = torch.tensor(np.random.default_rng(0).normal(2.0, 1.0, 10_000), dtype=torch.float64)
    scaler.update(rewards)
    mean, var = rewards.mean(), rewards.var(unbiased=False)
    expected = torch.sqrt(var / (1 - 0.81) + (mean / 0.1) ** 2)
    torch.testing.assert_close(scaler(torch.tensor([-1.0], dtype=torch.float64)), -1 / expected.reshape(1))
    # a discounted return of such rewards is then about 1
    g = sum(0.9 ** t * scaler(rewards[t:t + 1]) for t in range(200))
    assert 0.7 < float(g) < 1.3


def test_the_policy_head_for_each_action_space():
    from rtrl.algos import DiagGaussian, MultiCategorical
    from rtrl.models import Agent
    discrete = Agent((4,), torch.float32, 3, cell="ff", learning="tbptt", hidden_size=8, stem="identity")
    assert {k for k in discrete.state_dict() if k.startswith("policy")} == {"policy.weight", "policy.bias"}
    multi = Agent((4,), torch.float32, MultiCategorical((2, 3)), cell="ff", learning="tbptt", hidden_size=8, stem="identity")
    assert multi.policy.out_features == 5
    obs, reward, done = torch.randn(2, 5, 4), torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.bool)
    for log_std, head in (("parameter", 2), ("state", 4)):
        agent = Agent((4,), torch.float32, DiagGaussian(2), cell="ff", learning="tbptt", hidden_size=8, stem="identity", log_std=log_std)
        assert agent.policy.out_features == head and (agent.policy_log_std is not None) == (log_std == "parameter")
        with torch.no_grad():
            agent.policy.bias.fill_(100.0)   # a state-dependent log std far out of range is clamped
        out, _ = agent(obs, reward, done, agent.initial_state(5))
        assert out.policy_logits.shape == (2, 5, 4)
        log_stds = out.policy_logits[..., 2:]
        assert (log_stds == (0.0 if log_std == "parameter" else 2.0)).all()


@pytest.mark.popgym
def test_a_factored_multi_discrete_env_trains_and_evaluates(tmp_path):
    from rtrl.algos import MultiCategorical
    cfg = TrainConfig(env="popgym:BattleshipEasy?multi_discrete=factored", cell="elstm", learning="rtrl",
                      total_steps=160, unroll_length=5, batch_size=4, envs_per_actor=2, num_actors=0, hidden_size=8,
                      stem="mlp", stem_hidden_size=8, log_interval=1000.0, checkpoint_interval=1000.0).validate()
    summary = train(cfg, tmp_path, progress=False)
    assert summary["steps"] == 160
    _, spec, agent, _ = load_trained_agent(tmp_path)
    assert spec.distribution == MultiCategorical((8, 8)) and agent.policy.out_features == 16
    episodes = run_episodes(cfg, agent, 2, greedy=True, seed=0)
    assert len(episodes) == 2
