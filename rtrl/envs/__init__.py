"""Environment adapters behind one id scheme ``prefix:name[?key=value&...]``.

    from rtrl.envs import make_env
    env = make_env("atari:Pong", seed=0)                 # obs uint8 (4, 84, 84), Discrete(6)
    env = make_env("memory:delayed_recall?delay=30")     # obs float32 (k+2,), Discrete(k)

Prefixes: atari, dmlab, gym, memory, minigrid, mujoco, popgym, procgen, python (one adapter module each in
this package, listed in ``registry.ADAPTERS``; a ``python:`` env comes from an ``env_fn`` callable).
``EnvBatch`` steps several together (actors, evaluation). A missing optional package raises
``MissingPackage`` (an ImportError) holding the command that installs it.
"""
from rtrl.envs.batch import EPISODE_FIELDS, EVAL_SEED_OFFSET, EnvBatch, EnvSpec, env_seeds, episodes_from
from rtrl.envs.packages import MissingPackage, UserEnvError
from rtrl.envs.registry import PREFIXES, frames_per_step, make_env, parse_env_id

__all__ = ["PREFIXES", "make_env", "parse_env_id", "frames_per_step", "EnvBatch", "EnvSpec", "env_seeds",
           "episodes_from", "EPISODE_FIELDS", "EVAL_SEED_OFFSET", "MissingPackage", "UserEnvError"]
