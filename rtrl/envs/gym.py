"""``gym:<id>`` — any installed Gymnasium env with a Discrete action space.

Options: ``max_episode_steps`` (int) plus any keyword the env's constructor accepts (forwarded to
``gymnasium.make``). Observations: uint8 (H, W, C) images become (C, H, W); everything else
(Box, Discrete -> one-hot, MultiDiscrete, Tuple, Dict) becomes a flat float32 vector.
"""
from __future__ import annotations

import difflib
import inspect

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtrl.envs.wrappers import ChannelFirstImage, FloatVectorObservation, RecordEpisode, require_discrete

OPTIONS = None  # forwarded to gymnasium.make


def vector_or_image(env: gym.Env) -> gym.Env:
    """Wrap ``env`` so its observation is a uint8 (C, H, W) image or a float32 vector."""
    space = env.observation_space
    if isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3:
        return ChannelFirstImage(env)
    return FloatVectorObservation(env)


def accepted_options(name: str) -> list[str]:
    """Keyword options ``gymnasium.make(name, ...)`` accepts: its own plus the env constructor's."""
    accepted = ["max_episode_steps", "render_mode"]
    creator = gym.envs.registration.load_env_creator(gym.spec(name).entry_point)
    try:
        parameters = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # some C-implemented creators have no signature
        return accepted
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return list(dict.fromkeys(accepted + names))


def make(name: str, *, env_id: str, seed: int | None, training: bool, **options) -> gym.Env:
    if name not in gym.registry:
        close = difflib.get_close_matches(name, list(gym.registry), n=8, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else "see gymnasium.pprint_registry()"
        raise ValueError(f"unknown Gymnasium env {name!r} in {env_id!r}; {hint}")
    try:
        env = gym.make(name, **options)
    except TypeError as error:
        raise ValueError(
            f"bad option for {env_id!r} ({', '.join(sorted(options))}); accepted options: "
            f"{', '.join(accepted_options(name))} ({error})"
        ) from error
    env = require_discrete(env, env_id)
    return RecordEpisode(vector_or_image(env))
