"""``minigrid:<id>`` — MiniGrid / BabyAI envs registered by the ``minigrid`` package.

Options:
  obs=flat   (default) float32 vector of 151 = the 7x7x3 symbolic partial view (object, colour,
             state indices, flattened row-major) followed by the agent direction one-hot (4).
  obs=image  uint8 (3, 7*tile_size, 7*tile_size) RGB pixels of the partial view, rendered by
             minigrid's own ``RGBImgPartialObsWrapper`` (tile_size=8 -> (3, 56, 56)).
The mission string is dropped. Success (``info["episode"]["success"]``) = positive final reward.
"""
from __future__ import annotations

import difflib

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtrl.envs.packages import MissingPackage
from rtrl.envs.wrappers import ChannelFirstImage, RecordEpisode, SuccessOnPositiveReward, check_action_space

OPTIONS = {"obs": "flat", "tile_size": 8}
OBS_KINDS = ("flat", "image")


class MiniGridFlatObservation(gym.ObservationWrapper):
    """MiniGrid dict observation -> float32 [image.flatten() (H*W*3) ; direction one-hot (4)]."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        image_space = env.observation_space["image"]
        size = int(np.prod(image_space.shape)) + 4
        high = np.concatenate([image_space.high.reshape(-1), np.ones(4)]).astype(np.float32)
        self.observation_space = spaces.Box(np.zeros(size, np.float32), high, dtype=np.float32)

    def observation(self, observation):
        flat = np.zeros(self.observation_space.shape, dtype=np.float32)
        image = observation["image"].reshape(-1)
        flat[: image.size] = image
        flat[image.size + int(observation["direction"])] = 1.0
        return flat


def minigrid_ids() -> list[str]:
    try:
        import minigrid  # noqa: F401  (registers the MiniGrid-* and BabyAI-* ids)
    except ImportError as error:
        raise MissingPackage("minigrid", "minigrid", error) from None

    return sorted(k for k in gym.registry if k.startswith(("MiniGrid-", "BabyAI-")))


def make(name: str, *, env_id: str, seed: int | None, training: bool, obs: str, tile_size: int) -> gym.Env:
    known = minigrid_ids()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=10, cutoff=0.4) or known[:10]
        raise ValueError(f"unknown MiniGrid env {name!r} in {env_id!r}; e.g.: {', '.join(close)}")
    if obs not in OBS_KINDS:
        raise ValueError(f"option obs={obs!r} for {env_id!r}; accepted: {', '.join(OBS_KINDS)}")
    if obs == "flat" and tile_size != OPTIONS["tile_size"]:   # the symbolic view has no tiles to size
        raise ValueError(f"option tile_size={tile_size!r} for {env_id!r} does nothing with obs='flat' (the symbolic "
                         "view); accepted with obs=image only (leave the option out)")
    if tile_size < 1:   # an image of (3, 0, 0) pixels failed in the stem, after the actors' restarts
        raise ValueError(f"option tile_size={tile_size!r} for {env_id!r} must be an integer >= 1 (pixels per cell; "
                         f"default {OPTIONS['tile_size']})")
    from minigrid.wrappers import ImgObsWrapper, RGBImgPartialObsWrapper

    env = check_action_space(gym.make(name, disable_env_checker=True), env_id)
    if obs == "flat":
        env = MiniGridFlatObservation(env)
    else:
        env = ChannelFirstImage(ImgObsWrapper(RGBImgPartialObsWrapper(env, tile_size=tile_size)))
    return RecordEpisode(SuccessOnPositiveReward(env))
