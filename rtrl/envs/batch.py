"""Several environments stepped together, as actors and evaluation use them, and what an agent needs
to know of an environment before it is built."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from gymnasium import spaces

from rtrl.envs.packages import UserEnvError
from rtrl.algos.distributions import ActionDistribution, Categorical, DiagGaussian, MultiCategorical
from rtrl.envs.registry import make_env

# columns of the per-step episode record: NaN except where a true episode ended on arrival at that step
EPISODE_FIELDS = ("return", "length", "success")


@dataclass
class EnvSpec:
    """What the agent and the rollout buffers need to know of the environment, and the ``env_fn`` that
    makes a ``python:`` env (it travels with the spec to the actors). ``num_actions``: the policy head's
    width, the action distribution's parameter count (a Discrete space's size); ``action``: the
    distribution (None: ``Categorical(num_actions)``), see ``distribution``."""

    obs_shape: tuple[int, ...]
    obs_dtype: torch.dtype
    num_actions: int
    env_fn: Callable | None = field(default=None, compare=False, repr=False)
    action: ActionDistribution | None = None

    @property
    def distribution(self) -> ActionDistribution:
        return Categorical(self.num_actions) if self.action is None else self.action

    @classmethod
    def probe(cls, env_id: str, env_options: dict, env_fn: Callable | None = None) -> "EnvSpec":
        env = make_env(env_id, seed=0, env_fn=env_fn, **env_options)
        try:
            if env_id.startswith(("gym:", "python:")):   # a user's env that cannot start: refused before a run
                first_reset(env, env_id, 0)             # directory exists
            space = env.observation_space
            dtype = torch.uint8 if space.dtype == np.uint8 else torch.float32
            action = action_distribution(env.action_space)
            return cls(tuple(space.shape), dtype, action.param_size, env_fn,
                       None if isinstance(action, Categorical) else action)
        finally:
            env.close()


def first_reset(env, env_id: str, seed: int):
    """``env.reset(seed=seed)``; a :class:`UserEnvError` naming the env's class if it raises."""
    try:
        return env.reset(seed=seed)
    except Exception as error:
        inner = getattr(env, "unwrapped", env)
        name = f"{type(inner).__module__}.{type(inner).__qualname__}"
        raise UserEnvError(f"the env {name!r} of {env_id!r} raised in reset() at start-up", error) from None
def action_distribution(space: spaces.Space) -> ActionDistribution:
    """The distribution an agent acts with in an adapted env's action space (``make_env``'s contract)."""
    if isinstance(space, spaces.Discrete):
        return Categorical(int(space.n))
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim == 1:
        return MultiCategorical(tuple(int(n) for n in space.nvec))
    if isinstance(space, spaces.Box) and len(space.shape) == 1:
        return DiagGaussian(int(space.shape[0]))
    raise ValueError(f"action space {space}: rtrl agents act in a Discrete, a MultiDiscrete or a 1-D Box action space")


RESUMED_SEED_RANGE = 2**31 - 1   # a resumed run's seeds lie below it: ProcGen takes a signed 32-bit seed


def env_seeds(seed: int, first: int, count: int, resumed_at: int = 0) -> list[int]:
    """Seeds of environments ``first .. first+count-1`` of a run seeded ``seed`` (actors number theirs
    from 0; evaluation from ``EVAL_SEED_OFFSET``, so that it never replays a training stream).

    ``resumed_at``: the step a resumed run goes on from. 0 (a fresh run) gives the seeds runs have always had;
    any other step gives other seeds, drawn from ``(seed, resumed_at, first + i)`` by NumPy's SeedSequence, so a
    resumed run (or one resumed twice) does not replay the episodes of its first start."""
    if resumed_at == 0:
        return [seed * 100_003 + first + i for i in range(count)]
    return [int(np.random.SeedSequence([seed, resumed_at, first + i]).generate_state(1)[0]) % RESUMED_SEED_RANGE
            for i in range(count)]


EVAL_SEED_OFFSET = 50_000


def episodes_from(returns, lengths, successes) -> list[dict]:
    """The episodes recorded in flat arrays of the episode fields, where the return is not NaN:
    ``[{"return": float, "length": int, "success": float or None}]``."""
    returns, lengths, successes = (np.asarray(a, dtype=np.float64).reshape(-1) for a in (returns, lengths, successes))
    ended = ~np.isnan(returns)
    return [{"return": float(r), "length": int(n), "success": None if math.isnan(s) else float(s)}
            for r, n, s in zip(returns[ended], lengths[ended], successes[ended])]


class EnvBatch:
    """Environments stepped together with auto-reset; episode statistics from ``info["episode"]``."""

    def __init__(self, env_id: str, env_options: dict, seeds: list[int], training: bool = True, env_fn=None):
        self.envs = [make_env(env_id, seed=s, training=training, env_fn=env_fn, **env_options) for s in seeds]
        self.env_id, self.seeds = env_id, seeds
        first = [first_reset(env, env_id, s)[0] for env, s in zip(self.envs, seeds)]
        self.obs = np.stack(first)

    def __len__(self) -> int:
        return len(self.envs)

    def step(self, actions: np.ndarray):
        """Step with ``actions`` ((E,) integers, or (E, ...) arrays: Box, factored MultiDiscrete); returns obs
        (E,...), reward (E,), done (E,) (obs starts a new episode), episodes (E,3) NaN-filled except where an
        episode ended (columns ``EPISODE_FIELDS``)."""
        E = len(self.envs)
        rewards = np.zeros(E, np.float32)
        dones = np.zeros(E, bool)
        episodes = np.full((E, len(EPISODE_FIELDS)), np.nan, np.float32)
        for i, env in enumerate(self.envs):
            obs, reward, terminated, truncated, info = env.step(int(actions[i]) if actions.ndim == 1 else actions[i])
            rewards[i] = reward
            if not np.isfinite(rewards[i]):   # an environment's failure (replaced as any), not a NaN in the losses
                raise ValueError(f"{self.env_id} (seed {self.seeds[i]}) returned the reward {reward!r}; rewards must be "
                                 "finite numbers within float32's range")
            if "episode" in info:
                ep = info["episode"]
                episodes[i] = (ep["return"], ep["length"], ep.get("success", math.nan))
            if terminated or truncated:
                dones[i] = True
                obs, _ = env.reset()
            self.obs[i] = obs
        return self.obs, rewards, dones, episodes

    def close(self) -> None:
        for env in self.envs:
            env.close()
