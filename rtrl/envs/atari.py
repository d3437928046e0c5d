"""``atari:<Game>`` — ALE games with the standard DeepMind preprocessing (Mnih et al. 2015).

Stack, innermost first (``ALE/<Game>-v5`` with frameskip=1, grayscale frames, minimal action set):

    NoopReset(30)        up to 30 random no-op frames after every game reset
    MaxAndSkip(4)        repeat each action 4 frames, sum rewards, max-pool the last 2 frames
    TimeLimit            only with option max_episode_steps (agent steps); none by default
    RecordEpisode        info["episode"] = full-game, unclipped return and length (in agent steps,
                         counting the automatic FIRE/no-op steps taken at resets)
    EndOfLifeEpisode     training only: losing a life ends the episode; the next reset continues
                         the same game
    FireReset            press FIRE (then action 2) after each reset, for games that need it
    ResizeFrame(84)      210x160 gray -> 84x84 uint8
    FrameStackObservation(4)  -> observation uint8 (4, 84, 84)

Grayscale comes from the ALE directly (luminance), so the max-pool is over gray frames.
Rewards are not clipped here: clipping belongs to the learner.
Options: ``sticky`` (repeat_action_probability, default 0.0), ``max_episode_steps`` (default none),
``noop_max`` (30), ``frame_skip`` (4), ``frame_stack`` (4).
"""
from __future__ import annotations

import difflib

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from PIL import Image

from rtrl.envs.packages import MissingPackage
from rtrl.envs.wrappers import RecordEpisode

OPTIONS = {"sticky": 0.0, "max_episode_steps": None, "noop_max": 30, "frame_skip": 4, "frame_stack": 4}
FRAMES_PER_STEP = "frame_skip"   # emulator frames per agent step
NOOP, FIRE = 0, 1


class NoopReset(gym.Wrapper):
    """After each reset, take a random number (1..noop_max) of NOOP actions (raw frames)."""

    def __init__(self, env: gym.Env, noop_max: int = 30):
        super().__init__(env)
        assert env.unwrapped.get_action_meanings()[NOOP] == "NOOP"
        self.noop_max = noop_max

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        if self.noop_max <= 0:
            return observation, info
        # the ALE env's generator is seeded by reset(seed=...), so the count is reproducible
        for _ in range(int(self.unwrapped.np_random.integers(1, self.noop_max + 1))):
            observation, _, terminated, truncated, info = self.env.step(NOOP)
            if terminated or truncated:
                observation, info = self.env.reset()
        return observation, info


class MaxAndSkip(gym.Wrapper):
    """Repeat the action ``skip`` frames; reward = sum; observation = max of the last two frames."""

    def __init__(self, env: gym.Env, skip: int = 4):
        super().__init__(env)
        self.skip = skip

    def step(self, action):
        total_reward, last_frames = 0.0, []
        for _ in range(self.skip):
            observation, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            last_frames = (last_frames + [observation])[-2:]
            if terminated or truncated:
                break
        pooled = np.maximum(last_frames[0], last_frames[-1])
        return pooled, total_reward, terminated, truncated, info


class EndOfLifeEpisode(gym.Wrapper):
    """Losing a life ends the episode (terminated=True); the next reset continues the same game.

    That continuing reset takes one NOOP step; any other reset (after a game over or truncation,
    mid-episode, or with a seed) resets the game. Training only (DeepMind's episodic-life trick).
    """

    def __init__(self, env: gym.Env):
        super().__init__(env)
        self._lives = 0
        self._life_lost = False

    def step(self, action):
        observation, reward, terminated, truncated, info = self.env.step(action)
        lives = self.unwrapped.ale.lives()
        self._life_lost = not (terminated or truncated) and 0 < lives < self._lives
        self._lives = lives
        return observation, reward, terminated or self._life_lost, truncated, info

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        observation, info, game_over = None, {}, True
        if self._life_lost and seed is None:
            observation, _, terminated, truncated, info = self.env.step(NOOP)
            game_over = terminated or truncated
        if game_over:
            observation, info = self.env.reset(seed=seed, options=options)
        self._life_lost = False
        self._lives = self.unwrapped.ale.lives()
        return observation, info


