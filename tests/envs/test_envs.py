"""rtrl.envs: the id scheme, errors, the shared contract, and the gym/popgym/minigrid/memory adapters."""
import numpy as np
import pytest
from gymnasium import spaces

from rtrl.envs import PREFIXES, frames_per_step, make_env, parse_env_id
from rtrl.envs.memory import DelayedRecall


def run_episode(env, policy=None, max_steps=10_000):
    """Step ``env`` until a true episode ends; return (rewards, final info). Checks the obs contract."""
    observation, _ = env.reset()
    assert env.observation_space.contains(observation)
    rewards = []
    for _ in range(max_steps):
        action = env.action_space.sample() if policy is None else policy(observation)
        observation, reward, terminated, truncated, info = env.step(action)
        assert observation.dtype == env.observation_space.dtype
        assert observation.shape == env.observation_space.shape
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info
    raise AssertionError("episode did not end")


# ---------------------------------------------------------------- id scheme


def test_parse_env_id_converts_option_types():
    prefix, name, options = parse_env_id("procgen:maze?num_levels=500&rate=0.5&flag=true&off=False&mode=memory")
    assert (prefix, name) == ("procgen", "maze")
    assert options == {"num_levels": 500, "rate": 0.5, "flag": True, "off": False, "mode": "memory"}
    assert type(options["num_levels"]) is int and type(options["rate"]) is float
    assert parse_env_id("gym:CartPole-v1") == ("gym", "CartPole-v1", {})
    overrides = {"delay": 4, "previous_action": True}
    assert parse_env_id("memory:delayed_recall?delay=7&cues=3", overrides)[2] == {"delay": 4, "cues": 3,
                                                                                 "previous_action": True}
    assert overrides == {"delay": 4, "previous_action": True}   # the caller's dict is not changed
    assert set(PREFIXES) == {"atari", "dmlab", "gym", "memory", "minigrid", "mujoco", "popgym", "procgen", "python"}


def test_kwargs_override_options_in_the_id():
    env = make_env("memory:delayed_recall?delay=7&cues=3", delay=4)
    assert env.unwrapped.delay == 4 and env.unwrapped.cues == 3
    assert env.action_space == spaces.Discrete(3)


@pytest.mark.parametrize(
    "env_id, fragments",
    [
        ("atar:Pong", ["'atar'", "atari, dmlab, gym, memory, minigrid, mujoco, popgym, procgen"]),
        ("Pong", ["'Pong'", "prefix:name", "atari"]),
        ("gym:", ["no name"]),
        ("memory:delayed_recall?delay", ["'delay'", "key=value"]),
        ("memory:delayed_recall?delay=5&cues=3&delay=7", ["option 'delay' is given twice", "delay=5", "delay=7",
                                                           "give each option once"]),
        ("memory:delayed_recal", ["'delayed_recal'", "delayed_recall"]),
        ("memory:delayed_recall?cue=3", ["'cue'", "cues, delay"]),
        ("memory:delayed_recall?delay=long", ["delay='long'", "int"]),
        ("gym:CartPol-v1", ["'CartPol-v1'", "CartPole-v1"]),
        ("gym:CartPole-v1?foo=2", ["foo", "max_episode_steps"]),
        pytest.param("popgym:RepeatPreviousEasyy", ["'RepeatPreviousEasyy'", "RepeatPreviousEasy", "CountRecallHard"], marks=pytest.mark.popgym),
        pytest.param("popgym:RepeatPrevious?decks=2", ["'decks'", "num_decks, k"], marks=pytest.mark.popgym),
        # a value the constructor raises on: it was an "unexpected TypeError / AssertionError" (exit 1)
        pytest.param("popgym:RepeatPreviousEasy?k=abc", ["the POPGym env 'RepeatPreviousEasy' of "
                                                         "'popgym:RepeatPreviousEasy?k=abc' raised in its constructor "
                                                         "(options: k='abc')", "TypeError"], marks=pytest.mark.popgym),
        pytest.param("popgym:RepeatPreviousEasy?num_decks=0", ["raised in its constructor (options: num_decks=0)",
                                                               "AssertionError: k cannot be less than"],
                     marks=pytest.mark.popgym),
        pytest.param("minigrid:MiniGrid-Memory-v0", ["'MiniGrid-Memory-v0'", "MiniGrid-MemoryS7-v0"], marks=pytest.mark.minigrid),
        pytest.param("minigrid:MiniGrid-MemoryS7-v0?obs=rgb", ["obs='rgb'", "flat, image"], marks=pytest.mark.minigrid),
        pytest.param("minigrid:MiniGrid-MemoryS7-v0?obs=image&tile_size=0", ["tile_size=0", "an integer >= 1"],
                     marks=pytest.mark.minigrid),
        pytest.param("minigrid:MiniGrid-MemoryS7-v0?tile_size=16", ["tile_size=16", "does nothing with obs='flat'",
                                                                   "obs=image"], marks=pytest.mark.minigrid),
        ("minigrid:MiniGrid-MemoryS7-v0?view=3", ["'view'", "obs, tile_size"]),
    ],
)
def test_errors_name_the_bad_value_and_the_accepted_ones(env_id, fragments):
    with pytest.raises(ValueError) as error:
        make_env(env_id)
    for fragment in fragments:
        assert fragment in str(error.value)


