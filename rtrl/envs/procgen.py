"""``procgen:<game>`` — one ProcGen game (procgen2, gym3 API) as a gymnasium env.

Observation uint8 (3, 64, 64); Discrete(15) actions. Options (passed to ``ProcgenGym3Env``):
``num_levels`` (0 = unlimited), ``start_level`` (0), ``distribution_mode`` (easy, hard, extreme,
memory, exploration; default hard). Not every game has every mode; we check in Python because a
wrong combination aborts the whole process inside procgen's C++ code.

gym3 environments reset themselves: the step that ends an episode (``terminated=True``) already
returns the *first* frame of the next episode (the terminal frame is not observable), and the
following ``reset()`` returns that frame without rebuilding anything. ``reset(seed=s)``, or a reset
in the middle of an episode, rebuilds the game with ``rand_seed=s`` (about 1 ms after the first
build in a process, which loads assets for a few seconds).
Success (``info["episode"]["success"]``) = the level was completed (procgen's prev_level_complete).
"""
from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtrl.envs.packages import MissingPackage
from rtrl.envs.wrappers import RecordEpisode

OPTIONS = {"num_levels": 0, "start_level": 0, "distribution_mode": "hard"}
GAMES = ("bigfish", "bossfight", "caveflyer", "chaser", "climber", "coinrun", "dodgeball", "fruitbot",
         "heist", "jumper", "leaper", "maze", "miner", "ninja", "plunder", "starpilot")
DISTRIBUTION_MODES = ("easy", "hard", "extreme", "memory", "exploration")
# games supporting the special modes (procgen's game.cpp asserts / env.py EXPLORATION_LEVEL_SEEDS)
MODE_GAMES = {
    "extreme": ("chaser", "dodgeball", "leaper", "starpilot"),
    "memory": ("caveflyer", "dodgeball", "heist", "jumper", "maze", "miner"),
    "exploration": ("caveflyer", "climber", "coinrun", "heist", "jumper", "leaper", "maze", "ninja"),
}


def import_procgen():
    """The procgen package, imported when first used: it pulls in gym3 (and the old `gym`)."""
    try:
        import procgen
    except ImportError as error:
        raise MissingPackage("procgen", "procgen", error) from None
    return procgen


class ProcgenEnv(gym.Env):
    """A single (num=1) ``procgen.ProcgenGym3Env`` behind the gymnasium API; see the module docstring."""

    observation_space = spaces.Box(0, 255, (3, 64, 64), np.uint8)
    action_space = spaces.Discrete(15)

    def __init__(self, game: str, num_levels: int = 0, start_level: int = 0, distribution_mode: str = "hard"):
        self.game = game
        self.level_options = {"distribution_mode": distribution_mode}
        if distribution_mode != "exploration":  # exploration fixes its own single level
            self.level_options.update(num_levels=num_levels, start_level=start_level)
        self._gym3_env = None
        self._at_episode_start = False

    def _build(self, rand_seed: int) -> None:
        procgen = import_procgen()
        self._gym3_env = procgen.ProcgenGym3Env(
            num=1, env_name=self.game, rand_seed=rand_seed, num_threads=0, **self.level_options
        )

    def _observe(self):
        reward, observation, first = self._gym3_env.observe()
        frame = np.ascontiguousarray(observation["rgb"][0].transpose(2, 0, 1))
        return frame, float(reward[0]), bool(first[0]), dict(self._gym3_env.get_info()[0])

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None or self._gym3_env is None or not self._at_episode_start:
            self._build(seed if seed is not None else int(self.np_random.integers(2**31 - 1)))
        frame, _, _, info = self._observe()
        self._at_episode_start = True
        return frame, info

    def step(self, action):
        self._gym3_env.act(np.array([action], dtype=np.int32))
        frame, reward, episode_ended, info = self._observe()
        if episode_ended:
            info["success"] = float(info.get("prev_level_complete", 0))
        self._at_episode_start = episode_ended
        return frame, reward, episode_ended, False, info

    def close(self):
        self._gym3_env = None


def make(name: str, *, env_id: str, seed: int | None, training: bool, num_levels: int,
         start_level: int, distribution_mode: str) -> gym.Env:
    if name not in GAMES:
        raise ValueError(f"unknown ProcGen game {name!r} in {env_id!r}; known: {', '.join(GAMES)}")
    import_procgen()   # here, not at the first reset: a missing package must show before any process starts
    if distribution_mode not in DISTRIBUTION_MODES:
        raise ValueError(
            f"option distribution_mode={distribution_mode!r} for {env_id!r}; "
            f"accepted: {', '.join(DISTRIBUTION_MODES)}"
        )
    if name not in MODE_GAMES.get(distribution_mode, GAMES):
        raise ValueError(
            f"ProcGen game {name!r} has no distribution_mode={distribution_mode!r}; games with it: "
            f"{', '.join(MODE_GAMES[distribution_mode])}"
        )
    if distribution_mode == "exploration" and (num_levels, start_level) != (0, 0):
        raise ValueError(f"{env_id!r}: distribution_mode=exploration fixes its own level; "
                         "do not set num_levels or start_level")
    if not (0 <= num_levels < 2 ** 31 and 0 <= start_level < 2 ** 31):   # the library takes int32 options
        raise ValueError(f"{env_id!r}: num_levels and start_level must be integers from 0 to 2**31 - 1")
    return RecordEpisode(ProcgenEnv(name, num_levels, start_level, distribution_mode))