class FireReset(gym.Wrapper):
    """For games whose action 1 is FIRE: take FIRE then action 2 after every reset."""

    def reset(self, **kwargs):
        observation, info = self.env.reset(**kwargs)
        for action in (FIRE, 2):
            observation, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:  # (practically never) start over without firing again
                return self.env.reset(**kwargs)
        return observation, info


class ResizeFrame(gym.ObservationWrapper):
    """uint8 gray frame (210, 160) -> (size, size) with bilinear (antialiased) resampling."""

    def __init__(self, env: gym.Env, size: int = 84):
        super().__init__(env)
        self.size = size
        self.observation_space = spaces.Box(0, 255, (size, size), np.uint8)

    def observation(self, observation):
        image = Image.fromarray(observation).resize((self.size, self.size), Image.Resampling.BILINEAR)
        return np.asarray(image, dtype=np.uint8)


def game_names() -> dict[str, str]:
    """Normalised name ('spaceinvaders') -> ALE name ('SpaceInvaders') for every installed ROM."""
    try:
        import ale_py
    except ImportError as error:
        raise MissingPackage("atari", "ale_py", error) from None
    gym.register_envs(ale_py)
    names = [k[len("ALE/"):-len("-v5")] for k in gym.registry if k.startswith("ALE/") and k.endswith("-v5")]
    return {normalise_game_name(n): n for n in names}


def normalise_game_name(name: str) -> str:
    """'Space_Invaders', 'space-invaders', 'SpaceInvaders' -> 'spaceinvaders'."""
    return name.lower().replace("_", "").replace("-", "").replace(" ", "")


def check_option_values(env_id: str, sticky, max_episode_steps, noop_max, frame_skip, frame_stack) -> None:
    """A ValueError naming the first option whose value the emulator or the wrappers cannot take (ALE takes a
    sticky above 1 and NoopReset a negative noop_max as if they were valid; a frame_skip of 0 fails in reset())."""
    if not 0.0 <= sticky <= 1.0:
        raise ValueError(f"option sticky={sticky!r} for {env_id!r} must be a probability, from 0 to 1 (default 0.0)")
    for key, value, least, note in (("max_episode_steps", max_episode_steps, 1, "default: none, no limit"),
                                    ("noop_max", noop_max, 0, "0: no no-op starts; default 30"),
                                    ("frame_skip", frame_skip, 1, "default 4"), ("frame_stack", frame_stack, 1, "default 4")):
        if value is not None and (type(value) is not int or value < least):
            raise ValueError(f"option {key}={value!r} for {env_id!r} must be an integer >= {least} ({note})")


def make(name: str, *, env_id: str, seed: int | None, training: bool, sticky: float,
         max_episode_steps: int | None, noop_max: int, frame_skip: int, frame_stack: int) -> gym.Env:
    games = game_names()
    game = games.get(normalise_game_name(name))
    if game is None:
        close = difflib.get_close_matches(name, sorted(games.values()), n=10, cutoff=0.5)
        listed = ", ".join(close or sorted(games.values()))
        raise ValueError(f"unknown Atari game {name!r} in {env_id!r}; {'close matches' if close else 'known'}: {listed}")
    check_option_values(env_id, sticky, max_episode_steps, noop_max, frame_skip, frame_stack)
    env = gym.make(
        f"ALE/{game}-v5",
        obs_type="grayscale",
        frameskip=1,
        repeat_action_probability=sticky,
        full_action_space=False,
        max_num_frames_per_episode=0,  # no limit: max_episode_steps below is the only one
        disable_env_checker=True,
    )
    env = NoopReset(env, noop_max)
    env = MaxAndSkip(env, frame_skip)
    if max_episode_steps is not None:
        env = gym.wrappers.TimeLimit(env, max_episode_steps)
    env = RecordEpisode(env)
    if training:
        env = EndOfLifeEpisode(env)
    meanings = env.unwrapped.get_action_meanings()
    if len(meanings) >= 3 and meanings[FIRE] == "FIRE":
        env = FireReset(env)
    env = ResizeFrame(env, 84)
    return gym.wrappers.FrameStackObservation(env, frame_stack)
