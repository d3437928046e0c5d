"""Backends: where rollouts come from. The learner talks to every backend through three calls:

    batch, episodes = backend.next_batch()   # a collated Rollout (T+1,B,...) with its state, finished episodes
    backend.publish(model)                   # new weights for the actors (sent every broadcast_interval-th call)
    backend.close()

and reads two numbers for its metrics: ``backend.version`` (publish calls so far: the version of the
learner's weights; each rollout records the version it was made with) and ``backend.actor_restarts``.

``local`` runs actor processes on this machine with shared-memory rollouts; ``ray`` runs Ray actors on
this machine or across a cluster, rollouts and weights going through Ray's object store; ``inline``
steps the environments in the learner's own process (``num_actors=0``). Every backend replaces an
actor that fails, up to ``max_actor_restarts`` times in a row (``errors.ActorFailures``). A new
backend is a module here with a class of that interface and one entry in ``make_backend``.
"""
from __future__ import annotations

from typing import Protocol

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.backends.errors import ActorError, ActorFailures
from rtrl.runtime.backends.inline import InlineBackend
from rtrl.runtime.backends.local import LocalBackend
from rtrl.runtime.backends.ray import RayBackend
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.rollout import Rollout

__all__ = ["Backend", "ActorError", "ActorFailures", "InlineBackend", "LocalBackend", "RayBackend", "make_backend"]


class Backend(Protocol):
    version: int          # publish calls so far (0: the weights the backend was made with)
    actor_restarts: int   # actors replaced after a failure

    def next_batch(self) -> tuple[Rollout, list[dict]]:
        """The next learner batch (B = batch_size rollouts) and the episodes that ended in it."""

    def publish(self, model: Agent) -> None:
        """The learner's weights after one more update; the actors use them from their next rollout on
        (after every ``broadcast_interval``-th call)."""

    def close(self) -> None:
        """Stop the actors and release their resources."""


def make_backend(cfg: TrainConfig, spec: EnvSpec, model: Agent) -> Backend:
    """``cfg.backend``: the Ray backend, the local multiprocess one, or the inline one for ``num_actors == 0``."""
    if cfg.backend == "ray":
        return RayBackend(cfg, spec, model)
    return (InlineBackend if cfg.num_actors == 0 else LocalBackend)(cfg, spec, model)
