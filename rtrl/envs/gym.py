"""``gym:<id>`` — any Gymnasium env with a Discrete, MultiDiscrete or 1-D Box action space (``gym:Pendulum-v1``:
continuous control, a Gaussian policy); ``gym:<module>:<id>`` imports ``module``
first (Gymnasium's own ``module:EnvId`` form: the module registers the env when imported). That is how
a user's own env runs from the command line: ``--env gym:my_package.envs:MyEnv-v0``, with
``my_package`` importable (installed, or on PYTHONPATH); each actor process imports it too.

Options: ``max_episode_steps`` (int) plus any keyword the env's constructor accepts (forwarded to
``gymnasium.make``). Observations: uint8 (H, W, C) images become (C, H, W); everything else
(Box, Discrete -> one-hot, MultiDiscrete, Tuple, Dict) becomes a flat float32 vector.
"""
from __future__ import annotations

import difflib
import inspect
import multiprocessing
import sys

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rtrl.envs.packages import UserEnvError
from rtrl.envs.wrappers import ChannelFirstImage, FloatVectorObservation, RecordEpisode, check_action_space

OPTIONS = None  # forwarded to gymnasium.make


def vector_or_image(env: gym.Env) -> gym.Env:
    """Wrap ``env`` so its observation is a uint8 (C, H, W) image or a float32 vector."""
    space = env.observation_space
    if isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3:
        return ChannelFirstImage(env)
    return FloatVectorObservation(env)


def accepted_options(name: str) -> list[str]:
    """Keyword options ``gymnasium.make(name, ...)`` accepts: its own plus the env constructor's."""
    accepted = ["max_episode_steps", "render_mode"]
    creator = gym.envs.registration.load_env_creator(gym.spec(name).entry_point)
    try:
        parameters = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # some C-implemented creators have no signature
        return accepted
    names = [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return list(dict.fromkeys(accepted + names))


def adapt(env: gym.Env, env_id: str) -> gym.Env:
    """A Gymnasium env held to the adapters' contract (``rtrl.envs.make_env``): Discrete actions
    (MultiDiscrete flattened) or Box actions (clipped to the bounds), a float32 vector or uint8 (C, H, W) image observation, episode records."""
    return RecordEpisode(vector_or_image(check_action_space(env, env_id)))


SPAWNED_HINT = ("; an env that the training program registered with gymnasium.register is unknown to rtrl's actor "
                "processes (they are spawned, and import only modules): register it when a module is imported and "
                "name the module (gym:<module>:<id>), or pass env_fn= to rtrl.runtime.train.train")


def _unknown(name: str, env_id: str) -> ValueError:
    close = difflib.get_close_matches(name, list(gym.registry), n=8, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else "see gymnasium.pprint_registry()"
    in_an_actor = multiprocessing.parent_process() is not None   # the learner found it: it was registered there only
    return ValueError(f"unknown Gymnasium env {name!r} in {env_id!r}; {hint}{SPAWNED_HINT if in_an_actor else ''}")


def make(name: str, *, env_id: str, seed: int | None, training: bool, **options) -> gym.Env:
    module, _, registered = name.rpartition(":")
    if not module and name not in gym.registry:
        raise _unknown(name, env_id)
    try:
        env = gym.make(name, **options)   # for module:id, gymnasium imports the module first
    except ModuleNotFoundError as error:
        raise ValueError(f"cannot import the module {module!r} named in {env_id!r} ({error.__cause__ or error}); "
                         "it must be importable here: installed, or on PYTHONPATH") from None
    except gym.error.DependencyNotInstalled as error:   # registered, but its package is missing here
        raise ValueError(f"the Gymnasium env {registered!r} of {env_id!r} needs a package that is not installed "
                         f"here ({error}); install it, or pick another env") from None
    except gym.error.UnregisteredEnv:
        raise _unknown(registered, env_id) from None
    except gym.error.Error as error:   # deprecated versions, bad modes: Gymnasium's own words name the fix
        raise ValueError(f"Gymnasium refused {env_id!r}: {error}") from None
    except TypeError as error:
        raise ValueError(
            f"bad option for {env_id!r} ({', '.join(sorted(options))}); accepted options: "
            f"{', '.join(accepted_options(registered))} ({error})"
        ) from error
    except Exception as error:   # the user's module raised at import, or their env in its constructor
        if module and module not in sys.modules:
            raise UserEnvError(f"the module {module!r} named in {env_id!r} raised when imported", error) from None
        entry = getattr(gym.registry.get(registered), "entry_point", registered)
        raise UserEnvError(f"the env {_name_of(entry)} of {env_id!r} raised in its constructor", error) from None
    return adapt(env, env_id)


def _name_of(entry) -> str:
    """An entry point as the user wrote it (``module:Class``) or the callable's qualified name."""
    if isinstance(entry, str):
        return repr(entry)
    return repr(f"{getattr(entry, '__module__', '?')}.{getattr(entry, '__qualname__', entry)}")
