"""``python:<label>`` — an environment registered nowhere, made by a Python callable given to rtrl.

    train(TrainConfig(env="python:corridor?length=8"), "runs/corridor", env_fn=Corridor)   # Corridor(length=8)
    evaluate("runs/corridor", env_fn=Corridor)

``env_fn(**options) -> gymnasium.Env``; the label names the env in config.json and the options (from the
id and ``env_options``) go to ``env_fn``. The env is held to the same contract as a ``gym:`` env
(``rtrl.envs.gym.adapt``). The command line has no callable to give: there, register the env in a
module and use ``gym:<module>:<id>``.
"""
from __future__ import annotations

import gymnasium as gym

from rtrl.envs.gym import adapt
from rtrl.envs.packages import UserEnvError

OPTIONS = None  # forwarded to env_fn


def make(name: str, *, env_id: str, seed: int | None, training: bool, env_fn=None, **options) -> gym.Env:
    if env_fn is None:
        raise ValueError(f"env {env_id!r} is made by a Python function that rtrl was not given: pass it as env_fn= "
                         "(rtrl.runtime.train.train, rtrl.eval.evaluation.evaluate); the command line cannot, so "
                         "there register the env in a module and use gym:<module>:<id>")
    if not callable(env_fn):
        raise ValueError(f"env_fn for {env_id!r} must be callable (a class or a function), got {env_fn!r}")
    try:
        env = env_fn(**options)
    except TypeError as error:
        raise ValueError(f"env_fn {getattr(env_fn, '__qualname__', env_fn)!r} for {env_id!r} cannot be called with "
                         f"the options {options} ({error})") from None
    except Exception as error:   # the user's code raised
        raise UserEnvError(f"env_fn {getattr(env_fn, '__qualname__', env_fn)!r} for {env_id!r} raised", error) from None
    if not isinstance(env, gym.Env):
        raise ValueError(f"env_fn {getattr(env_fn, '__qualname__', env_fn)!r} for {env_id!r} returned a "
                         f"{type(env).__name__}; it must return a gymnasium.Env")
    return adapt(env, env_id)
