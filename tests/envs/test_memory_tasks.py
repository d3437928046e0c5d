"""The built-in memory tasks beyond delayed recall: chance level, the memory span, seeding, errors."""
import numpy as np
import pytest
from gymnasium import spaces

from rtrl.envs import make_env
from rtrl.envs.memory import SequenceRecall


def play(env, policy, episodes: int, seed: int = 0):
    """(returns, successes) of ``episodes`` episodes; ``policy(history_of_observations, env)`` -> action."""
    returns, successes = [], []
    env.reset(seed=seed)
    env.action_space.seed(seed)
    for episode in range(episodes):
        observation, _ = env.reset() if episode else env.reset(seed=seed)
        history, total = [observation], 0.0
        while True:
            observation, reward, terminated, truncated, info = env.step(policy(history, env))
            history.append(observation)
            total += reward
            if terminated or truncated:
                break
        returns.append(total)
        successes.append(info["success"])
    return np.array(returns), np.array(successes)


def windowed(window: int):
    """A policy that sees only its last ``window`` observations (a memory of that span) and answers a query
    with the symbol of the cue shown exactly L + D steps earlier, if that is inside its window (else 0)."""
    def policy(history, env):
        inner = env.unwrapped
        span = inner.length + inner.delay
        if len(history) > span and len(history) - 1 - span >= len(history) - window:
            cue = history[-1 - span][:inner.cues]
            if cue.any():
                return int(cue.argmax())
        return 0
    return policy


def test_sequence_recall_layout_rewards_and_length():
    env = make_env("memory:sequence_recall?cues=3&length=2&delay=4", seed=5)
    inner = env.unwrapped
    assert env.observation_space == spaces.Box(0.0, 1.0, (3 + 2 + 2,), np.float32)
    assert env.action_space == spaces.Discrete(3)
    observation, _ = env.reset()
    sequence = list(inner._sequence)
    assert observation[:3].argmax() == sequence[0] and observation[3:5].tolist() == [1, 0]
    observation, *_ = env.step(0)
    assert observation[:3].argmax() == sequence[1] and observation[3:5].tolist() == [0, 1]
    for step in range(5):   # answering at the last cue and the 4 blanks pays nothing; then the first query shows
        observation, reward, *_ = env.step(0)
        assert reward == 0.0 and observation[5] == (step < 4)
    assert observation[3:].tolist() == [1, 0, 0, 1]
    rewards = []
    for answer in (sequence[0], (sequence[1] + 1) % 3):   # first right, second wrong
        observation, reward, terminated, _, info = env.step(answer)
        rewards.append(reward)
    assert rewards == [0.5, 0.0] and terminated
    assert info["episode"] == {"return": 0.5, "length": 2 * 2 + 4, "success": 0.0}


def test_sequence_recall_query_observations_name_the_position():
    env = SequenceRecall(cues=2, length=3, delay=2)
    observation, _ = env.reset(seed=0)
    seen = [observation]
    for _ in range(env.episode_length - 1):
        seen.append(env.step(0)[0])
    queries = seen[3 + 2:]
    assert [q[2:5].argmax() for q in queries] == [0, 1, 2] and all(q[-1] == 1 and q[:2].sum() == 0 for q in queries)
    assert all(b[5] == 1 and b.sum() == 1 for b in seen[3:5])


def test_a_random_policy_scores_chance():
    env = make_env("memory:sequence_recall?cues=4&length=3&delay=2", seed=0)
    returns, successes = play(env, lambda history, e: e.action_space.sample(), 3000)
    assert abs(returns.mean() - 1 / 4) < 0.02            # each answer right with probability 1/k
    assert abs(successes.mean() - 1 / 4 ** 3) < 0.01     # all L right: 1/k^L
    env = make_env("memory:delayed_recall?cues=4&delay=3", seed=0)
    _, successes = play(env, lambda history, e: e.action_space.sample(), 3000)
    assert abs(successes.mean() - 1 / 4) < 0.025


@pytest.mark.parametrize("length, delay", [(3, 7), (1, 20), (4, 0)])
def test_the_memory_span_is_length_plus_delay(length, delay):
    env = make_env(f"memory:sequence_recall?cues=4&length={length}&delay={delay}", seed=2)
    span = length + delay
    returns, successes = play(env, windowed(span + 1), 200)   # holds exactly what it must
    assert returns.min() == 1.0 and successes.min() == 1.0
    returns, _ = play(env, windowed(span), 400)               # one step short: answers 0, right 1/4 of the time
    assert 0.15 < returns.mean() < 0.35


def test_same_seed_same_sequences_different_seed_differs():
    def sequences(seed):
        env = make_env("memory:sequence_recall?cues=5&length=4&delay=1", seed=seed)
        out = []
        for _ in range(20):
            env.reset()
            out.append(tuple(env.unwrapped._sequence))
        return out
    assert sequences(7) == sequences(7)
    assert sequences(7) != sequences(8)
    assert len({s for seq in sequences(7) for s in seq}) == 5


@pytest.mark.parametrize("env_id, fragments", [
    ("memory:delayed_recall?length=2", ["length=2", "sequence_recall", "cues, delay"]),
    ("memory:sequence_recall?length=0", ["length=0", ">= 1"]),
    ("memory:sequence_recall?length=two", ["length='two'", "integer"]),
    ("memory:sequence_recall?cues=1", ["cues=1", ">= 2"]),
    ("memory:sequence_recal", ["'sequence_recal'", "delayed_recall, sequence_recall"]),
])
def test_bad_options_name_the_value_and_the_accepted_ones(env_id, fragments):
    with pytest.raises(ValueError) as error:
        make_env(env_id)
    assert all(f in str(error.value) for f in fragments), str(error.value)


@pytest.mark.popgym
@pytest.mark.procgen
def test_previous_action_is_appended_as_a_one_hot():
    env = make_env("memory:sequence_recall?cues=3&length=2&delay=1&previous_action=true", seed=0)
    assert env.observation_space.shape == (3 + 2 + 2 + 3,)
    observation, _ = env.reset()
    assert observation[-3:].tolist() == [0, 0, 0]
    observation, *_ = env.step(2)
    assert observation[-3:].tolist() == [0, 0, 1] and observation[:7].sum() == 2   # the second cue (symbol, position)
    plain = make_env("popgym:RepeatPreviousEasy", seed=1)
    wrapped = make_env("popgym:RepeatPreviousEasy", seed=1, previous_action=True)
    assert np.array_equal(wrapped.reset()[0][:-4], plain.reset()[0])
    with pytest.raises(ValueError, match="previous_action='yes' .* must be true or false"):
        make_env("memory:delayed_recall?previous_action=yes")
    with pytest.raises(ValueError, match="needs a 1-D float32 observation"):
        make_env("procgen:coinrun?previous_action=true")
