"""``popgym:<EnvName>`` — a POPGym env class by name, e.g. ``popgym:RepeatPreviousEasy``.

Options are forwarded to the class constructor (e.g. ``popgym:RepeatPrevious?num_decks=2&k=3``).
Observations of any kind are flattened to float32 vectors (Discrete -> one-hot, MultiDiscrete ->
concatenated one-hots, Box -> float32, Tuple -> concatenation). MultiDiscrete actions (Battleship,
MineSweeper) become one Discrete action; continuous ones (the Pendulum tasks) are Box actions, clipped to
their bounds.
"""
from __future__ import annotations

import inspect

import gymnasium as gym

from rtrl.envs.packages import MissingPackage, UserEnvError
from rtrl.envs.wrappers import FloatVectorObservation, RecordEpisode, check_action_space

OPTIONS = None  # checked against the env class's constructor below


def env_classes() -> dict[str, type]:
    """Every gymnasium.Env subclass exported by ``popgym.envs``, by class name."""
    try:
        import popgym.envs
    except ImportError as error:
        raise MissingPackage("popgym", "popgym", error) from None

    return {
        name: value
        for name, value in vars(popgym.envs).items()
        if isinstance(value, type) and issubclass(value, gym.Env)
    }


def make(name: str, *, env_id: str, seed: int | None, training: bool, **options) -> gym.Env:
    classes = env_classes()
    if name not in classes:
        raise ValueError(f"unknown POPGym env {name!r} in {env_id!r}; known: {', '.join(sorted(classes))}")
    accepted = [
        p.name for p in inspect.signature(classes[name].__init__).parameters.values()
        if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    for key in options:
        if key not in accepted:
            raise ValueError(
                f"unknown option {key!r} for {env_id!r}; accepted options: {', '.join(accepted) or '(none)'}"
            )
    try:
        env = classes[name](**options)
    except Exception as error:   # an option's value the class cannot take (k='abc', num_decks=0): bad input
        raise UserEnvError(f"the POPGym env {name!r} of {env_id!r} raised in its constructor (options: "
                           f"{', '.join(f'{k}={v!r}' for k, v in sorted(options.items())) or 'none'})", error) from None
    env = check_action_space(env, env_id)
    return RecordEpisode(FloatVectorObservation(env))