@pytest.mark.parametrize("env_id", ["gym:Pendulum-v1",
                                    pytest.param("popgym:PositionOnlyPendulumEasy", marks=pytest.mark.popgym)])
def test_continuous_action_space_is_a_box(env_id):
    # continuous control is supported (issue 26): a Box, its actions clipped to the bounds
    assert make_env(env_id).action_space == spaces.Box(-2.0, 2.0, (1,), np.float32)


# ---------------------------------------------------------------- contract of the cheap adapters


@pytest.mark.parametrize(
    "env_id, shape, dtype, actions",
    [
        ("gym:CartPole-v1", (4,), np.float32, 2),
        ("gym:FrozenLake-v1", (16,), np.float32, 4),  # Discrete(16) observation -> one-hot
        pytest.param("popgym:RepeatPreviousEasy", (4,), np.float32, 4, marks=pytest.mark.popgym),  # Discrete(4) -> one-hot
        pytest.param("popgym:AutoencodeEasy", (6,), np.float32, 4, marks=pytest.mark.popgym),  # Tuple(Discrete(2), Discrete(4))
        pytest.param("popgym:CountRecallEasy", (4,), np.float32, 27, marks=pytest.mark.popgym),  # MultiDiscrete([2, 2])
        pytest.param("popgym:PositionOnlyCartPoleEasy", (2,), np.float32, 2, marks=pytest.mark.popgym),  # Box
        pytest.param("popgym:BattleshipEasy", (2,), np.float32, 64, marks=pytest.mark.popgym),  # MultiDiscrete([8, 8]) actions -> 64
        pytest.param("minigrid:MiniGrid-MemoryS7-v0", (151,), np.float32, 7, marks=pytest.mark.minigrid),
        pytest.param("minigrid:MiniGrid-MemoryS7-v0?obs=image", (3, 56, 56), np.uint8, 7, marks=pytest.mark.minigrid),
        ("memory:delayed_recall", (4,), np.float32, 2),
    ],
)
def test_adapter_contract(env_id, shape, dtype, actions):
    env = make_env(env_id, seed=0)
    assert isinstance(env.observation_space, spaces.Box)
    assert env.observation_space.shape == shape and env.observation_space.dtype == dtype
    assert env.action_space == spaces.Discrete(actions)
    rewards, info = run_episode(env)
    assert info["episode"]["length"] == len(rewards)
    assert info["episode"]["return"] == pytest.approx(sum(rewards))
    assert isinstance(info["episode"]["return"], float) and isinstance(info["episode"]["length"], int)


@pytest.mark.popgym
def test_one_hot_flattening_of_popgym_observations():
    env = make_env("popgym:AutoencodeEasy", seed=1)  # Tuple(Discrete(2), Discrete(4))
    observation, _ = env.reset()
    assert set(np.unique(observation)) <= {0.0, 1.0}
    assert observation[:2].sum() == 1.0 and observation[2:].sum() == 1.0
    env = make_env("popgym:CountRecallEasy", seed=1)  # MultiDiscrete([2, 2])
    env.reset()
    for _ in range(5):
        observation, *_ = env.step(env.action_space.sample())
        assert observation[:2].sum() == 1.0 and observation[2:].sum() == 1.0


@pytest.mark.popgym
def test_same_seed_same_episode_different_seed_differs():
    def first_observations(seed):
        env = make_env("popgym:RepeatPreviousEasy", seed=seed)
        observations = [env.reset()[0]]
        observations += [env.step(0)[0] for _ in range(20)]
        return np.stack(observations)

    np.testing.assert_array_equal(first_observations(3), first_observations(3))
    assert not np.array_equal(first_observations(3), first_observations(4))


