"""Backends: where the IMPALA learner's rollouts come from. Each is an experience source
(``rtrl.runtime.experience``) built on one base (``base.RolloutBackend``):

    experience = backend.next()    # Experience(collated Rollout (T+1,B,...) with its state, steps, episodes,
                                   #            {"policy_lag": ...})
    backend.publish(model)         # new weights for the actors (sent every broadcast_interval-th call)
    backend.close()

``backend.version`` counts publish calls (the version of the learner's weights; each rollout records the
version it was made with), ``backend.actor_restarts`` the actors replaced after a failure, and
``state_copies(cfg)`` the environment states with sensitivities the backend holds at once (the run's
memory check).

``local`` runs actor processes on this machine with shared-memory rollouts; ``ray`` runs Ray actors on
this machine or across a cluster, rollouts and weights going through Ray's object store; ``inline``
steps the environments in the learner's own process (``num_actors=0``). Every backend replaces an
actor that fails, up to ``max_actor_restarts`` times in a row (``errors.ActorFailures``). A new
backend is a module here with a subclass of ``RolloutBackend`` and one entry in ``backend_class``.
"""
from __future__ import annotations

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.backends.base import RolloutBackend
from rtrl.runtime.backends.errors import ActorError, ActorFailures
from rtrl.runtime.backends.inline import InlineBackend
from rtrl.runtime.backends.local import LocalBackend
from rtrl.runtime.backends.ray import RayBackend
from rtrl.runtime.config import TrainConfig

__all__ = ["RolloutBackend", "ActorError", "ActorFailures", "InlineBackend", "LocalBackend", "RayBackend",
           "backend_class", "make_backend"]


def backend_class(cfg: TrainConfig) -> type[RolloutBackend]:
    """``cfg.backend``: the Ray backend, the local multiprocess one, or the inline one for ``num_actors == 0``."""
    if cfg.backend == "ray":
        return RayBackend
    return InlineBackend if cfg.num_actors == 0 else LocalBackend


def make_backend(cfg: TrainConfig, spec: EnvSpec, model: Agent) -> RolloutBackend:
    return backend_class(cfg)(cfg, spec, model)
