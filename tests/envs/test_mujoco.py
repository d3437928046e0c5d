"""mujoco: ids — the masks keep exactly the simulator's positions or velocities — and Box actions everywhere."""
from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from rtrl.envs import EnvSpec, make_env
from rtrl.envs.batch import action_distribution
from rtrl.envs.mujoco import observation_layout
from rtrl.algos import DiagGaussian, MultiCategorical

pytest.importorskip("mujoco")

# env: (positions in the observation, velocities in it, the clip the env puts on its velocities)
STATED = {"Hopper-v5": (5, 6, 10.0), "HalfCheetah-v5": (8, 9, None), "Walker2d-v5": (8, 9, 10.0),
          "Ant-v5": (13, 14, None), "Swimmer-v5": (3, 5, None)}


def simulator_parts(env: gym.Env, name: str):
    """The positions and velocities as the simulator holds them now (not read from the observation)."""
    data = env.unwrapped.data
    positions, velocities, clip = STATED[name]
    qpos, qvel = data.qpos[-positions:], data.qvel.copy()   # the leading (x, y) coordinates are left out
    return qpos, (qvel if clip is None else np.clip(qvel, -clip, clip))


@pytest.mark.parametrize("name", sorted(STATED))
@pytest.mark.parametrize("observe", ["position", "velocity"])
def test_the_mask_keeps_exactly_the_positions_or_the_velocities(name, observe):
    env = make_env(f"mujoco:{name}?observe={observe}", seed=3)
    positions, velocities, _ = STATED[name]
    assert env.observation_space.shape == ((positions if observe == "position" else velocities),)
    observation, _ = env.reset()
    for step in range(6):
        qpos, qvel = simulator_parts(env, name)
        np.testing.assert_allclose(observation, (qpos if observe == "position" else qvel).astype(np.float32),
                                   rtol=1e-6, atol=1e-6)
        observation, *_ = env.step(env.action_space.sample())


def test_the_mujoco_preset_masks_the_velocities():
    # the issue's target task is Hopper with the velocities masked (Ni et al.'s "-P"); until 2026-12-07 the
    # preset named it so but observed the velocities
    from rtrl.runtime.config import PRESETS
    env = make_env(PRESETS["mujoco"]["env"], seed=0)
    observation, _ = env.reset()
    np.testing.assert_allclose(observation, simulator_parts(env, "Hopper-v5")[0].astype(np.float32), atol=1e-6)


def test_the_stated_layout_covers_the_full_observation_and_ant_contact_forces_are_other():
    raw = gym.make("Ant-v5")
    layout = observation_layout(raw, "mujoco:Ant-v5")
    assert [len(layout[k]) for k in ("position", "velocity", "other")] == [13, 14, 78]
    assert len(observation_layout(gym.make("Ant-v5", include_cfrc_ext_in_observation=False), "x")["other"]) == 0
    full = make_env("mujoco:Ant-v5", seed=0)
    assert full.observation_space.shape == (105,)
    # with the x coordinate kept, the positions grow by one and stay in front
    kept = make_env("mujoco:Hopper-v5?observe=position&exclude_current_positions_from_observation=false", seed=0)
    assert kept.observation_space.shape == (6,)


def test_box_actions_are_gaussian_and_clipped_to_the_bounds():
    env = make_env("mujoco:HalfCheetah-v5", seed=0)
    assert isinstance(env.action_space, spaces.Box) and env.action_space.shape == (6,)
    spec = EnvSpec.probe("mujoco:HalfCheetah-v5", {})
    assert spec.distribution == DiagGaussian(6) and spec.num_actions == 12
    env.reset()
    clipped = []
    env.unwrapped.do_simulation = lambda action, frames: clipped.append(np.array(action))
    try:
        env.step(np.full(6, 5.0, np.float32))
    except Exception:   # the stub skips the physics; what reached it is what matters
        pass
    np.testing.assert_array_equal(clipped[0], np.ones(6))
    assert EnvSpec.probe("gym:Pendulum-v1", {}).distribution == DiagGaussian(1)


def test_multi_discrete_actions_can_be_factored():
    assert make_env("popgym:BattleshipEasy").action_space == spaces.Discrete(64)
    env = make_env("popgym:BattleshipEasy?multi_discrete=factored", seed=0)
    assert env.action_space == spaces.MultiDiscrete([8, 8])
    assert action_distribution(env.action_space) == MultiCategorical((8, 8))
    env.reset()
    env.step(np.array([1, 2]))
    with pytest.raises(ValueError, match="multi_discrete='split'.*accepted: flat, factored"):
        make_env("popgym:BattleshipEasy?multi_discrete=split")
    # on another action space the option would do nothing: it was ignored, the agent acting as without it
    with pytest.raises(ValueError, match=r"multi_discrete='factored' for 'gym:CartPole-v1.*' does nothing: its action "
                                         r"space is Discrete\(2\); accepted with a MultiDiscrete action space only"):
        make_env("gym:CartPole-v1?multi_discrete=factored")
    assert make_env("gym:CartPole-v1?multi_discrete=flat").action_space == spaces.Discrete(2)