# ---------------------------------------------------------------- minigrid


@pytest.mark.minigrid
def test_minigrid_flat_observation_layout():
    env = make_env("minigrid:MiniGrid-MemoryS7-v0", seed=0)
    observation, _ = env.reset()
    raw = env.unwrapped.gen_obs()
    np.testing.assert_array_equal(observation[:147], raw["image"].reshape(-1).astype(np.float32))
    direction = np.zeros(4, np.float32)
    direction[env.unwrapped.agent_dir] = 1
    np.testing.assert_array_equal(observation[147:], direction)


@pytest.mark.minigrid
def test_minigrid_success_is_positive_final_reward():
    # Empty-5x5: agent at (1, 1) facing right, goal at (3, 3): forward, forward, right, forward, forward
    env = make_env("minigrid:MiniGrid-Empty-5x5-v0", seed=0)
    plan = iter([2, 2, 1, 2, 2])
    rewards, info = run_episode(env, policy=lambda _: next(plan))
    assert rewards[-1] > 0 and info["episode"]["success"] == 1.0 and info["episode"]["length"] == 5
    rewards, info = run_episode(env, policy=lambda _: 0)  # turning left forever: time out
    assert sum(rewards) == 0 and info["episode"]["success"] == 0.0


# ---------------------------------------------------------------- delayed recall


def test_delayed_recall_observations_rewards_and_length():
    delay, cues = 5, 3
    env = make_env(f"memory:delayed_recall?delay={delay}&cues={cues}", seed=0)
    for answer_correctly in (True, False, True):
        observation, _ = env.reset()
        cue = int(np.argmax(observation[:cues]))
        np.testing.assert_array_equal(observation, np.eye(cues + 2, dtype=np.float32)[cue])
        for t in range(1, delay + 1):  # blank steps: rewards 0 whatever the action
            observation, reward, terminated, truncated, info = env.step(cue)
            np.testing.assert_array_equal(observation, np.eye(cues + 2, dtype=np.float32)[cues])
            assert (reward, terminated, truncated) == (0.0, False, False)
        observation, reward, terminated, truncated, info = env.step((cue + 1) % cues)  # ignored
        np.testing.assert_array_equal(observation, np.eye(cues + 2, dtype=np.float32)[cues + 1])
        assert (reward, terminated) == (0.0, False)
        answer = cue if answer_correctly else (cue + 1) % cues
        _, reward, terminated, truncated, info = env.step(answer)
        assert terminated and not truncated
        assert reward == (1.0 if answer_correctly else 0.0)
        assert info["episode"] == {"return": reward, "length": delay + 2, "success": reward}


def test_delayed_recall_cues_are_seeded_and_cover_all_symbols():
    def cues(seed):
        env = DelayedRecall(cues=4, delay=0)
        return [int(np.argmax(env.reset(seed=seed + i)[0][:4])) for i in range(40)]

    assert cues(0) == cues(0)
    assert sorted(set(cues(0))) == [0, 1, 2, 3]
    env = make_env("memory:delayed_recall", seed=11)
    other = make_env("memory:delayed_recall", seed=11)
    assert [env.reset()[0].tolist() for _ in range(10)] == [other.reset()[0].tolist() for _ in range(10)]


def test_delayed_recall_zero_delay_and_bad_sizes():
    env = make_env("memory:delayed_recall?delay=0&cues=2", seed=0)
    observation, _ = env.reset()
    cue = int(np.argmax(observation[:2]))
    observation, reward, terminated, *_ = env.step(1 - cue)
    assert observation[3] == 1.0 and reward == 0.0 and not terminated
    _, reward, terminated, _, info = env.step(cue)
    assert reward == 1.0 and terminated and info["episode"]["length"] == 2
    with pytest.raises(ValueError, match="cues >= 2"):
        make_env("memory:delayed_recall?cues=1")


def test_frames_are_steps_times_the_frame_skip():
    assert frames_per_step("atari:Pong") == 4
    assert frames_per_step("atari:Pong?frame_skip=3") == 3
    assert frames_per_step("atari:Pong", {"frame_skip": 2}) == 2
    assert frames_per_step("dmlab:rooms_watermaze") == 4
    assert frames_per_step("procgen:coinrun") == 1 and frames_per_step("gym:CartPole-v1") == 1
