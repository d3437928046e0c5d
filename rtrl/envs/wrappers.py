"""Small wrappers shared by the env adapters; each does one thing and is named for it.

The contract every adapter returns (see ``rtrl.envs.make_env``):
  * ``action_space`` is ``Discrete`` (a ``MultiDiscrete`` one flattened into it, unless the id asks
    ``multi_discrete=factored``) or a 1-D float ``Box`` (actions clipped to its bounds by :class:`ClipBoxAction`);
  * ``observation_space`` is a ``Box``: a 1-D float32 vector or a uint8 image (C, H, W);
  * on the step that ends a *true* episode, ``info["episode"] = {"return", "length"[, "success"]}``
    (added by :class:`RecordEpisode`, from an ``info["success"]`` the adapter puts on that step).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces


def check_action_space(env: gym.Env, env_id: str) -> gym.Env:
    """``env`` with an action space rtrl agents act in: Discrete as it is (counted from 0: ``ShiftDiscreteAction``
    when its ``start`` is not), MultiDiscrete flattened into one Discrete (``FlattenMultiDiscreteAction``), a 1-D
    float Box with its actions clipped to the bounds (``ClipBoxAction``); any other space is a ValueError."""
    space = env.action_space
    if isinstance(space, spaces.Discrete):
        return env if int(space.start) == 0 else ShiftDiscreteAction(env)
    if isinstance(space, spaces.MultiDiscrete):
        return FlattenMultiDiscreteAction(env)
    if isinstance(space, spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating):
        return ClipBoxAction(env)
    env.close()
    raise ValueError(
        f"env {env_id!r} has action space {space}; rtrl agents act in a Discrete, a MultiDiscrete or a "
        "1-D float Box action space"
    )


class ClipBoxAction(gym.ActionWrapper):
    """A Gaussian policy's action (any real vector, as sampled: the rollout keeps it unclipped) clipped to the
    Box's bounds before the env sees it; the bounds may be infinite (then nothing is clipped there)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._low, self._high = env.action_space.low, env.action_space.high

    def action(self, action):
        return np.clip(np.asarray(action, dtype=self._low.dtype), self._low, self._high)


class ShiftDiscreteAction(gym.ActionWrapper):
    """A Discrete(n, start=s) action space as Discrete(n): the agent's action a (0..n-1) reaches the env as s + a."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._start = int(env.action_space.start)
        self.action_space = spaces.Discrete(int(env.action_space.n))

    def action(self, action):
        return self._start + int(action)


class FlattenMultiDiscreteAction(gym.ActionWrapper):
    """MultiDiscrete([n1, ..., nk]) actions as one Discrete(n1*...*nk) action (row-major index). The env receives
    its space's own shape (a nvec of any shape) and values (each component counted from its ``start``)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.action_space
        self._shape, self._start = space.nvec.shape, np.asarray(space.start, dtype=np.int64).reshape(-1)
        self._nvec = np.asarray(space.nvec).reshape(-1)
        self.action_space = spaces.Discrete(int(np.prod(self._nvec)))

    def action(self, action):
        if self.factored:
            components = np.asarray(action, dtype=np.int64).reshape(-1)
        else:
            components = np.array(np.unravel_index(int(action), self._nvec), dtype=np.int64)
        return (components + self._start).reshape(self._shape).astype(self.env.action_space.dtype)

    factored = False

    def factor(self) -> None:
        """Pass MultiDiscrete actions through instead (the env id option ``multi_discrete=factored``: the agent
        then acts with one categorical per component, ``rtrl.algos.MultiCategorical``, in a 1-D space counted
        from 0 whatever the env's shape and starts)."""
        self.factored = True
        self.action_space = spaces.MultiDiscrete(self._nvec)


