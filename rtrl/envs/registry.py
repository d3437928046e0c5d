"""One id scheme for every environment: ``prefix:name[?key=value&key=value]``.

Each prefix is served by one adapter module of this package (``ADAPTERS``), which defines

    OPTIONS: dict[str, default] | None    # accepted option keys and defaults; None = passed through
    FRAMES_PER_STEP: str | None           # the option counting emulator frames per agent step, if any
    make(name, *, env_id, seed, training, **options) -> gymnasium.Env

and returns an env that already satisfies the contract of :func:`make_env`. The adapters import
their environment package (ale_py, procgen, popgym, minigrid, mujoco, deepmind_lab) only when an env is made.
A new env family is a new adapter module and one entry in ``ADAPTERS``.
"""
from __future__ import annotations

import gymnasium as gym

from rtrl.envs import atari, dmlab, memory, minigrid, mujoco, popgym, procgen
from rtrl.envs import gym as gym_adapter
from rtrl.envs import python as python_adapter
from rtrl.envs.wrappers import FlattenMultiDiscreteAction, PreviousAction, SeedOnFirstReset

ADAPTERS = {"atari": atari, "dmlab": dmlab, "gym": gym_adapter, "memory": memory, "minigrid": minigrid,
            "mujoco": mujoco, "popgym": popgym, "procgen": procgen, "python": python_adapter}
PREFIXES = tuple(ADAPTERS)
KIND_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def _convert(text: str):
    """Option value text -> bool ('true'/'false'), int, float, or the string itself."""
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for number_type in (int, float):
        try:
            return number_type(text)
        except ValueError:
            pass
    return text


def parse_env_id(env_id: str, overrides: dict | None = None) -> tuple[str, str, dict]:
    """``'atari:Pong?sticky=0.25&max_episode_steps=27000'`` -> ``('atari', 'Pong', {...})``; the options
    in ``overrides`` (a run's ``env_options``) replace the id's.

    Option values are converted to bool (true/false), int or float when they parse as such.
    Raises ValueError for a missing or unknown prefix, an empty name or a malformed or repeated option.
    """
    known = ", ".join(PREFIXES)
    if not isinstance(env_id, str) or ":" not in env_id:
        raise ValueError(f"env id {env_id!r} must look like 'prefix:name'; known prefixes: {known}")
    prefix, rest = env_id.split(":", 1)
    if prefix not in PREFIXES:
        raise ValueError(f"unknown env id prefix {prefix!r} in {env_id!r}; known prefixes: {known}")
    name, _, query = rest.partition("?")
    if not name:
        raise ValueError(f"env id {env_id!r} has no name after '{prefix}:'")
    options = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"malformed option {item!r} in {env_id!r}; expected key=value")
        if key in options:   # which one was meant is not for us to guess
            first = next(i for i in query.split("&") if i.partition("=")[0] == key)
            raise ValueError(f"option {key!r} is given twice in {env_id!r} ({first} and {item}); give each option once")
        options[key] = _convert(value)
    options.update(overrides or {})
    return prefix, name, options


