"""A resumed run plays fresh episodes: its environments (and the action sampling of its source) are seeded from
the step it goes on from, not replayed from the seeds of its first start; a fresh run keeps the seeds runs have
always had."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from conftest import small_config
from rtrl.envs import EVAL_SEED_OFFSET, env_seeds
from rtrl.runtime.checkpoints import load_checkpoint
from rtrl.runtime.train import train


class SeedLog(gym.Env):
    """Three-step episodes of a constant observation; every seeded reset appends its seed to the file ``log``
    (a file, so that actor processes report too)."""

    observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, log: str):
        self.log, self.t = log, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        if seed is not None:
            with open(self.log, "a") as f:
                f.write(f"{seed}\n")
        self.t = 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.zeros(2, np.float32), 1.0, self.t >= 3, False, {}


def seeds_in(log) -> set[int]:
    """The seeds of the training environments' resets (0: the env probe's, before a run starts)."""
    return {int(line) for line in log.read_text().split()} - {0} if log.exists() else set()


def test_a_fresh_run_keeps_its_seeds_and_a_resumed_one_draws_new_ones():
    assert env_seeds(7, 32, 3) == [7 * 100_003 + 32, 7 * 100_003 + 33, 7 * 100_003 + 34]   # as runs always had
    resumed = env_seeds(7, 32, 3, resumed_at=5_000)
    assert resumed == env_seeds(7, 32, 3, resumed_at=5_000)                  # a function of the resume step
    assert len(set(resumed)) == 3
    others = (env_seeds(7, 0, 1000) + env_seeds(7, EVAL_SEED_OFFSET, 1000) + env_seeds(7, 32, 3, resumed_at=5_001)
              + env_seeds(8, 32, 3, resumed_at=5_000))
    assert not set(resumed) & set(others)   # neither training's first streams nor evaluation's, nor another resume's
    many = env_seeds(7, 0, 2000, resumed_at=5_000)
    assert all(0 <= s < 2**31 - 1 for s in many) and max(many) > 2**30   # all of a signed 32-bit range (ProcGen's)


@pytest.mark.parametrize("learner, num_actors", [("impala", 0), ("impala", 1), ("stream", 0)])
def test_a_resumed_run_does_not_replay_the_episodes_of_its_first_start(tmp_path, learner, num_actors):
    log = tmp_path / "seeds.txt"
    settings = dict(env=f"python:seedlog?log={log}", total_steps=40, num_actors=num_actors, seed=4)
    if learner == "stream":
        settings.update(learner="stream", stem="identity", num_envs=2, batch_size=2)
    run = tmp_path / "run"
    train(small_config(**settings), run, progress=False, env_fn=SeedLog)
    first = seeds_in(log)
    assert len(first) >= 2 and first <= set(env_seeds(4, 0, 100))   # a fresh run: the seeds runs always had
    log.unlink()
    train(small_config(**{**settings, "total_steps": 80}), run, progress=False, env_fn=SeedLog, force=True)
    assert load_checkpoint(run / "checkpoint.pt")["steps"] == 80
    second = seeds_in(log)
    assert len(second) >= 2 and not second & first
    assert load_checkpoint(run / "checkpoint.pt")["config"]["resumed_at_step"] == 0   # the run's own config
