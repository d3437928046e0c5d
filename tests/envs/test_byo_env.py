"""Bring your own environment: ``gym:<module>:<id>`` (Gymnasium's module:EnvId form) and a ``python:<label>``
env made by an ``env_fn`` given to train / evaluate. The README's example runs end to end, with actor
processes, in tests/test_readme.py."""
import functools
import json
import sys

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from conftest import small_config
from rtrl.envs import EnvSpec, make_env
from rtrl.eval.evaluation import EvalConfig, evaluate
from rtrl.runtime.backends.local import check_sendable
from rtrl.runtime.train import train
from rtrl.settings import SettingError


class Ring(gym.Env):
    """Observation: one-hot position on a ring of ``size``; action 1 moves right; paid 1 at position 0."""

    action_space = spaces.Discrete(2)

    def __init__(self, size: int = 3):
        self.size = size
        self.observation_space = spaces.Box(0.0, 1.0, (size,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position, self.steps = 1, 0
        return self._observation(), {}

    def step(self, action):
        self.position = (self.position + int(action)) % self.size
        self.steps += 1
        return self._observation(), float(self.position == 0), False, self.steps >= 6, {}

    def _observation(self):
        return np.eye(self.size, dtype=np.float32)[self.position]


MODULE = '''
import gymnasium as gym
gym.register("RtrlRing-v0", entry_point="test_byo_env:Ring")
'''


@pytest.fixture
def ring_module(tmp_path, monkeypatch):
    """A module that registers RtrlRing-v0 when imported, importable from tmp_path."""
    (tmp_path / "rtrl_ring_envs.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "rtrl_ring_envs"
    gym.registry.pop("RtrlRing-v0", None)
    sys.modules.pop("rtrl_ring_envs", None)


def test_gym_module_form_imports_the_module_that_registers_the_env(ring_module):
    assert "RtrlRing-v0" not in gym.registry
    env = make_env(f"gym:{ring_module}:RtrlRing-v0?size=5", seed=0)
    assert env.observation_space.shape == (5,) and env.action_space == spaces.Discrete(2)
    assert "RtrlRing-v0" in gym.registry


def test_a_run_on_a_module_env_trains_and_evaluates(tmp_path, ring_module):
    cfg = small_config(env=f"gym:{ring_module}:RtrlRing-v0", total_steps=40)
    assert train(cfg, tmp_path / "run", progress=False)["steps"] == 40
    assert evaluate(tmp_path / "run", EvalConfig(episodes=2))["lengths"] == [6, 6]


def test_an_env_fn_makes_a_python_env_with_the_options_of_its_id(tmp_path):
    cfg = small_config(env="python:ring?size=4", total_steps=40)
    summary = train(cfg, tmp_path / "run", progress=False, env_fn=Ring)
    assert summary["finished"] and json.loads((tmp_path / "run" / "config.json").read_text())["env"] == "python:ring?size=4"
    result = evaluate(tmp_path / "run", EvalConfig(episodes=3), env_fn=Ring)
    assert result["lengths"] == [6, 6, 6] and set(result["returns"]) <= {0.0, 1.0, 2.0}
    assert EnvSpec.probe("python:ring", {"size": 7}, Ring).obs_shape == (7,)
    # any callable works in this process (num_actors=0), a lambda too
    summary = train(small_config(env="python:ring", total_steps=40), tmp_path / "lambda", progress=False,
                    env_fn=lambda: Ring(size=2))
    assert summary["steps"] == 40


@pytest.mark.parametrize("env_fn, sendable", [
    (Ring, True), (functools.partial(Ring, size=5), True), (lambda: Ring(), False),
])
def test_what_the_spawned_actors_can_receive(env_fn, sendable):
    if sendable:
        check_sendable(env_fn)
    else:
        with pytest.raises(SettingError, match="cannot be sent to the actor processes .*not a lambda"):
            check_sendable(env_fn)


def test_an_env_fn_that_cannot_reach_the_actors_is_refused_before_the_run_starts(tmp_path):
    with pytest.raises(SettingError) as error:
        train(small_config(env="python:ring", num_actors=1), tmp_path / "run", progress=False, env_fn=lambda: Ring())
    assert "set num_actors to 0 to step the environments in this process" in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("env_id, env_fn, message", [
    ("python:ring", None, "made by a Python function that rtrl was not given: pass it as env_fn="),
    ("memory:delayed_recall", Ring, "env_fn is given, so the env id must be python:<label>"),
    ("python:ring?size=3&colour=red", Ring, "cannot be called with the options {'size': 3, 'colour': 'red'}"),
    ("python:ring", lambda: "not an env", "returned a str; it must return a gymnasium.Env"),
    ("python:ring", 5, "must be callable"),
])
def test_env_fn_errors(env_id, env_fn, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("{", r"\{").replace("?", r"\?")):
        make_env(env_id, env_fn=env_fn)


def _needs_a_missing_package(**options):
    raise gym.error.DependencyNotInstalled("Box2D is not installed, you can install it with pip")


gym.register("RtrlNeedsPackage-v0", entry_point=_needs_a_missing_package)


def test_a_registered_env_whose_package_is_missing_is_named_as_such_not_as_unknown():
    # Gymnasium registers BipedalWalker without Box2D: the error must not call a registered id unknown
    with pytest.raises(ValueError) as error:
        make_env("gym:RtrlNeedsPackage-v0")
    message = str(error.value)
    assert "'RtrlNeedsPackage-v0'" in message and "needs a package that is not installed" in message
    assert "Box2D is not installed" in message and "unknown" not in message
