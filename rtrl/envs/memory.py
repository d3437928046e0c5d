"""Built-in memory tasks (``memory:<task>``): tiny, seeded, pure numpy.

``memory:delayed_recall?cues=k&delay=D`` — remember a cue across D blank steps.
``memory:sequence_recall?cues=k&length=L&delay=D`` — remember L cues, recall them in order after D blank steps
(see ``SequenceRecall``).

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

OPTIONS = {"cues": 2, "delay": 30, "length": None}   # length: sequence_recall only (default 3)
TASKS = ("delayed_recall", "sequence_recall")


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


class SequenceRecall(gym.Env):
    """L cues shown one per step, ``delay`` blank steps, then L queries answered in the order shown.

        t = 0 .. L-1             cue i: observation = [symbol one-hot (k) ; position one-hot (L) ; 0 ; 0]
        t = L .. L+D-1           blank: [0 ; 0 ; 1 ; 0]
        t = L+D+i, i = 0 .. L-1  query i: [0 ; position i one-hot ; 0 ; 1]; the action is the answer for cue i,
                                 reward 1/L if it names cue i. The episode terminates after the last query
                                 (it lasts 2L + D steps).

    Every cue must be held for exactly L + D steps (shown at t=i, asked at t=L+D+i), and all L at once.
    The return is the fraction of cues named right; ``info["success"]`` (on the last step) is 1.0 when
    all are. A memoryless policy names each cue with probability 1/k: chance return 1/k, success 1/k^L.
    Observation: float32 vector of size k + L + 2; action space Discrete(k).
    """

    def __init__(self, cues: int = 2, length: int = 3, delay: int = 30):
        if not isinstance(cues, int) or cues < 2:
            raise ValueError(f"sequence_recall needs cues >= 2, got cues={cues!r}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"sequence_recall needs an integer length >= 1, got length={length!r}")
        if delay < 0:
            raise ValueError(f"sequence_recall needs delay >= 0, got delay={delay}")
        self.cues, self.length, self.delay = cues, length, delay
        self.observation_space = spaces.Box(0.0, 1.0, (cues + length + 2,), np.float32)
        self.action_space = spaces.Discrete(cues)
        self._sequence = np.zeros(length, dtype=np.int64)
        self._t = 0
        self._correct = 0

    @property
    def episode_length(self) -> int:
        return 2 * self.length + self.delay

    def _observation(self) -> np.ndarray:
        k, L, t = self.cues, self.length, self._t
        observation = np.zeros(k + L + 2, dtype=np.float32)
        if t < L:
            observation[self._sequence[t]] = 1.0
            observation[k + t] = 1.0
        elif t < L + self.delay:
            observation[k + L] = 1.0  # blank flag
        elif t < self.episode_length:
            observation[k + t - L - self.delay] = 1.0  # which cue is asked for
            observation[k + L + 1] = 1.0  # query flag
        return observation

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self._sequence = self.np_random.integers(self.cues, size=self.length)
        self._t = 0
        self._correct = 0
        return self._observation(), {}

    def step(self, action):
        if self._t >= self.episode_length:
            raise RuntimeError("step() called after the episode ended; call reset()")
        query = self._t - self.length - self.delay
        reward = 0.0
        if query >= 0:
            right = int(action) == int(self._sequence[query])
            self._correct += right
            reward = right / self.length
        self._t += 1
        if self._t == self.episode_length:
            success = float(self._correct == self.length)
            return self._observation(), reward, True, False, {"success": success}
        return self._observation(), reward, False, False, {}


def make(name: str, *, env_id: str, seed: int | None, training: bool, cues: int, delay: int,
         length: int | None) -> gym.Env:
    if name == "delayed_recall":
        if length is not None:
            raise ValueError(f"option length={length!r} in {env_id!r} belongs to sequence_recall; delayed_recall "
                             "accepts: cues, delay")
        return RecordEpisode(DelayedRecall(cues=cues, delay=delay))
    if name == "sequence_recall":
        return RecordEpisode(SequenceRecall(cues=cues, length=3 if length is None else length, delay=delay))
    raise ValueError(f"unknown memory task {name!r} in {env_id!r}; known tasks: {', '.join(TASKS)}")