def _check_options(env_id: str, accepted: dict, options: dict) -> dict:
    """Fill defaults, reject unknown keys, coerce values to the default's type where it is safe."""
    checked = dict(accepted)
    for key, value in options.items():
        if key not in accepted:
            keys = ", ".join(sorted(accepted)) or "(none)"
            raise ValueError(f"unknown option {key!r} for {env_id!r}; accepted options: {keys}")
        default = accepted[key]
        if default is None or value is None or type(value) is type(default):
            checked[key] = value
        elif isinstance(default, str):
            checked[key] = str(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            checked[key] = float(value)
        else:
            raise ValueError(
                f"option {key}={value!r} for {env_id!r} must be {KIND_NAMES.get(type(default), type(default).__name__)} "
                f"(default {default!r})"
            )
    return checked


def make_env(env_id: str, seed: int | None = None, training: bool = True, env_fn=None, **options) -> gym.Env:
    """Build the environment named by ``env_id``; ``options`` override those in the id string.
    ``env_fn``: the callable that makes a ``python:<label>`` env (``rtrl.envs.python``).

    Examples: ``atari:Pong``, ``procgen:chaser?num_levels=500&distribution_mode=memory``,
    ``dmlab:rooms_watermaze``, ``popgym:RepeatPreviousEasy``, ``minigrid:MiniGrid-MemoryS7-v0``,
    ``gym:CartPole-v1``, ``gym:my_package.envs:MyEnv-v0``, ``mujoco:Hopper-v5?observe=velocity``, ``memory:delayed_recall?delay=30&cues=2``,
    ``python:my-env`` (with ``env_fn``).

    Every id takes ``previous_action=true``: the observation ends with the one-hot of the previous action
    (``wrappers.PreviousAction``; 1-D observations, Discrete actions only), and ``multi_discrete=flat|factored``:
    a MultiDiscrete action space flattened into one Discrete (the default) or kept (one categorical per
    component, ``rtrl.algos.MultiCategorical``).

    ``seed`` is used by the first ``reset()`` called without a seed (and seeds the action space).
    ``training=False`` selects evaluation semantics (Atari: no end-of-life episode ends;
    DMLab: held-out test levels).

    The returned env follows the gymnasium API with a ``Discrete``, ``MultiDiscrete`` (factored) or 1-D
    ``Box`` action space (actions clipped to its bounds) and a ``Box``
    observation space that is either a 1-D float32 vector or a uint8 image (C, H, W). On the step
    that ends a true episode, ``info["episode"] = {"return": float, "length": int}`` (plus
    ``"success": 0.0/1.0`` for tasks with a notion of success); the return is unclipped.
    """
    prefix, name, parsed = parse_env_id(env_id, options)
    previous_action = parsed.pop("previous_action", False)
    if not isinstance(previous_action, bool):
        raise ValueError(f"option previous_action={previous_action!r} for {env_id!r} must be true or false")
    multi_discrete = parsed.pop("multi_discrete", "flat")
    if multi_discrete not in ("flat", "factored"):
        raise ValueError(f"option multi_discrete={multi_discrete!r} for {env_id!r}; accepted: flat, factored")
    adapter = ADAPTERS[prefix]
    if adapter.OPTIONS is not None:
        parsed = _check_options(env_id, adapter.OPTIONS, parsed)
    if prefix == "python":
        parsed["env_fn"] = env_fn
    elif env_fn is not None:
        raise ValueError(f"env_fn is given, so the env id must be python:<label> (the label names the env in the "
                         f"run's config), not {env_id!r}")
    env = adapter.make(name, env_id=env_id, seed=seed, training=training, **parsed)
    if multi_discrete == "factored":
        _factor_multi_discrete(env, env_id)
    if previous_action:
        env = PreviousAction(env)
    return SeedOnFirstReset(env, seed)


def _factor_multi_discrete(env: gym.Env, env_id: str) -> None:
    """One categorical per component of the env's MultiDiscrete actions; a ValueError for any other action space
    (the option would do nothing there)."""
    wrapper = env
    while isinstance(wrapper, gym.Wrapper) and not isinstance(wrapper, FlattenMultiDiscreteAction):
        wrapper = wrapper.env
    if not isinstance(wrapper, FlattenMultiDiscreteAction):
        space = env.action_space
        env.close()
        raise ValueError(f"option multi_discrete='factored' for {env_id!r} does nothing: its action space is {space}; "
                         "accepted with a MultiDiscrete action space only (leave the option out)")
    wrapper.factor()


def frames_per_step(env_id: str, env_options: dict | None = None) -> int:
    """Environment frames per agent step: the Atari frame skip, DMLab's action repeat, else 1."""
    prefix, _, options = parse_env_id(env_id, env_options)
    key = getattr(ADAPTERS[prefix], "FRAMES_PER_STEP", None)
    return 1 if key is None else int(options.get(key, ADAPTERS[prefix].OPTIONS[key]))
