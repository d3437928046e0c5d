"""Environment adapters behind one id scheme ``prefix:name[?key=value&...]``.

    from rtrl.envs import make_env
    env = make_env("atari:Pong", seed=0)                 # obs uint8 (4, 84, 84), Discrete(6)
    env = make_env("memory:delayed_recall?delay=30")     # obs float32 (k+2,), Discrete(k)

Prefixes: atari, dmlab, gym, memory, minigrid, popgym, procgen (one module each in this package).
"""
from rtrl.envs.registry import PREFIXES, make_env, parse_env_id

__all__ = ["PREFIXES", "make_env", "parse_env_id"]
