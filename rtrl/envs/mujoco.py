"""``mujoco:<Env-vN>`` — Gymnasium's MuJoCo tasks (``gymnasium[mujoco]``), optionally partially observed.

    mujoco:HalfCheetah-v5                      # the full observation
    mujoco:Hopper-v5?observe=velocity          # joint velocities only (positions masked)
    mujoco:Walker2d-v5?observe=position        # joint positions only (velocities masked)

``observe=position|velocity|all`` keeps the positions (``qpos``), the velocities (``qvel``) or everything,
as the memory-RL literature's "-P" / "-V" tasks do (Ni et al. 2022; Elelimy et al. 2024; Farr et al. 2026).
The layout is the simulator's own, read from the env and checked against its observation's size: the
observation is ``qpos[k:]`` (``k`` leading coordinates left out while
``exclude_current_positions_from_observation`` is on, the default: the torso's x for HalfCheetah, Hopper and
Walker2d, x and y for Ant and Swimmer), then ``qvel`` (Hopper and Walker2d clip it to ±10), then, for Ant
with ``include_cfrc_ext_in_observation`` on (the default), the bodies' external contact forces
``cfrc_ext[1:]``. The contact forces are neither positions nor velocities (they reveal accelerations), so a
masked observation drops them; ``observe=all`` keeps them. ``LAYOUTS`` lists the envs a mask applies to;
``observe=all`` works for any MuJoCo env of Gymnasium.

Other options (``max_episode_steps`` and any keyword of the env's constructor, e.g. ``ctrl_cost_weight``)
go to ``gymnasium.make``. Actions: a Box, clipped to its bounds (``wrappers.ClipBoxAction``).
"""
from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtrl.envs.packages import MissingPackage, UserEnvError
from rtrl.envs.wrappers import FloatVectorObservation, RecordEpisode, check_action_space

OPTIONS = None   # observe, checked here; the rest forwarded to gymnasium.make
OBSERVE = ("all", "position", "velocity")
# leading qpos coordinates an env leaves out of its observation when exclude_current_positions_from_observation
LAYOUTS = {"HalfCheetah": 1, "Hopper": 1, "Walker2d": 1, "Ant": 2, "Swimmer": 2}
log = logging.getLogger(__name__)
WARNED: set[str] = set()   # MuJoCo's warnings logged so far in this process


def route_warnings(mujoco) -> None:
    """MuJoCo's warnings to this module's logger, each text once per process, unless the user set a handler.

    MuJoCo's own handler prints each one and appends it to MUJOCO_LOG.TXT in the working directory: a file
    dropped wherever a run is started (HalfCheetah-v5's model warns at every construction)."""
    if mujoco.get_mju_user_warning() is None:
        mujoco.set_mju_user_warning(_warn)


def _warn(message: str) -> None:
    text = message.strip()
    if text not in WARNED:
        WARNED.add(text)
        log.warning("MuJoCo: %s", text)


def observation_layout(env: gym.Env, env_id: str) -> dict[str, np.ndarray]:
    """Indices of the observation's parts, ``{"position", "velocity", "other"}``, from the simulator's
    ``qpos``/``qvel`` sizes and the env's options; ValueError for an env whose layout is not stated here or
    whose observation does not have the stated size."""
    unwrapped = env.unwrapped
    base = unwrapped.spec.name if unwrapped.spec is not None else type(unwrapped).__name__
    if base not in LAYOUTS:
        raise ValueError(f"observe= masks only envs whose observation layout rtrl states: "
                         f"{', '.join(sorted(LAYOUTS))} (any version); {env_id!r} is not one of them "
                         "(observe=all works for any MuJoCo env)")
    nq, nv = unwrapped.data.qpos.size, unwrapped.data.qvel.size
    excluded = LAYOUTS[base] if unwrapped._exclude_current_positions_from_observation else 0
    other = unwrapped.data.cfrc_ext[1:].size if getattr(unwrapped, "_include_cfrc_ext_in_observation", False) else 0
    positions, velocities = nq - excluded, nv
    size = int(np.prod(env.observation_space.shape))
    if positions + velocities + other != size:
        raise ValueError(f"{env_id!r}: the observation has {size} entries, not the {positions} positions + "
                         f"{velocities} velocities + {other} others of its stated layout; rtrl cannot mask it")
    index = np.arange(size)
    return {"position": index[:positions], "velocity": index[positions:positions + velocities],
            "other": index[positions + velocities:]}


class KeepObservation(gym.ObservationWrapper):
    """Keeps the observation's entries at ``indices`` (a 1-D float observation), in their order."""

    def __init__(self, env: gym.Env, indices: np.ndarray):
        super().__init__(env)
        self.indices = np.asarray(indices, dtype=np.int64)
        space = env.observation_space
        self.observation_space = spaces.Box(space.low[self.indices].astype(np.float32),
                                            space.high[self.indices].astype(np.float32), dtype=np.float32)

    def observation(self, observation):
        return np.asarray(observation, dtype=np.float32)[self.indices]


def make(name: str, *, env_id: str, seed: int | None, training: bool, observe: str = "all", **options) -> gym.Env:
    if observe not in OBSERVE:
        raise ValueError(f"option observe={observe!r} for {env_id!r}; accepted: {', '.join(OBSERVE)}")
    try:
        import mujoco   # gymnasium's MuJoCo envs need it
    except ImportError as error:
        raise MissingPackage("mujoco", "mujoco", error) from None
    route_warnings(mujoco)
    if name not in gym.registry or "mujoco" not in str(gym.spec(name).entry_point):
        mujoco_ids = sorted(k for k, v in gym.registry.items() if "mujoco" in str(v.entry_point))
        raise ValueError(f"unknown MuJoCo env {name!r} in {env_id!r}; known: {', '.join(mujoco_ids)}")
    frame_skip = options.get("frame_skip", 1)
    if type(frame_skip) is not int or frame_skip < 1:   # below 1 the env runs, its dt negative, the simulation still
        raise ValueError(f"option frame_skip={frame_skip!r} for {env_id!r} must be an integer >= 1 (simulator steps "
                         "per env step; left out: the env's own)")
    try:
        env = gym.make(name, **options)
    except TypeError as error:
        raise ValueError(f"bad option for {env_id!r} ({', '.join(sorted(options))}): {error}") from None
    except ImportError:   # the v2/v3 envs, moved out of Gymnasium: its words say where
        raise
    except Exception as error:   # an option's value the env cannot take (frame_skip=0: a division by zero)
        raise UserEnvError(f"the MuJoCo env {name!r} of {env_id!r} raised in its constructor (options: "
                           f"{', '.join(f'{k}={v!r}' for k, v in sorted(options.items())) or 'none'})", error) from None
    if observe != "all":
        env = KeepObservation(env, observation_layout(env, env_id)[observe])
    return RecordEpisode(FloatVectorObservation(check_action_space(env, env_id)))
