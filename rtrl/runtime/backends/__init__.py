"""Backends: where rollouts come from. The learner talks to every backend through three calls:

    batch, episodes = backend.next_batch()   # a collated Rollout (T+1,B,...) with its state, finished episodes
    backend.publish(model)                   # new weights for the actors
    backend.close()

``local`` runs actor processes on this machine with shared-memory rollouts; ``inline`` steps the
environments in the learner's own process (``num_actors=0``). A new backend is a module here with a
class of those three methods and one entry in ``make_backend``.
"""
from __future__ import annotations

from typing import Protocol

from rtrl.envs import EnvSpec
from rtrl.models import Agent
from rtrl.runtime.backends.errors import ActorError
from rtrl.runtime.backends.inline import InlineBackend
from rtrl.runtime.backends.local import LocalBackend
from rtrl.runtime.config import TrainConfig
from rtrl.runtime.rollout import Rollout

__all__ = ["Backend", "ActorError", "InlineBackend", "LocalBackend", "make_backend"]


class Backend(Protocol):
    def next_batch(self) -> tuple[Rollout, list[dict]]:
        """The next learner batch (B = batch_size rollouts) and the episodes that ended in it."""

    def publish(self, model: Agent) -> None:
        """Make ``model``'s weights the ones the actors use from their next rollout on."""

    def close(self) -> None:
        """Stop the actors and release their resources."""


def make_backend(cfg: TrainConfig, spec: EnvSpec, model: Agent) -> Backend:
    """The local multiprocess backend, or the inline one for ``num_actors == 0``."""
    return (InlineBackend if cfg.num_actors == 0 else LocalBackend)(cfg, spec, model)