class FloatVectorObservation(gym.ObservationWrapper):
    """Any Discrete/MultiDiscrete/Box/Tuple/Dict observation -> 1-D float32 vector.

    Discrete -> one-hot, MultiDiscrete -> concatenated one-hots, Box -> flattened,
    Tuple/Dict -> concatenation of the parts (gymnasium's ``spaces.flatten`` order).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._source_space = env.observation_space
        flat = spaces.flatten_space(env.observation_space)
        self.observation_space = spaces.Box(
            low=flat.low.astype(np.float32), high=flat.high.astype(np.float32), dtype=np.float32
        )

    def observation(self, observation):
        return np.asarray(spaces.flatten(self._source_space, observation), dtype=np.float32)


class ChannelFirstImage(gym.ObservationWrapper):
    """uint8 image observation (H, W, C) -> (C, H, W)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        height, width, channels = env.observation_space.shape
        self.observation_space = spaces.Box(0, 255, (channels, height, width), np.uint8)

    def observation(self, observation):
        return np.ascontiguousarray(np.transpose(observation, (2, 0, 1)), dtype=np.uint8)


class SuccessOnPositiveReward(gym.Wrapper):
    """On the last step of an episode, set ``info["success"] = 1.0`` if its reward is > 0, else 0.0."""

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        if terminated or truncated:
            info = dict(info, success=float(reward > 0))
        return observation, reward, terminated, truncated, info


class RecordEpisode(gym.Wrapper):
    """Adds ``info["episode"] = {"return": float, "length": int[, "success": float]}`` at episode end.

    An episode ends when the wrapped env returns ``terminated or truncated``; the return is the
    plain (unclipped) sum of the rewards this wrapper saw since the last ``reset``. ``success`` is
    copied from ``info["success"]`` of the final step when the wrapped env provides it.
    Place it where "episode" means the true episode (for Atari: below the life-loss wrapper).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._return = 0.0
        self._length = 0

    def reset(self, **kwargs):
        self._return, self._length = 0.0, 0
        return self.env.reset(**kwargs)

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        self._return += float(reward)
        self._length += 1
        if terminated or truncated:
            episode = {"return": self._return, "length": self._length}
            if "success" in info:
                episode["success"] = float(info["success"])
            info = dict(info, episode=episode)
        return observation, reward, terminated, truncated, info


class SeedOnFirstReset(gym.Wrapper):
    """Uses ``seed`` for the first ``reset()`` that is called without one, and seeds the action space.

    Later resets without a seed continue the env's own random stream, as in gymnasium.
    """

    def __init__(self, env: gym.Env, seed: int | None):
        super().__init__(env)
        self._pending_seed = seed
        if seed is not None:
            self.action_space.seed(seed)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is None:
            seed = self._pending_seed
        self._pending_seed = None
        return self.env.reset(seed=seed, options=options)


class PreviousAction(gym.Wrapper):
    """Appends the one-hot of the previous action to a 1-D float32 observation (zeros after a reset), as
    POPGym's baselines feed their memory models. The env id option ``previous_action=true`` adds it.
    Do not combine it with standardised advantages (``normalize_advantages``): on the memory suite that pair
    collapsed the policy's entropy and every recall task fell to chance (docs/MEMORY_SUITE.md)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        space = env.observation_space
        if not (isinstance(space, spaces.Box) and len(space.shape) == 1 and space.dtype == np.float32):
            raise ValueError(f"previous_action=true needs a 1-D float32 observation, not {space}")
        if not isinstance(env.action_space, spaces.Discrete):
            raise ValueError(f"previous_action=true needs a Discrete action space, not {env.action_space}")
        self._actions = env.action_space.n
        self.observation_space = spaces.Box(np.concatenate([space.low, np.zeros(self._actions, np.float32)]),
                                            np.concatenate([space.high, np.ones(self._actions, np.float32)]),
                                            dtype=np.float32)

    def _with(self, observation, action: int | None) -> np.ndarray:
        one_hot = np.zeros(self._actions, dtype=np.float32)
        if action is not None:
            one_hot[int(action)] = 1.0
        return np.concatenate([np.asarray(observation, dtype=np.float32), one_hot])

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        return self._with(observation, None), info

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        return self._with(observation, action), reward, terminated, truncated, info