class ReceivedActions(gym.Env):
    """Keeps the actions it receives; its action space is set per test."""
    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)

    def __init__(self, space):
        self.action_space, self.received = space, []

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), (action, self.action_space)
        self.received.append(action)
        return np.zeros(2, np.float32), 0.0, False, False, {}


@pytest.mark.parametrize("space, agent_space, agent_action, env_action, factored", [
    # a Discrete counted from -1: the agent's 0..2 are the env's -1..1 (they were passed unshifted: 2 is not in it)
    (spaces.Discrete(3, start=-1), spaces.Discrete(3), 2, 1, False),
    *[(spaces.MultiDiscrete([2, 3], start=[1, -1]), spaces.Discrete(6), 5, np.array([2, 1]), f) for f in (False, True)],
    # a MultiDiscrete of shape (2, 2) gets its own shape (it was given a flat (4,) action)
    *[(spaces.MultiDiscrete([[2, 3], [2, 2]]), spaces.Discrete(24), 23, np.array([[1, 2], [1, 1]]), f)
      for f in (False, True)],
])
def test_discrete_actions_reach_the_env_in_its_own_starts_and_shape(space, agent_space, agent_action, env_action,
                                                                     factored):
    inner = ReceivedActions(space)
    if factored:   # one categorical per component, each counted from 0, in a 1-D space
        agent_space = spaces.MultiDiscrete(space.nvec.reshape(-1))
        agent_action = np.array(np.unravel_index(agent_action, space.nvec.reshape(-1)))
    env = make_env("python:received" + ("?multi_discrete=factored" if factored else ""), env_fn=lambda: inner)
    assert env.action_space == agent_space
    action_distribution(env.action_space)   # an agent can act in it
    env.reset()
    env.step(agent_action)
    np.testing.assert_array_equal(inner.received[-1], env_action)


@pytest.mark.parametrize("env_id, fragments", [
    ("mujoco:Hopper-v5?observe=acceleration", ["observe='acceleration'", "accepted: all, position, velocity"]),
    ("mujoco:Humanoid-v5?observe=velocity", ["'mujoco:Humanoid-v5?observe=velocity'", "Ant, HalfCheetah, Hopper"]),
    ("mujoco:Hoper-v5", ["'Hoper-v5'", "Hopper-v5"]),
    ("mujoco:CartPole-v1", ["'CartPole-v1'", "known:"]),
    # a value the env's constructor cannot take: it was an "unexpected ZeroDivisionError" (exit 1)
    ("mujoco:Hopper-v5?frame_skip=0", ["option frame_skip=0 for 'mujoco:Hopper-v5?frame_skip=0' must be an integer "
                                       ">= 1"]),
    # one it takes: the env ran with dt = -0.002, the simulation standing still and paying the healthy reward
    ("mujoco:Hopper-v5?frame_skip=-1", ["option frame_skip=-1", "must be an integer >= 1"]),
    ("mujoco:Hopper-v5?frame_skip=2.5", ["option frame_skip=2.5", "must be an integer >= 1"]),
    # any other value the constructor raises on is named with the env and its options
    ("mujoco:Hopper-v5?xml_file=nope.xml", ["'Hopper-v5' of 'mujoco:Hopper-v5?xml_file=nope.xml' raised in its "
                                            "constructor", "xml_file='nope.xml'"]),
])
def test_bad_mujoco_ids_are_clear_errors(env_id, fragments):
    with pytest.raises(ValueError) as error:
        make_env(env_id)
    for fragment in fragments:
        assert fragment in str(error.value)


class BinaryActions(gym.Env):
    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = spaces.MultiBinary(3)

    def reset(self, *, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


def test_an_action_space_that_is_neither_discrete_multidiscrete_nor_box_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'python:binary' has action space MultiBinary\(3\); rtrl agents act in a "
                                         r"Discrete, a MultiDiscrete or a 1-D float Box"):
        make_env("python:binary", env_fn=BinaryActions)


def test_a_missing_mujoco_package_says_how_to_install_it(monkeypatch):
    import sys
    from rtrl.envs import MissingPackage
    monkeypatch.setitem(sys.modules, "mujoco", None)   # `import mujoco` now raises ImportError
    with pytest.raises(MissingPackage, match=r"mujoco: environments need the Python package 'mujoco'.*"
                                             r"pip install \"gymnasium\[mujoco\]\""):
        make_env("mujoco:Hopper-v5")


def test_mujoco_warnings_go_to_the_log_once_and_leave_no_file(tmp_path, monkeypatch, caplog):
    """HalfCheetah-v5's model warns at every construction; MuJoCo's own handler writes MUJOCO_LOG.TXT into the
    working directory. Routed: one log record per text per process, no file."""
    import mujoco
    from rtrl.envs import mujoco as rtrl_mujoco
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rtrl_mujoco, "WARNED", set())
    with caplog.at_level("WARNING", logger="rtrl.envs.mujoco"):
        for _ in range(2):
            make_env("mujoco:HalfCheetah-v5", seed=0).close()
    assert list(tmp_path.iterdir()) == []
    assert mujoco.get_mju_user_warning() is rtrl_mujoco._warn
    warned = [r.getMessage() for r in caplog.records if r.name == "rtrl.envs.mujoco"]
    assert len(warned) == 1 and "settotalmass" in warned[0]
