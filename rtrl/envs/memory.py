"""Built-in memory tasks (``memory:<task>``): tiny, seeded, pure numpy.

``memory:delayed_recall?cues=k&delay=D`` — remember a cue across D blank steps.

    t = 0          observation shows the cue c ∈ {0..k-1}           (reward 0 whatever the action)
    t = 1 .. D     blank observations                                (reward 0 whatever the action)
    t = D + 1      query observation; the action taken here is the answer: reward 1 if it is c, else 0
    the episode terminates after the query step, so it lasts D + 2 steps.

Observation: float32 vector of size k + 2 = [cue one-hot (k) ; blank flag ; query flag]; exactly
one entry is 1 at every step (the observation returned by the terminating step is all zeros and
is never acted upon). Action space: Discrete(k). The final step's info has ``"success"`` (1.0 if
the answer was right), which ``RecordEpisode`` copies into ``info["episode"]``.
A memoryless policy succeeds with probability 1/k.
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtrl.envs.wrappers import RecordEpisode

OPTIONS = {"cues": 2, "delay": 30}
TASKS = ("delayed_recall",)


class DelayedRecall(gym.Env):
    """Cue, ``delay`` blank steps, then a query answered by the action; see the module docstring."""

    def __init__(self, cues: int = 2, delay: int = 30):
        if cues < 2:
            raise ValueError(f"delayed_recall needs cues >= 2, got cues={cues}")
        if delay < 0:
            raise ValueError(f"delayed_recall needs delay >= 0, got delay={delay}")
        self.cues, self.delay = cues, delay
        self.observation_space = spaces.Box(0.0, 1.0, (cues + 2,), np.float32)
        self.action_space = spaces.Discrete(cues)
        self._cue = 0
        self._t = 0

    def _observation(self) -> np.ndarray:
        observation = np.zeros(self.cues + 2, dtype=np.float32)
        if self._t == 0:
            observation[self._cue] = 1.0
        elif self._t <= self.delay:
            observation[self.cues] = 1.0  # blank flag
        else:
            observation[self.cues + 1] = 1.0  # query flag
        return observation

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._cue = int(self.np_random.integers(self.cues))
        self._t = 0
        return self._observation(), {}

    def step(self, action):
        if self._t > self.delay + 1:
            raise RuntimeError("step() called after the episode ended; call reset()")
        if self._t == self.delay + 1:  # the query step: the action is the answer
            correct = int(action) == self._cue
            self._t += 1
            terminal = np.zeros(self.cues + 2, dtype=np.float32)
            return terminal, float(correct), True, False, {"success": float(correct)}
        self._t += 1
        return self._observation(), 0.0, False, False, {}


def make(name: str, *, env_id: str, seed: int | None, training: bool, cues: int, delay: int) -> gym.Env:
    if name != "delayed_recall":
        raise ValueError(f"unknown memory task {name!r} in {env_id!r}; known tasks: {', '.join(TASKS)}")
    return RecordEpisode(DelayedRecall(cues=cues, delay=delay))
