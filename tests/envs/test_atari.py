"""atari: DeepMind preprocessing semantics on real ROMs (ale-py ships them)."""
import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from conftest import skip_module_without
from rtrl.envs import make_env
from rtrl.envs.atari import MaxAndSkip

pytestmark = pytest.mark.atari
skip_module_without("atari")
import ale_py  # noqa: E402  (after the guard: without ale-py this module is skipped, not an error)

gym.register_envs(ale_py)


def raw_ale(game, seed=0):
    """ALE env without any preprocessing: one grayscale frame (210, 160) per step, no sticky actions."""
    env = gym.make(f"ALE/{game}-v5", obs_type="grayscale", frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=seed)
    return env


def play_game(env, seed):
    """Random actions until a *true* episode ends (info has "episode"); resets after life-loss ends.

    Returns (rewards of each training episode, final info, list of lives seen at each step).
    """
    env.action_space.seed(seed)
    env.reset(seed=seed)
    episodes, lives = [[]], []
    for _ in range(20_000):
        _, reward, terminated, truncated, info = env.step(env.action_space.sample())
        episodes[-1].append(reward)
        lives.append(info["lives"])
        if terminated or truncated:
            if "episode" in info:
                return episodes, info, lives
            env.reset()
            episodes.append([])
    raise AssertionError("game did not end")


@pytest.mark.parametrize("game, actions", [("Pong", 6), ("Breakout", 4)])
def test_observation_is_4_stacked_84x84_gray_and_minimal_actions(game, actions):
    env = make_env(f"atari:{game}", seed=0)
    assert env.observation_space == spaces.Box(0, 255, (4, 84, 84), np.uint8)
    assert env.action_space == spaces.Discrete(actions)
    observation, _ = env.reset()
    assert observation.shape == (4, 84, 84) and observation.dtype == np.uint8
    for _ in range(3):
        last = observation[-1]
        observation, *_ = env.step(0)
        np.testing.assert_array_equal(observation[-2], last)  # the stack shifts by one frame per step


def test_frame_skip_sums_rewards_and_max_pools_the_last_two_frames():
    skipped, raw = MaxAndSkip(raw_ale("Pong"), skip=4), raw_ale("Pong")
    rng = np.random.default_rng(0)
    pooled_differs_from_last = 0
    for _ in range(150):
        action = int(rng.integers(6))
        observation, reward, *_ = skipped.step(action)
        frames, raw_reward = [], 0.0
        for _ in range(4):
            frame, r, *_ = raw.step(action)
            frames.append(frame)
            raw_reward += r
        np.testing.assert_array_equal(observation, np.maximum(frames[-2], frames[-1]))
        assert reward == raw_reward
        pooled_differs_from_last += not np.array_equal(observation, frames[-1])
    assert pooled_differs_from_last > 10  # the pooling is not a no-op on Pong (moving ball)
    assert raw.unwrapped.ale.getEpisodeFrameNumber() == 600


def test_life_loss_ends_a_training_episode_and_the_return_is_full_game():
    # find a game whose reward does not all come in the last life, so that a per-life return differs
    for seed in range(20):
        episodes, info, _ = play_game(make_env("atari:Breakout", training=True), seed)
        if sum(episodes[-1]) != sum(map(sum, episodes)):
            break
    else:
        raise AssertionError("no seed gave a reward before the last life")
    # Breakout has 5 lives: 4 life-loss ends without "episode" (play_game stops at the first), then game over
    assert len(episodes) == 5
    assert info["lives"] == 0
    assert info["episode"]["return"] == sum(map(sum, episodes))
    # length counts every agent-level step of the game, incl. the automatic FIRE/NOOP reset steps
    assert info["episode"]["length"] >= sum(map(len, episodes))


def test_life_loss_does_not_end_an_evaluation_episode():
    episodes, info, lives = play_game(make_env("atari:Breakout", training=False), seed=3)
    assert len(episodes) == 1  # one episode: the whole game
    assert lives[0] == 5 and lives[-1] == 0 and len(set(lives)) == 6  # lives were lost mid-episode
    assert info["episode"]["return"] == sum(episodes[0])
    assert info["episode"]["length"] == len(episodes[0]) + 2  # + FIRE, action 2 at reset


def test_noop_starts_vary_the_initial_state_across_seeds():
    env = make_env("atari:Pong")
    starts = [env.reset(seed=seed) for seed in range(6)]
    frame_numbers = {info["episode_frame_number"] for _, info in starts}
    assert len(frame_numbers) >= 4
    assert any(not np.array_equal(starts[0][0], observation) for observation, _ in starts[1:])
    # without no-ops the start is deterministic
    env = make_env("atari:Pong?noop_max=0")
    starts = [env.reset(seed=seed) for seed in range(3)]
    assert {info["episode_frame_number"] for _, info in starts} == {8}  # FIRE + action 2, 4 frames each
    # the same seed gives the same start
    np.testing.assert_array_equal(make_env("atari:Pong").reset(seed=5)[0], make_env("atari:Pong").reset(seed=5)[0])


def test_options_reach_the_emulator():
    env = make_env("atari:Pong?sticky=0.25&max_episode_steps=10", seed=0)
    assert env.unwrapped.ale.getFloat("repeat_action_probability") == pytest.approx(0.25)
    assert make_env("atari:Pong").unwrapped.ale.getFloat("repeat_action_probability") == 0.0
    env.reset()
    for step in range(1, 20):
        *_, terminated, truncated, info = env.step(0)
        if truncated:
            break
    assert truncated and not terminated
    assert info["episode"]["length"] == 10  # 2 automatic reset steps + 8 agent steps
    assert step == 8


def test_game_names_are_case_insensitive_and_unknown_ones_are_listed():
    assert make_env("atari:space_invaders").unwrapped.spec.id == "ALE/SpaceInvaders-v5"
    with pytest.raises(ValueError, match=r"unknown Atari game 'Pongg'.*Pong"):
        make_env("atari:Pongg")


@pytest.mark.parametrize("option, accepted", [
    ("sticky=2", "sticky=2.0 for 'atari:Pong?sticky=2' must be a probability, from 0 to 1"),
    ("sticky=-0.5", "sticky=-0.5 for 'atari:Pong?sticky=-0.5' must be a probability"),
    ("noop_max=-1", "noop_max=-1 for 'atari:Pong?noop_max=-1' must be an integer >= 0 (0: no no-op starts"),
    ("frame_skip=0", "frame_skip=0 for 'atari:Pong?frame_skip=0' must be an integer >= 1"),
    ("frame_stack=0", "frame_stack=0 for 'atari:Pong?frame_stack=0' must be an integer >= 1"),
    ("max_episode_steps=0", "max_episode_steps=0 for 'atari:Pong?max_episode_steps=0' must be an integer >= 1"),
    ("max_episode_steps=abc", "max_episode_steps='abc' for 'atari:Pong?max_episode_steps=abc' must be an integer"),
    ("max_episode_steps=none", "max_episode_steps='none' for 'atari:Pong?max_episode_steps=none' must be an integer"),
    ("max_episode_steps=2.5", "max_episode_steps=2.5 for 'atari:Pong?max_episode_steps=2.5' must be an integer"),
])
def test_option_values_out_of_range_are_refused_by_name(option, accepted):
    # they were passed on: sticky=2 and noop_max=-1 ran as if valid, frame_skip=0 failed in reset() with an
    # IndexError, max_episode_steps=abc was an unexpected TypeError
    with pytest.raises(ValueError) as error:
        make_env(f"atari:Pong?{option}")
    assert accepted in str(error.value)
