"""procgen: gym3 -> gymnasium adapter; level-set options must reach the game.

The first ProcGen env built in a process loads assets (~3 s); later ones take ~1 ms.
"""
import numpy as np
import pytest
from gymnasium import spaces

from rtrl.envs import make_env


def first_frame(env_id, seed=0, **options):
    return make_env(env_id, seed=seed, **options).reset()[0]


@pytest.mark.procgen
def test_observation_and_actions():
    env = make_env("procgen:chaser", seed=0)
    assert env.observation_space == spaces.Box(0, 255, (3, 64, 64), np.uint8)
    assert env.action_space == spaces.Discrete(15)
    observation, _ = env.reset()
    assert observation.shape == (3, 64, 64) and observation.dtype == np.uint8
    assert observation.std() > 0


@pytest.mark.procgen
def test_level_set_options_reach_the_game():
    one_level = "procgen:chaser?num_levels=1"
    # same start level: same first frame whatever the seed; another start level: another frame
    np.testing.assert_array_equal(first_frame(one_level, seed=0, start_level=7), first_frame(one_level, seed=1, start_level=7))
    assert not np.array_equal(first_frame(one_level, start_level=7), first_frame(one_level, start_level=8))
    _, info = make_env(one_level, start_level=7).reset()
    assert info["level_seed"] == 7
    # distribution_mode reaches the game too
    assert not np.array_equal(
        first_frame("procgen:maze?num_levels=1&start_level=3&distribution_mode=easy"),
        first_frame("procgen:maze?num_levels=1&start_level=3&distribution_mode=hard"),
    )
    # unlimited levels: the seed picks the level
    assert not np.array_equal(first_frame("procgen:chaser", seed=0), first_frame("procgen:chaser", seed=1))
    np.testing.assert_array_equal(first_frame("procgen:chaser", seed=2), first_frame("procgen:chaser", seed=2))


@pytest.mark.procgen
def test_episode_end_auto_resets_to_the_same_single_level():
    env = make_env("procgen:coinrun?num_levels=1&start_level=4&distribution_mode=easy", seed=0)
    start, _ = env.reset()
    for steps in range(1, 1001):  # coinrun times out after 1000 steps
        observation, reward, terminated, truncated, info = env.step(env.action_space.sample())
        if terminated:
            break
    assert terminated and not truncated
    assert info["episode"]["length"] == steps and info["episode"]["success"] in (0.0, 1.0)
    assert info["episode"]["success"] == float(reward > 0)  # coinrun: reward only for the coin
    assert info["level_seed"] == 4  # the next episode is the same (only) level
    np.testing.assert_array_equal(observation, start)  # gym3 already returned its first frame
    again, _ = env.reset()
    np.testing.assert_array_equal(again, start)


@pytest.mark.parametrize(
    "env_id, fragment",
    [
        ("procgen:chase", "chaser"),
        pytest.param("procgen:chaser?distribution_mode=memory", "caveflyer, dodgeball, heist, jumper, maze, miner", marks=pytest.mark.procgen),
        pytest.param("procgen:bigfish?distribution_mode=extreme", "chaser, dodgeball, leaper, starpilot", marks=pytest.mark.procgen),
        pytest.param("procgen:maze?distribution_mode=memry", "easy, hard, extreme, memory, exploration", marks=pytest.mark.procgen),
        pytest.param("procgen:maze?distribution_mode=exploration&num_levels=3", "exploration", marks=pytest.mark.procgen),
        ("procgen:maze?levels=3", "num_levels, start_level"),
        # the library's int32 options: an AssertionError with no message at the first reset
        pytest.param("procgen:maze?start_level=99999999999", "num_levels and start_level must be integers from 0 to "
                     "2**31 - 1", marks=pytest.mark.procgen),
        pytest.param("procgen:maze?num_levels=-1", "num_levels and start_level must be integers from 0",
                     marks=pytest.mark.procgen),
    ],
)
def test_bad_game_or_mode_is_a_value_error_not_a_crash(env_id, fragment):
    with pytest.raises(ValueError) as error:
        make_env(env_id)
    assert fragment in str(error.value)
